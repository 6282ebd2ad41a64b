/**
 * Outbox driving, shared by every binding that sends SETs (`send --via push|pushpull|multi-push|ws`).
 *
 * Loop until every tracked SET is final (acked, rejected, abandoned), the wait budget runs out,
 * the peer refuses our credentials, or the signal aborts:
 *  1. take due SETs from the ledger (`takeDue`, `maxBatch` per exchange, `concurrency` exchanges
 *     at once), together with the acks/setErrs we owe the peer when the binding can carry them;
 *  2. exchange them; apply the peer's report (acks and setErrs may name SETs of earlier exchanges);
 *  3. on a retryable failure (network, timeout, 408/425/429/5xx, a 2xx body that is not what the
 *     binding specifies) `markFailed` with the server's Retry-After plus jitter, or the ledger's
 *     exponential backoff with full jitter; at the retry cap the SET is abandoned;
 *  4. 401/403 (ERR_CREDENTIALS), TLS failures, a refused request (400 without per-SET errors) and
 *     other permanent statuses stop the run at once: no hot loop. The SETs stay pending;
 *  5. with nothing due, a binding whose acks may come late (pushpull, multi-SET push) sends an
 *     empty exchange every `lateAckIntervalMs` to collect them; otherwise sleep until the next
 *     SET is due.
 * Whatever is not final when the run ends stays in the outbox (pending, due at once next time).
 *
 * Time (`now`), sleeping (`sleep`) and randomness (`random`) are injected, so tests never wait
 * for real backoff.
 */
import {setTimeout as delay} from 'node:timers/promises'

import type {Deliverer, ExchangeResult} from './bindings/types.js'
import {emptyOwed} from './bindings/types.js'
import {isPushpullError, PushpullError, toPushpullError} from './errors.js'
import type {DueSet, Ledger, OwedReport} from './ledger.js'
import type {ReceiveBatch, ReceiveResult, SetReceiver} from './receiver.js'
import {retryDelay} from './retry.js'

export type SetResultStatus = 'accepted' | 'acked' | 'rejected' | 'pending' | 'abandoned'

/** One SET's outcome, as `send` prints it. */
export interface SetResult {
  type: 'result'
  jti: string
  status: SetResultStatus
  err?: string
  description?: string
  /** Sends of this SET in this run and earlier ones. */
  attempts: number
}

export interface RetryNotice {
  error: PushpullError
  jtis: string[]
  /** Wait before the next attempt, ms (including jitter). */
  delayMs: number
}

/** Default wait for every SET to be acked before `send` gives up and reports the rest pending. */
export const DEFAULT_WAIT_MS = 60_000
/** Default pace of empty exchanges that collect late acks. */
export const DEFAULT_LATE_ACK_INTERVAL_MS = 1000
/** Most owed acks/setErrs piggybacked on one exchange. */
export const DEFAULT_OWED_PER_EXCHANGE = 1000

export interface DeliverOptions {
  ledger: Ledger
  /** The ledger peer id (client side: the endpoint URL, normalised). */
  peer: string
  deliverer: Deliverer
  /** SETs this run must report on (already enqueued). Due SETs of earlier runs are tracked as they are taken. */
  jtis: readonly string[]
  signal: AbortSignal
  /** Receives SETs the peer sends back (pushpull); without it they are left unacked (the peer redelivers). */
  receiver?: SetReceiver
  onReceived?: (result: ReceiveResult) => void | Promise<void>
  /** The peer sent SETs and no receiver is configured: they are not acked. */
  onUnhandledSets?: (count: number) => void
  /** Called once per SET when it becomes final; pending SETs are reported at the end. */
  onResult?: (result: SetResult) => void
  onRetry?: (notice: RetryNotice) => void
  /** Stop waiting for acks after this long (ms from the start). Default 60 000. */
  waitMs?: number
  /** Empty exchanges asking for late acks, at most one per this many ms. Default 1000. */
  lateAckIntervalMs?: number
  now?: () => number
  random?: () => number
  /** Sleep `ms`, resolving early (not rejecting) when `signal` aborts. */
  sleep?: (ms: number, signal: AbortSignal) => Promise<void>
}

export interface DeliverSummary {
  results: SetResult[]
  /** Why the run stopped early: credentials, TLS, a refused request, abort. */
  stoppedBy?: PushpullError
  counts: Record<SetResultStatus, number>
}

async function defaultSleep(ms: number, signal: AbortSignal): Promise<void> {
  if (ms <= 0 || signal.aborted) return
  try {
    await delay(ms, undefined, {signal})
  } catch {
    // Aborted: the caller checks the signal.
  }
}

/** Failures that stop the run (retrying cannot help or would hammer the peer). */
function isFatal(error: PushpullError): boolean {
  switch (error.code) {
    case 'ERR_CONNECT':
    case 'ERR_TIMEOUT':
    case 'ERR_WS_CLOSED':
    case 'ERR_WS_HANDSHAKE':
    case 'ERR_PEER_PROTOCOL':
    case 'ERR_RESPONSE_TOO_LARGE':
    case 'ERR_LIMIT_EXCEEDED': {
      return false
    }

    case 'ERR_PEER_STATUS': {
      const status = error.details.status
      return !(typeof status !== 'number' || status === 408 || status === 425 || status === 429 || (status >= 500 && status <= 599))
    }

    default: {
      return true
    }
  }
}

interface Tracked {
  attempts: number
  /** Sent, waiting for an ack that may come later. */
  sent: boolean
}

/** Drive the outbox of `peer` until every tracked SET is final, the wait ends, or the run must stop. */
export async function deliverOutbox(options: DeliverOptions): Promise<DeliverSummary> {
  const {deliverer, ledger, peer, signal} = options
  const now = options.now ?? Date.now
  const random = options.random ?? Math.random
  const sleep = options.sleep ?? defaultSleep
  const waitMs = options.waitMs ?? DEFAULT_WAIT_MS
  const lateAckIntervalMs = options.lateAckIntervalMs ?? DEFAULT_LATE_ACK_INTERVAL_MS
  const deadline = now() + waitMs
  const tracked = new Map<string, Tracked>()
  const final = new Map<string, SetResult>()
  let maxBatch = Math.max(1, deliverer.maxBatch)
  let stoppedBy: PushpullError | undefined
  let lastExchangeAt = now()
  let lastFailure: PushpullError | undefined

  for (const jti of options.jtis) tracked.set(jti, {attempts: 0, sent: false})

  const finish = (jti: string, status: SetResultStatus, extra: {err?: string; description?: string} = {}): void => {
    if (final.has(jti)) return
    if (!tracked.has(jti)) tracked.set(jti, {attempts: 0, sent: false})
    const attempts = tracked.get(jti)?.attempts ?? 0
    const result: SetResult = {attempts, jti, status, type: 'result'}
    if (extra.err !== undefined) result.err = extra.err
    if (extra.description !== undefined) result.description = extra.description
    final.set(jti, result)
    options.onResult?.(result)
  }

  const unfinished = (): string[] => [...tracked.keys()].filter((jti) => !final.has(jti))
  // Tracked SETs not final yet, kept as a count: the loop asks after every exchange, and scanning
  // every tracked SET each time made a large one-SET-per-request run quadratic.
  const openCount = (): number => tracked.size - final.size

  const applyExchange = async (sets: readonly DueSet[], owed: OwedReport, result: ExchangeResult): Promise<void> => {
    const owedJtis = [...owed.ack, ...owed.setErrs.keys()]
    if (owedJtis.length > 0) ledger.markDelivered(peer, owedJtis)
    const applied = ledger.applyReport(peer, result.report)
    for (const jti of applied.acked) if (tracked.has(jti)) finish(jti, deliverer.successStatus)
    for (const jti of applied.rejected) {
      const setErr = result.report.setErrs.get(jti)
      if (tracked.has(jti)) finish(jti, 'rejected', {description: setErr?.description, err: setErr?.err})
    }

    // Stale reports (already final in the ledger, e.g. acked in an earlier run): report as acked.
    for (const jti of applied.stale) if (tracked.has(jti) && !final.has(jti)) finish(jti, deliverer.successStatus)
    for (const set of sets) {
      const entry = tracked.get(set.jti)
      if (entry !== undefined && !final.has(set.jti)) entry.sent = true
    }

    if (result.received !== undefined) await receive(result.received)
  }

  const receive = async (batch: ReceiveBatch): Promise<void> => {
    const count = batch.sets.size + (batch.invalidSets?.size ?? 0)
    if (count === 0) return
    if (options.receiver === undefined) {
      options.onUnhandledSets?.(count)
      return
    }

    const received = await options.receiver.receive(peer, batch)
    await options.onReceived?.(received)
  }

  const fail = (sets: readonly DueSet[], error: PushpullError): void => {
    const jtis = sets.map((set) => set.jti)
    lastFailure = error
    if (error.code === 'ERR_LIMIT_EXCEEDED' && maxBatch > 1) maxBatch = Math.max(1, Math.floor(maxBatch / 2))
    const serverWait = typeof error.details.retryAfterMs === 'number' ? error.details.retryAfterMs : undefined
    const attempt = Math.max(0, ...sets.map((set) => set.attempt - 1))
    const delayMs = retryDelay(attempt, serverWait, ledger.policy, random)
    const result = ledger.markFailed(peer, jtis, {retryAfterMs: delayMs})
    for (const jti of result.abandoned) finish(jti, 'abandoned', {description: error.message, err: error.code})
    for (const jti of result.requeued) {
      const entry = tracked.get(jti)
      if (entry !== undefined) entry.sent = false
    }

    if (result.requeued.length > 0) options.onRetry?.({delayMs, error, jtis: result.requeued})
  }

  const exchange = async (sets: readonly DueSet[]): Promise<void> => {
    const owed = deliverer.carriesAcks && options.receiver !== undefined ? options.receiver.owed(peer, DEFAULT_OWED_PER_EXCHANGE) : emptyOwed()
    let result: ExchangeResult
    try {
      lastExchangeAt = now()
      result = await deliverer.exchange(sets, owed, signal)
    } catch (error) {
      const failure = signal.aborted ? new PushpullError('ERR_ABORTED', 'interrupted', {cause: error}) : toPushpullError(error)
      if (failure.code === 'ERR_ABORTED' || isFatal(failure)) {
        stoppedBy ??= failure
        return
      }

      fail(sets, failure)
      return
    }

    await applyExchange(sets, owed, result)
  }

  // A pool of at most `concurrency` exchanges: whenever one settles, the next due batch starts, so
  // one slow request does not hold the others back.
  const inFlight = new Set<Promise<void>>()
  const concurrency = Math.max(1, deliverer.concurrency)
  // An exchange that throws (a state error, a receiver failure) ends the run with that error once
  // the others have settled, as a rejected Promise.all did.
  let thrown: {error: unknown} | undefined
  const start = (sets: DueSet[]): void => {
    const running: Promise<void> = exchange(sets)
      .catch((error: unknown) => {
        thrown ??= {error}
      })
      .finally(() => inFlight.delete(running))
    inFlight.add(running)
  }

  while (stoppedBy === undefined && thrown === undefined) {
    if (signal.aborted) {
      stoppedBy = isPushpullError(signal.reason) ? signal.reason : new PushpullError('ERR_ABORTED', 'interrupted')
      break
    }

    if (openCount() === 0 || now() >= deadline) break
    while (inFlight.size < concurrency) {
      const due = ledger.takeDue(peer, maxBatch)
      for (const jti of due.abandoned) {
        if (!tracked.has(jti)) tracked.set(jti, {attempts: ledger.policy.maxAttempts, sent: false})
        finish(jti, 'abandoned', {description: `no acknowledgement after ${ledger.policy.maxAttempts} attempts`})
      }

      if (due.sets.length === 0) break
      for (const set of due.sets) {
        const entry = tracked.get(set.jti) ?? {attempts: 0, sent: false}
        entry.attempts = set.attempt
        tracked.set(set.jti, entry)
      }

      start(due.sets)
    }

    if (inFlight.size > 0) {
      await Promise.race(inFlight)
      continue
    }

    // Nothing due and nothing in flight: ask for late acks, or sleep until the next SET is due.
    const waiting = deliverer.lateAcks && unfinished().some((jti) => tracked.get(jti)?.sent === true)
    const current = now()
    if (waiting && current - lastExchangeAt >= lateAckIntervalMs) {
      await exchange([])
      continue
    }

    const nextDue = ledger.nextDueAt(peer)
    let wakeAt = nextDue ?? deadline
    if (waiting) wakeAt = Math.min(wakeAt, lastExchangeAt + lateAckIntervalMs)
    wakeAt = Math.min(wakeAt, deadline)
    await sleep(Math.max(1, wakeAt - current), signal)
  }

  // Exchanges still running when the loop stopped (abort, a fatal answer, the deadline) finish first.
  await Promise.all(inFlight)
  if (thrown !== undefined) throw thrown.error

  // What is not final stays in the outbox, due at once for the next run.
  const pending = unfinished()
  if (pending.length > 0) {
    try {
      ledger.requeueInFlight(peer)
    } catch {
      // The state error surfaces on the next ledger call; the results below still hold.
    }
  }

  const why = stoppedBy ?? lastFailure
  const reason = why === undefined ? {description: 'no acknowledgement before the wait ended'} : {description: why.message, err: why.code}
  for (const jti of pending) finish(jti, 'pending', reason)

  const results = [...final.values()]
  const counts: Record<SetResultStatus, number> = {abandoned: 0, accepted: 0, acked: 0, pending: 0, rejected: 0}
  for (const result of results) counts[result.status]++
  return stoppedBy === undefined ? {counts, results} : {counts, results, stoppedBy}
}
