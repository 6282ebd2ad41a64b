/**
 * The poller's loop (`poll`, RFC 8936 or pushpull HTTP): report what we owe, fetch SETs, judge and
 * store them with the SetReceiver, and report them back on the next request.
 *
 * - One-shot (`follow: false`): one poll request (carrying acks owed from earlier runs); while the
 *   transmitter answers `moreAvailable` (RFC 8936 section 2.5: the receiver MAY poll again at
 *   once), poll again with `returnImmediately` (each request carrying the acks for the previous
 *   batch) until it stops saying so, `maxEvents` SETs were received in this run, or
 *   `maxDrainPolls` requests were made. Then one final ack-only request for everything now owed,
 *   so nothing is left owed by accident. A failure of a poll request throws.
 * - Follow: loop (long polls unless told otherwise); on a retryable failure (network, timeout,
 *   408/425/429/5xx, a malformed response) back off with full jitter (Retry-After honoured) and try
 *   again, so a restarting server is survived. Credentials, TLS and other permanent failures throw.
 * - Abort (SIGINT): stop polling, then send one final ack-only request for everything decided
 *   (with its own short timeout, since the run's signal is already aborted), then return.
 *
 * Time, sleep and randomness are injected.
 */
import {setTimeout as delay} from 'node:timers/promises'

import type {PeerReport, Poller} from './bindings/types.js'
import type {SetErr} from './communication.js'
import {isPushpullError, PushpullError, toPushpullError} from './errors.js'
import type {OwedReport} from './ledger.js'
import type {ReceiveResult, SetReceiver} from './receiver.js'
import {DEFAULT_BACKOFF, type BackoffPolicy, retryDelay} from './retry.js'

export const DEFAULT_FLUSH_TIMEOUT_MS = 5000
export const DEFAULT_OWED_PER_REQUEST = 1000
/** Most poll requests a one-shot run makes while the transmitter keeps answering moreAvailable. */
export const DEFAULT_MAX_DRAIN_POLLS = 100

export interface PollSessionOptions {
  poller: Poller
  receiver: SetReceiver
  peer: string
  signal: AbortSignal
  follow?: boolean
  /**
   * RFC 8936 maxEvents / pushpull maxResponseEvents: most SETs per response. A one-shot run also
   * stops following moreAvailable once it has received this many SETs in total (and asks each
   * request for the rest only).
   */
  maxEvents?: number
  /** One-shot: poll again while the transmitter answers moreAvailable. Default true. */
  drain?: boolean
  /** One-shot: most poll requests made while following moreAvailable. Default 100 (DEFAULT_MAX_DRAIN_POLLS). */
  maxDrainPolls?: number
  returnImmediately?: boolean
  /** Called with each batch's outcomes (print; an interactive review may decide SETs here). */
  onReceived?: (result: ReceiveResult) => void | Promise<void>
  /** Acks/setErrs the peer sent about SETs we sent it (pushpull), already applied to the ledger. */
  onReport?: (report: PeerReport) => void
  /** A retryable failure in follow mode: waiting `delayMs` before the next poll. */
  onRetry?: (error: PushpullError, delayMs: number) => void
  /** The acks/setErrs a request delivered. */
  onDelivered?: (report: OwedReport) => void
  /** Stop (and flush) after this many new SETs. */
  stopAfter?: number
  /** Timeout of the final ack-only request. Default 5000 ms. */
  flushTimeoutMs?: number
  backoff?: BackoffPolicy
  random?: () => number
  sleep?: (ms: number, signal: AbortSignal) => Promise<void>
}

export interface PollSessionSummary {
  polls: number
  /** New SETs received. */
  received: number
  duplicates: number
  rejected: number
  deferred: number
  /** Acks and setErrs delivered to the peer. */
  acked: number
  setErrs: number
  /** The last response said the transmitter has more SETs (a one-shot run stopped at a limit). */
  moreAvailable: boolean
  /** The owed report the final flush could not deliver (left owed in the ledger). */
  flushError?: PushpullError
  stoppedBy?: PushpullError
}

function retryable(error: PushpullError): boolean {
  switch (error.code) {
    case 'ERR_CONNECT':
    case 'ERR_TIMEOUT':
    case 'ERR_PEER_PROTOCOL':
    case 'ERR_RESPONSE_TOO_LARGE': {
      return true
    }

    case 'ERR_PEER_STATUS': {
      const status = error.details.status
      return typeof status !== 'number' || status === 408 || status === 425 || status === 429 || (status >= 500 && status <= 599)
    }

    default: {
      return false
    }
  }
}

async function defaultSleep(ms: number, signal: AbortSignal): Promise<void> {
  if (ms <= 0 || signal.aborted) return
  try {
    await delay(ms, undefined, {signal})
  } catch {
    // aborted
  }
}

function isEmpty(report: OwedReport): boolean {
  return report.ack.length === 0 && report.setErrs.size === 0
}

export async function runPollSession(options: PollSessionOptions): Promise<PollSessionSummary> {
  const {peer, poller, receiver, signal} = options
  const sleep = options.sleep ?? defaultSleep
  const random = options.random ?? Math.random
  const backoff = options.backoff ?? DEFAULT_BACKOFF
  const summary: PollSessionSummary = {acked: 0, deferred: 0, duplicates: 0, moreAvailable: false, polls: 0, received: 0, rejected: 0, setErrs: 0}
  const drain = options.follow !== true && options.drain !== false
  const maxDrainPolls = options.maxDrainPolls ?? DEFAULT_MAX_DRAIN_POLLS
  let immediate = new Map<string, SetErr>()
  let failures = 0
  /** SETs received in this run (any outcome), for the one-shot total. */
  let taken = 0
  /** One-shot: poll again (the last answer said moreAvailable and no limit is reached). */
  let again = false

  const delivered = (report: OwedReport): void => {
    receiver.delivered(peer, report)
    summary.acked += report.ack.length
    summary.setErrs += report.setErrs.size
    if (!isEmpty(report)) options.onDelivered?.(report)
  }

  do {
    if (signal.aborted) break
    const owed = receiver.owed(peer, DEFAULT_OWED_PER_REQUEST, immediate)
    let result
    try {
      summary.polls++
      const maxEvents = drain && options.maxEvents !== undefined ? options.maxEvents - taken : options.maxEvents
      result = await poller.poll({maxEvents, owed, returnImmediately: again ? true : options.returnImmediately}, signal)
    } catch (error) {
      if (signal.aborted) break
      const failure = toPushpullError(error)
      if (options.follow !== true || !retryable(failure)) throw failure
      const retryAfterMs = typeof failure.details.retryAfterMs === 'number' ? failure.details.retryAfterMs : undefined
      const wait = retryDelay(failures++, retryAfterMs, backoff, random)
      options.onRetry?.(failure, wait)
      await sleep(wait, signal)
      continue
    }

    failures = 0
    delivered(owed)
    immediate = new Map()
    if (result.report !== undefined && (result.report.ack.length > 0 || result.report.setErrs.size > 0)) {
      receiver.ledger.applyReport(peer, result.report)
      options.onReport?.(result.report)
    }

    const count = result.received.sets.size + (result.received.invalidSets?.size ?? 0)
    taken += count
    summary.moreAvailable = result.moreAvailable
    // An answer without SETs ends the drain even if it claims more (no busy loop on a confused peer).
    again =
      drain && result.moreAvailable && count > 0 && (options.maxEvents === undefined || taken < options.maxEvents) && summary.polls < maxDrainPolls
    if (count > 0) {
      const received = await receiver.receive(peer, result.received)
      immediate = received.immediate
      for (const outcome of received.outcomes) {
        if (outcome.status === 'new') summary.received++
        else if (outcome.status === 'duplicate') summary.duplicates++
        else if (outcome.status === 'rejected') summary.rejected++
        else summary.deferred++
      }

      await options.onReceived?.(received)
    }

    if (options.stopAfter !== undefined && summary.received >= options.stopAfter) break
  } while (options.follow === true || again)

  if (signal.aborted) {
    summary.stoppedBy = isPushpullError(signal.reason) ? signal.reason : new PushpullError('ERR_ABORTED', 'interrupted')
  }

  // One final ack-only request for everything decided, with its own timeout.
  const owed = receiver.owed(peer, DEFAULT_OWED_PER_REQUEST, immediate)
  if (!isEmpty(owed)) {
    try {
      await poller.acknowledge(owed, AbortSignal.timeout(options.flushTimeoutMs ?? DEFAULT_FLUSH_TIMEOUT_MS))
      delivered(owed)
    } catch (error) {
      summary.flushError = toPushpullError(error)
    }
  }

  return summary
}
