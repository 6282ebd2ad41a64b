/**
 * The pushpull session engine: one WebSocket connection, the same code for the client and the
 * server role (draft-tulshibagwale-saag-pushpull-delivery, protocol.md sections 2 to 4).
 *
 * - Every incoming message is one Communication Object (`parseCommunicationObject` with the
 *   configured limits). Bad JSON or a malformed object closes with 1007, over a limit with 1009.
 * - Acks and setErrs from the peer settle our outbox (`Ledger.applyReport`, any earlier SET,
 *   any order; jtis we never sent are ignored and reported as `unknown`).
 * - SETs from the peer go through `SetReceiver` (verify, store, then owe the ack). Acks and
 *   setErrs we owe are sent in batches: at most `maxAcksPerMessage` per message, after
 *   `ackDelayMs` (or at once when that many are owed). The next message's SETs are verified while
 *   the current one is stored and handed off (pipelined one deep, order kept).
 * - Outgoing SETs come from the ledger outbox (`takeDue`), at most `maxSetsPerMessage` per
 *   message (and under the message byte limit), after `batchDelayMs`. An unacked SET is due
 *   again after the ledger's ack timeout; the ledger abandons it at its retry cap.
 * - Backpressure: `send()` waits while the socket buffer is over its high-water mark, and the
 *   flush loop awaits each send, so a slow peer holds the ledger rows, not our memory. Incoming
 *   messages are handled one at a time; reading pauses while `maxQueuedMessages` wait.
 * - On close every in-flight SET of the peer is pending again (`requeueInFlight`): the next
 *   connection (or HTTP exchange) resends it. On a new connection the owed acks go first, in a
 *   message of their own, then the unacked SETs.
 *
 * Memory is bounded: nothing accumulates per SET in this object; the ledger is the buffer.
 */
import {type CommunicationLimits, type CommunicationObject, buildCommunicationObject, parseCommunicationObject, type SetErr} from './communication.js'
import {isPushpullError, PushpullError, toPushpullError} from './errors.js'
import type {DueSet, Ledger, OwedReport, ReportResult} from './ledger.js'
import type {JudgedBatch, ReceiveOutcome, SetReceiver} from './receiver.js'
import {CloseCode, type CloseInfo, closeErrorOf, type PushpullSocket} from './transport/ws-socket.js'

export const DEFAULT_MAX_SETS_PER_MESSAGE = 100
export const DEFAULT_MAX_ACKS_PER_MESSAGE = 1000
export const DEFAULT_BATCH_DELAY_MS = 10
export const DEFAULT_ACK_DELAY_MS = 10
export const DEFAULT_MAX_QUEUED_MESSAGES = 8

export interface SessionTimers {
  setTimeout(callback: () => void, ms: number): unknown
  clearTimeout(handle: unknown): void
}

const REAL_TIMERS: SessionTimers = {
  clearTimeout: (handle) => clearTimeout(handle as ReturnType<typeof setTimeout>),
  setTimeout: (callback, ms) => setTimeout(callback, ms),
}

/** What a session reports as it runs (for printing, counters, tests). */
export type SessionEvent =
  | {type: 'open'; peer: string}
  | {type: 'received'; peer: string; outcomes: ReceiveOutcome[]}
  | {type: 'report'; peer: string; result: ReportResult; setErrs: Map<string, SetErr>; conflicts: string[]}
  | {type: 'sent'; peer: string; sets: string[]; ack: string[]; setErrs: string[]}
  | {type: 'abandoned'; peer: string; jtis: string[]}
  | {type: 'error'; peer: string; error: PushpullError}
  | {type: 'rtt'; peer: string; rttMs: number}
  | {type: 'close'; peer: string; info: CloseInfo; error?: PushpullError | undefined}

export interface SessionOptions {
  /** The ledger peer id of the other side (client: the normalised URL; server: the authenticated identity). */
  peer: string
  ledger: Ledger
  /** Receives the peer's SETs. Without one, incoming SETs are neither acked nor rejected (the peer redelivers). */
  receiver?: SetReceiver | undefined
  /** Limits for incoming Communication Objects (size, SETs per object, per-SET size). */
  limits?: Partial<CommunicationLimits> | undefined
  /** SETs per outgoing message. Default 100. */
  maxSetsPerMessage?: number | undefined
  /** Wait this long for more due SETs before sending a message, in ms. Default 10. */
  batchDelayMs?: number | undefined
  /** Acks plus setErrs per outgoing message. Default 1000. */
  maxAcksPerMessage?: number | undefined
  /** Wait this long for more owed acks before sending them, in ms. Default 10. */
  ackDelayMs?: number | undefined
  /** Incoming messages waiting to be handled before reading pauses. Default 8. */
  maxQueuedMessages?: number | undefined
  /** Largest outgoing message in bytes. Default: the limits' maxBytes (1 MiB). */
  maxSendBytes?: number | undefined
  /** Clock (ms). Default Date.now. */
  now?: (() => number) | undefined
  timers?: SessionTimers | undefined
  onEvent?: ((event: SessionEvent) => void) | undefined
  /**
   * Hand-off of reported SETs to their consumer: resolves once everything `onEvent` has output so
   * far is out of the process, or returns undefined when nothing is pending. Awaited after each
   * received batch is reported and before owed acks are read, so nothing is acknowledged before
   * it was handed off, and a slow consumer slows the session instead of growing memory.
   */
  handoff?: (() => Promise<void> | undefined) | undefined
}

function checkOption(name: string, value: number, min: number): number {
  if (!Number.isSafeInteger(value) || value < min) {
    throw new PushpullError('ERR_CONFIG', `${name} must be an integer >= ${min}, got ${String(value)}`, {details: {option: name}})
  }

  return value
}

/** Counters of one session (or, in the client, summed over reconnects). */
export interface SessionCounters {
  /** SETs received for the first time and accepted or left undecided. */
  received: number
  duplicates: number
  /** SETs we rejected (setErr owed or sent). */
  rejected: number
  /** Deferred (transient failure): neither acked nor rejected. */
  deferred: number
  /** Acks and setErrs we sent. */
  acksSent: number
  /** SET sends (resends included). */
  sent: number
  /** Our SETs the peer acked. */
  ackedByPeer: number
  /** Our SETs the peer rejected. */
  rejectedByPeer: number
  messagesIn: number
  messagesOut: number
}

export function emptyCounters(): SessionCounters {
  return {ackedByPeer: 0, acksSent: 0, deferred: 0, duplicates: 0, messagesIn: 0, messagesOut: 0, received: 0, rejected: 0, rejectedByPeer: 0, sent: 0}
}

/**
 * One connection's session. Create it with a connected `PushpullSocket`; it runs until the socket
 * closes. `done` resolves with how it ended (never rejects).
 */
export class Session {
  readonly peer: string
  readonly counters: SessionCounters = emptyCounters()
  readonly done: Promise<CloseInfo>

  private readonly socket: PushpullSocket
  private readonly ledger: Ledger
  private readonly receiver: SetReceiver | undefined
  private readonly limits: Partial<CommunicationLimits> | undefined
  private readonly maxSets: number
  private readonly maxAcks: number
  private readonly batchDelayMs: number
  private readonly ackDelayMs: number
  private readonly maxQueued: number
  private readonly maxSendBytes: number
  private readonly now: () => number
  private readonly timers: SessionTimers
  private readonly onEvent: (event: SessionEvent) => void
  private readonly handoff: (() => Promise<void> | undefined) | undefined

  /** setErrs answered now but not stored (conflicting redelivery): sent with the next flush. */
  private immediate = new Map<string, SetErr>()
  private incoming: string[] = []
  private handling = false
  /** Set when the connection is failed while handling: the rest of the queue is dropped. */
  private discarding = false
  /** Messages whose SETs were stored (and are then reported, with no await in between). */
  private recordedMessages = 0
  /** The message after the one being handled, already parsed and being verified. */
  private ahead: Prepared | undefined
  private paused = false
  private flushTimer: unknown
  private flushAt: number | undefined
  private flushing: Promise<void> | undefined
  private flushAgain = false
  private firstFlush = true
  private closing = false
  private ended = false

  constructor(socket: PushpullSocket, options: SessionOptions) {
    if (typeof options.peer !== 'string' || options.peer === '') throw new PushpullError('ERR_INTERNAL', 'a session needs a peer id')
    this.socket = socket
    this.peer = options.peer
    this.ledger = options.ledger
    this.receiver = options.receiver
    this.limits = options.limits
    this.maxSets = checkOption('maxSetsPerMessage', options.maxSetsPerMessage ?? DEFAULT_MAX_SETS_PER_MESSAGE, 1)
    this.maxAcks = checkOption('maxAcksPerMessage', options.maxAcksPerMessage ?? DEFAULT_MAX_ACKS_PER_MESSAGE, 1)
    this.batchDelayMs = checkOption('batchDelayMs', options.batchDelayMs ?? DEFAULT_BATCH_DELAY_MS, 0)
    this.ackDelayMs = checkOption('ackDelayMs', options.ackDelayMs ?? DEFAULT_ACK_DELAY_MS, 0)
    this.maxQueued = checkOption('maxQueuedMessages', options.maxQueuedMessages ?? DEFAULT_MAX_QUEUED_MESSAGES, 1)
    this.maxSendBytes = checkOption('maxSendBytes', options.maxSendBytes ?? options.limits?.maxBytes ?? 1024 * 1024, 256)
    this.now = options.now ?? Date.now
    this.timers = options.timers ?? REAL_TIMERS
    this.onEvent = options.onEvent ?? (() => {})
    this.handoff = options.handoff

    let resolveDone!: (info: CloseInfo) => void
    this.done = new Promise<CloseInfo>((resolve) => {
      resolveDone = resolve
    })
    socket.on('message', (text) => this.onMessage(text))
    socket.on('pong', (rttMs) => this.emit({peer: this.peer, rttMs, type: 'rtt'}))
    socket.on('error', (error) => this.emit({error, peer: this.peer, type: 'error'}))
    socket.on('close', (info) => {
      this.onClose(info)
      resolveDone(info)
    })
    this.emit({peer: this.peer, type: 'open'})
    // A new connection: owed acks first, then every due SET (requeued ones included).
    this.schedule(0)
  }

  get isOpen(): boolean {
    return !this.ended && !this.closing && this.socket.isOpen
  }

  get rttMs(): number | undefined {
    return this.socket.rttMs
  }

  /** New SETs were queued for this peer, or decisions made (interactive view): send soon. */
  kick(): void {
    this.schedule(Math.min(this.batchDelayMs, this.ackDelayMs))
  }

  /** Send everything owed and due now, waiting for it to be handed to the network. */
  async flush(): Promise<void> {
    this.clearTimer()
    await this.runFlush()
  }

  /**
   * End the session: handle what already arrived, send the owed acks (one final message), then
   * close (default 1001 going away). Resolves with how it ended.
   */
  async close(code: number = CloseCode.GOING_AWAY, reason = 'closing'): Promise<CloseInfo> {
    if (!this.closing && !this.ended) {
      this.closing = true
      this.clearTimer()
      await this.drainIncoming()
      try {
        if (this.flushing) await this.flushing
        await this.sendOwed()
      } catch {
        // The socket is gone; the close below reports it.
      }

      await this.socket.close(code, reason)
    }

    return this.done
  }

  /** Drop the connection (tests, zombie handling by callers). */
  terminate(reason?: string): Promise<CloseInfo> {
    void this.socket.terminate(reason)
    return this.done
  }

  // ------------------------------------------------------------------------------------------
  // Incoming

  private onMessage(text: string): void {
    if (this.ended) return
    this.counters.messagesIn++
    this.incoming.push(text)
    if (this.incoming.length >= this.maxQueued && !this.paused) {
      this.paused = true
      this.socket.pause()
    }

    if (!this.handling) void this.handleIncoming()
    else if (this.ahead === undefined) this.ahead = this.takeIncoming()
  }

  private drainWaiters: Array<() => void> = []

  private async drainIncoming(): Promise<void> {
    if (!this.handling && this.incoming.length === 0) return
    await new Promise<void>((resolve) => this.drainWaiters.push(resolve))
  }

  /**
   * Handle queued messages in order. Pipelined one deep: while message k is stored, printed,
   * handed off and acked, message k+1 is already parsed and its SETs are being verified (on the
   * verify workers when there are some), so verification overlaps storage. Everything that
   * changes state or is visible (report, store, events, hand-off, acks) still happens strictly in
   * message order, one message at a time.
   */
  private async handleIncoming(): Promise<void> {
    this.handling = true
    try {
      let current = this.takeIncoming()
      while (current !== undefined && !this.ended && !this.discarding) {
        // Prepare the next message now (or, if none is queued yet, in onMessage when it arrives).
        this.ahead = this.takeIncoming()
        await this.handleMessage(current)
        current = this.ahead ?? this.takeIncoming()
        this.ahead = undefined
      }
    } finally {
      this.ahead = undefined
      this.handling = false
      this.discarding = false
      const waiters = this.drainWaiters
      this.drainWaiters = []
      for (const resolve of waiters) resolve()
    }
  }

  /** The next queued message, parsed, with the verification of its SETs started. */
  private takeIncoming(): Prepared | undefined {
    if (this.ended || this.discarding) return undefined
    const text = this.incoming.shift()
    if (text === undefined) return undefined
    if (this.paused && this.incoming.length < this.maxQueued / 2) {
      this.paused = false
      this.socket.resume()
    }

    let object: CommunicationObject
    try {
      object = parseCommunicationObject(text, this.limits)
    } catch (error) {
      return {failure: toPushpullError(error, 'ERR_MESSAGE_INVALID')}
    }

    if ((object.sets.size === 0 && object.invalidSets.size === 0) || this.receiver === undefined) return {object}
    const judging = this.receiver.judgeBatch({invalidSets: object.invalidSets, sets: object.sets})
    // Awaited in handleMessage; a message dropped when the session ends must not leave an unhandled rejection.
    judging.catch(() => {})
    return {judging, object}
  }

  private async handleMessage(prepared: Prepared): Promise<void> {
    if (prepared.failure !== undefined || prepared.object === undefined) {
      const failure = prepared.failure ?? new PushpullError('ERR_INTERNAL', 'a queued message was neither parsed nor refused')
      const code = failure.code === 'ERR_LIMIT_EXCEEDED' ? CloseCode.TOO_BIG : CloseCode.INVALID_PAYLOAD
      this.emit({error: failure, peer: this.peer, type: 'error'})
      this.discard()
      void this.socket.fail(code, failure.message)
      return
    }

    const {object} = prepared
    if (object.ack.length > 0 || object.setErrs.size > 0) {
      const result = this.ledger.applyReport(this.peer, {ack: object.ack, setErrs: object.setErrs})
      this.counters.ackedByPeer += result.acked.length
      this.counters.rejectedByPeer += result.rejected.length
      this.emit({conflicts: object.conflicts, peer: this.peer, result, setErrs: object.setErrs, type: 'report'})
    }

    if (prepared.judging !== undefined && this.receiver !== undefined) {
      let outcomes: ReceiveOutcome[]
      try {
        const result = this.receiver.record(this.peer, await prepared.judging)
        this.recordedMessages++
        outcomes = result.outcomes
        for (const [key, setErr] of result.immediate) this.immediate.set(key, setErr)
      } catch (error) {
        // Storage failed: nothing of this message is stored, so nothing is owed; the peer redelivers.
        const failure = toPushpullError(error)
        this.emit({error: failure, peer: this.peer, type: 'error'})
        if (failure.code === 'ERR_STATE_IO' || failure.code === 'ERR_INTERNAL') {
          this.discard()
          void this.socket.fail(CloseCode.INTERNAL, 'could not store the SETs')
        }

        return
      }

      for (const outcome of outcomes) {
        if (outcome.status === 'new') this.counters.received++
        else if (outcome.status === 'duplicate') this.counters.duplicates++
        else if (outcome.status === 'rejected') this.counters.rejected++
        else this.counters.deferred++
      }

      this.emit({outcomes, peer: this.peer, type: 'received'})
      await this.handedOff()
      this.schedule(this.ackDelayMs)
    }
  }

  /** The connection is being failed: drop every queued message (and the one prepared ahead). */
  private discard(): void {
    this.incoming.length = 0
    this.discarding = true
  }

  // ------------------------------------------------------------------------------------------
  // Outgoing

  private clearTimer(): void {
    if (this.flushTimer !== undefined) this.timers.clearTimeout(this.flushTimer)
    this.flushTimer = undefined
    this.flushAt = undefined
  }

  /** Flush in `delayMs` unless a flush is due sooner. */
  private schedule(delayMs: number): void {
    if (this.ended || this.closing) return
    const at = this.now() + Math.max(0, delayMs)
    if (this.flushAt !== undefined && this.flushAt <= at) return
    this.clearTimer()
    this.flushAt = at
    this.flushTimer = this.timers.setTimeout(() => {
      this.flushTimer = undefined
      this.flushAt = undefined
      void this.runFlush().catch((error: unknown) => {
        // A closed socket is reported by the close event; anything else is worth an error event.
        if (!isPushpullError(error, 'ERR_WS_CLOSED')) this.emit({error: toPushpullError(error), peer: this.peer, type: 'error'})
      })
    }, Math.max(0, delayMs))
  }

  private async runFlush(): Promise<void> {
    if (this.flushing) {
      this.flushAgain = true
      return this.flushing
    }

    this.flushing = (async () => {
      try {
        do {
          this.flushAgain = false
          await this.flushOnce()
        } while (this.flushAgain && this.socket.isOpen && !this.ended)
      } finally {
        this.flushing = undefined
      }
    })()
    return this.flushing
  }

  private async owedReport(): Promise<OwedReport> {
    // Read what is owed only once everything recorded so far was handed off: a message stored
    // while we waited (the next one is verified ahead, so it can be stored at once) waits again.
    let seen: number
    do {
      seen = this.recordedMessages
      await this.handedOff()
    } while (seen !== this.recordedMessages)

    const report = this.receiver === undefined ? this.ledger.owed(this.peer, this.maxAcks) : this.receiver.owed(this.peer, this.maxAcks)
    for (const [key, setErr] of this.immediate) {
      if (report.ack.length + report.setErrs.size >= this.maxAcks) break
      if (!report.setErrs.has(key)) report.setErrs.set(key, setErr)
    }

    return report
  }

  /** Send the owed acks/setErrs in messages of their own until none are owed. */
  private async sendOwed(): Promise<void> {
    for (;;) {
      const owed = await this.owedReport()
      if (owed.ack.length === 0 && owed.setErrs.size === 0) return
      await this.sendMessage([], owed)
      if (owed.ack.length + owed.setErrs.size < this.maxAcks) return
    }
  }

  private async flushOnce(): Promise<void> {
    if (!this.socket.isOpen || this.ended) return
    if (this.firstFlush) {
      this.firstFlush = false
      await this.sendOwed()
    }

    for (;;) {
      if (!this.socket.isOpen || this.closing || this.ended) return
      const owed = await this.owedReport()
      const due = this.ledger.takeDue(this.peer, this.maxSets)
      if (due.abandoned.length > 0) this.emit({jtis: due.abandoned, peer: this.peer, type: 'abandoned'})
      const hasOwed = owed.ack.length > 0 || owed.setErrs.size > 0
      if (due.sets.length === 0 && !hasOwed) break
      await this.sendBatch(due.sets, owed)
      if (due.sets.length < this.maxSets && owed.ack.length + owed.setErrs.size < this.maxAcks) break
    }

    this.scheduleNextDue()
  }

  private scheduleNextDue(): void {
    if (this.ended || this.closing) return
    const next = this.ledger.nextDueAt(this.peer)
    if (next !== undefined) this.schedule(Math.max(next - this.now(), this.batchDelayMs))
  }

  /** Split `sets` into messages under the byte limit; the owed report rides on the first. */
  private async sendBatch(sets: readonly DueSet[], owed: OwedReport): Promise<void> {
    const budget = this.maxSendBytes - 64 - owedBytes(owed)
    let chunk: DueSet[] = []
    let size = 0
    let report: OwedReport | undefined = owed
    for (const set of sets) {
      const bytes = set.token.length + set.jti.length * 2 + 8
      if (chunk.length > 0 && size + bytes > (report === undefined ? this.maxSendBytes - 64 : budget)) {
        await this.sendMessage(chunk, report)
        report = undefined
        chunk = []
        size = 0
      }

      chunk.push(set)
      size += bytes
    }

    if (chunk.length > 0 || report !== undefined) await this.sendMessage(chunk, report)
  }

  private async sendMessage(sets: readonly DueSet[], owed: OwedReport | undefined): Promise<void> {
    const text = buildCommunicationObject({
      ack: owed?.ack,
      sets: sets.map((set) => [set.jti, set.token] as const),
      setErrs: owed?.setErrs,
    })
    try {
      await this.socket.send(text)
    } catch (error) {
      // Not handed to the network: the SETs stay in flight and the close requeues them at once.
      if (isPushpullError(error, 'ERR_LIMIT_EXCEEDED')) {
        this.emit({error, peer: this.peer, type: 'error'})
        if (sets.length > 0) this.ledger.markFailed(this.peer, sets.map((set) => set.jti))
      }

      throw error
    }

    this.counters.messagesOut++
    this.counters.sent += sets.length
    if (owed !== undefined) {
      const jtis = [...owed.ack, ...owed.setErrs.keys()]
      if (jtis.length > 0) {
        this.ledger.markDelivered(this.peer, jtis)
        for (const jti of owed.setErrs.keys()) this.immediate.delete(jti)
        this.counters.acksSent += jtis.length
      }
    }

    this.emit({
      ack: owed?.ack ?? [],
      peer: this.peer,
      sets: sets.map((set) => set.jti),
      setErrs: owed === undefined ? [] : [...owed.setErrs.keys()],
      type: 'sent',
    })
  }

  // ------------------------------------------------------------------------------------------

  private onClose(info: CloseInfo): void {
    if (this.ended) return
    this.ended = true
    this.clearTimer()
    this.incoming.length = 0
    // SETs in flight on this connection were maybe not received: pending again, resent next time.
    try {
      this.ledger.requeueInFlight(this.peer)
    } catch (error) {
      this.emit({error: toPushpullError(error), peer: this.peer, type: 'error'})
    }

    this.emit({error: closeErrorOf(info), info, peer: this.peer, type: 'close'})
  }

  /** Wait until what was reported so far has been handed off (see `SessionOptions.handoff`). */
  private async handedOff(): Promise<void> {
    const pending = this.handoff?.()
    if (pending !== undefined) await pending
  }

  private emit(event: SessionEvent): void {
    try {
      this.onEvent(event)
    } catch {
      // A listener bug must not break the session.
    }
  }
}

/** A queued message taken for handling: parsed (or refused), its SETs' verification started. */
interface Prepared {
  object?: CommunicationObject
  failure?: PushpullError
  judging?: Promise<JudgedBatch>
}

function owedBytes(owed: OwedReport): number {
  let bytes = 32
  for (const jti of owed.ack) bytes += jti.length * 2 + 3
  for (const [jti, setErr] of owed.setErrs) bytes += (jti.length + setErr.err.length + setErr.description.length) * 2 + 40
  return bytes
}
