/**
 * The pushpull WebSocket client binding: one long-lived session with a peer that reconnects.
 *
 * - Connects with subprotocol `pushpull`, the bearer token and headers (on every reconnect).
 * - Runs a `Session` (src/lib/session.ts) on each connection: owed acks first, then every
 *   unacked SET (in-flight SETs of a closed connection are pending again).
 * - Reconnects after a drop, a zombie (missed pongs) or a refused/failed connect with exponential
 *   backoff and full jitter (`backoffDelay`), up to `maxReconnects` in a row (default unlimited).
 *   It stops on credentials failures (401/403 or 1008 from the peer), TLS failures and usage errors.
 * - `fallback: 'http'`: when the upgrade is refused (HTTP status other than 401/403/429/5xx, or
 *   no `pushpull` selected) the same session continues over the pushpull HTTP binding (POST
 *   Communication Objects to the same URL as http(s)://), polling every `httpPollMs`.
 *
 * The ledger peer id is the http(s) form of the URL (origin + path), so a peer reached with
 * `stream ws://h/p`, `send --via pushpull http://h/p` or the HTTP fallback is one peer.
 */
import {buildCommunicationObject, type CommunicationLimits, parseCommunicationObject} from '../communication.js'
import {PushpullError, toPushpullError} from '../errors.js'
import {backoffDelay, type DueSet, type Ledger, type OwedReport} from '../ledger.js'
import type {SetReceiver} from '../receiver.js'
import {emptyCounters, Session, type SessionCounters, type SessionEvent, type SessionOptions} from '../session.js'
import {createHttpClient, type HttpClient, redactUrl} from '../transport/http.js'
import {type ConnectOptions, connectWebSocket, displayUrl, toWebSocketUrl} from '../transport/ws-client.js'
import {CloseCode, type PushpullSocket} from '../transport/ws-socket.js'
import type {Deliverer, ExchangeResult, RequestPreview} from './types.js'

export const DEFAULT_RECONNECT = Object.freeze({capMs: 30_000, factor: 2, initialMs: 500})
export const DEFAULT_HTTP_POLL_MS = 1000

export type ClientEvent =
  | SessionEvent
  | {type: 'connecting'; url: string; attempt: number}
  | {type: 'connected'; url: string; binding: 'ws' | 'http'}
  | {type: 'reconnect-wait'; delayMs: number; error: PushpullError}
  | {type: 'fallback'; error: PushpullError}

export interface WsClientOptions
  extends Omit<ConnectOptions, 'signal'>,
    Omit<SessionOptions, 'peer' | 'onEvent' | 'ledger' | 'receiver' | 'limits' | 'now' | 'timers' | 'maxSendBytes'> {
  url: string
  ledger: Ledger
  receiver?: SetReceiver | undefined
  limits?: Partial<CommunicationLimits> | undefined
  /** Ledger peer id. Default: the URL as http(s), origin + path. */
  peer?: string | undefined
  /** Backoff between reconnects (full jitter). Defaults: 500 ms, x2, capped at 30 s. */
  reconnect?: {initialMs?: number; factor?: number; capMs?: number} | undefined
  /** Failed connects or dropped sessions in a row before giving up. Default unlimited. */
  maxReconnects?: number | undefined
  /** Continue over pushpull HTTP when the upgrade is refused. Default 'none'. */
  fallback?: 'none' | 'http' | undefined
  /** HTTP fallback: time between exchanges when there is nothing to send, in ms. Default 1000. */
  httpPollMs?: number | undefined
  /** HTTP fallback: the client to use (default one built from the token/headers/CA options). */
  httpClient?: HttpClient | undefined
  random?: (() => number) | undefined
  /** Wait `ms` (abortable). Default a real timer; tests may inject. */
  sleep?: ((ms: number, signal: AbortSignal) => Promise<void>) | undefined
  onEvent?: ((event: ClientEvent) => void) | undefined
}

/** The ledger peer id for a WebSocket or HTTP URL of a pushpull endpoint. */
export function wsPeerIdOf(url: string | URL): string {
  const parsed = new URL(typeof url === 'string' ? url : url.href)
  if (parsed.protocol === 'ws:') parsed.protocol = 'http:'
  else if (parsed.protocol === 'wss:') parsed.protocol = 'https:'
  return redactUrl(parsed)
}

async function realSleep(ms: number, signal: AbortSignal): Promise<void> {
  if (signal.aborted) return
  await new Promise<void>((resolve) => {
    const timer = setTimeout(done, ms)
    function done(): void {
      clearTimeout(timer)
      signal.removeEventListener('abort', done)
      resolve()
    }

    signal.addEventListener('abort', done, {once: true})
  })
}

/** Errors after which reconnecting cannot help. */
function isFatal(error: PushpullError): boolean {
  return ['ERR_CREDENTIALS', 'ERR_TLS', 'ERR_USAGE', 'ERR_CONFIG', 'ERR_ABORTED', 'ERR_INTERNAL', 'ERR_STATE_IO', 'ERR_STATE_CORRUPT', 'ERR_STATE_LOCKED'].includes(
    error.code,
  )
}

/** An upgrade refusal that the HTTP binding may get past (not auth, not overload). */
function isRefusedUpgrade(error: PushpullError): boolean {
  if (error.code !== 'ERR_WS_HANDSHAKE') return false
  const status = error.details.status
  return typeof status !== 'number' || status === 101 || (status >= 400 && status < 500 && status !== 429)
}

/**
 * A reconnecting pushpull session with one peer. `run()` resolves when `stop()` was called or the
 * signal aborted (after flushing owed acks and closing with 1001), and rejects on a fatal error
 * (credentials, TLS, retries exhausted).
 */
export class WsSessionClient {
  readonly peer: string
  readonly url: URL
  private readonly finished: SessionCounters = emptyCounters()
  reconnects = 0
  binding: 'ws' | 'http' = 'ws'

  private readonly options: WsClientOptions
  private readonly stopController = new AbortController()
  private session: Session | undefined
  private wake: (() => void) | undefined
  private readonly sleep: (ms: number, signal: AbortSignal) => Promise<void>
  private readonly random: () => number

  constructor(options: WsClientOptions) {
    this.options = options
    this.url = toWebSocketUrl(options.url)
    this.peer = options.peer ?? wsPeerIdOf(this.url)
    this.sleep = options.sleep ?? realSleep
    this.random = options.random ?? Math.random
  }

  /** Round-trip time of the current connection's latest ping. */
  get rttMs(): number | undefined {
    return this.session?.rttMs
  }

  get connected(): boolean {
    return this.binding === 'http' ? !this.stopController.signal.aborted : (this.session?.isOpen ?? false)
  }

  /** New SETs are queued or decisions made: send soon. */
  kick(): void {
    this.session?.kick()
    this.wake?.()
  }

  /** Wait until reported SETs were handed off (see `SessionOptions.handoff`) before reading owed acks. */
  private async handedOff(): Promise<void> {
    const pending = this.options.handoff?.()
    if (pending !== undefined) await pending
  }

  /** Flush what is owed and close; `run()` then resolves. */
  async stop(): Promise<void> {
    if (!this.stopController.signal.aborted) this.stopController.abort()
    this.wake?.()
    const session = this.session
    if (session !== undefined) await session.close(CloseCode.GOING_AWAY, 'client closing')
  }

  private emit(event: ClientEvent): void {
    try {
      this.options.onEvent?.(event)
    } catch {
      // listener bugs do not break the session
    }
  }

  private addCounters(from: SessionCounters): void {
    for (const key of Object.keys(from) as Array<keyof SessionCounters>) this.finished[key] += from[key]
  }

  /** Summed over every connection, the current one included. */
  get counters(): SessionCounters {
    const total = {...this.finished}
    const live = this.session?.counters
    if (live !== undefined) for (const key of Object.keys(live) as Array<keyof SessionCounters>) total[key] += live[key]
    return total
  }

  async run(signal?: AbortSignal): Promise<void> {
    const stop = this.stopController.signal
    const onAbort = (): void => {
      void this.stop()
    }

    signal?.addEventListener('abort', onAbort, {once: true})
    if (signal?.aborted) onAbort()
    const policy = {...DEFAULT_RECONNECT, ...this.options.reconnect}
    const maxReconnects = this.options.maxReconnects ?? Number.POSITIVE_INFINITY
    let failures = 0
    try {
      while (!stop.aborted) {
        let socket: PushpullSocket
        this.emit({attempt: failures + 1, type: 'connecting', url: displayUrl(this.url)})
        try {
          socket = await connectWebSocket(this.url, {...this.options, signal: stop})
        } catch (error) {
          const failure = toPushpullError(error)
          if (stop.aborted) return
          if (this.options.fallback === 'http' && isRefusedUpgrade(failure)) {
            this.emit({error: failure, type: 'fallback'})
            this.binding = 'http'
            await this.runHttp(stop)
            return
          }

          if (isFatal(failure)) throw failure
          failures++
          if (failures > maxReconnects) throw exhausted(failure, failures)
          const delayMs = backoffDelay(failures - 1, policy, this.random)
          this.emit({delayMs, error: failure, type: 'reconnect-wait'})
          await this.sleep(delayMs, stop)
          continue
        }

        const o = this.options
        const session = new Session(socket, {
          ackDelayMs: o.ackDelayMs,
          batchDelayMs: o.batchDelayMs,
          handoff: o.handoff,
          ledger: o.ledger,
          limits: o.limits,
          maxAcksPerMessage: o.maxAcksPerMessage,
          maxQueuedMessages: o.maxQueuedMessages,
          maxSendBytes: o.maxSendBytes ?? o.maxPayload,
          maxSetsPerMessage: o.maxSetsPerMessage,
          now: o.now,
          onEvent: (event) => this.emit(event),
          peer: this.peer,
          receiver: o.receiver,
        })
        this.session = session
        this.emit({binding: 'ws', type: 'connected', url: displayUrl(this.url)})
        if (stop.aborted) void session.close(CloseCode.GOING_AWAY, 'client closing')
        const info = await session.done
        this.addCounters(session.counters)
        this.session = undefined
        if (stop.aborted) return
        const error = closeErrorFor(info.code, info.reason, info.initiatedLocally)
        if (error !== undefined && isFatal(error)) throw error
        // A session that carried messages resets the failure count.
        failures = session.counters.messagesIn > 0 ? 1 : failures + 1
        this.reconnects++
        if (failures > maxReconnects) throw exhausted(error ?? new PushpullError('ERR_WS_CLOSED', 'the WebSocket session closed'), failures)
        const delayMs = backoffDelay(failures - 1, policy, this.random)
        this.emit({delayMs, error: error ?? new PushpullError('ERR_WS_CLOSED', `the peer closed the session (${info.code})`), type: 'reconnect-wait'})
        await this.sleep(delayMs, stop)
      }
    } finally {
      signal?.removeEventListener('abort', onAbort)
    }
  }

  /** The pushpull HTTP binding on the same URL, until stopped. */
  private async runHttp(stop: AbortSignal): Promise<void> {
    const httpUrl = this.peer
    const client = this.options.httpClient ?? createHttpClient({ca: this.options.ca, headers: this.options.headers, insecure: this.options.insecure, token: this.options.token})
    const pollMs = this.options.httpPollMs ?? DEFAULT_HTTP_POLL_MS
    const maxSets = this.options.maxSetsPerMessage ?? 100
    const maxAcks = this.options.maxAcksPerMessage ?? 1000
    const policy = {...DEFAULT_RECONNECT, ...this.options.reconnect}
    this.emit({binding: 'http', type: 'connected', url: httpUrl})
    let failures = 0
    const {ledger, receiver} = this.options
    try {
      while (!stop.aborted) {
        await this.handedOff()
        const owed = receiver === undefined ? ledger.owed(this.peer, maxAcks) : receiver.owed(this.peer, maxAcks)
        const due = ledger.takeDue(this.peer, maxSets)
        if (due.abandoned.length > 0) this.emit({jtis: due.abandoned, peer: this.peer, type: 'abandoned'})
        let result: ExchangeResult
        try {
          result = await httpExchange(client, httpUrl, due.sets, owed, this.options.limits ?? {}, stop)
        } catch (error) {
          const failure = toPushpullError(error)
          if (due.sets.length > 0) ledger.markFailed(this.peer, due.sets.map((s) => s.jti), {retryAfterMs: failure.details.retryAfterMs as number | undefined})
          if (stop.aborted) return
          if (isFatal(failure)) throw failure
          failures++
          const delayMs = Math.max(backoffDelay(failures - 1, policy, this.random), Number(failure.details.retryAfterMs ?? 0))
          this.emit({delayMs, error: failure, type: 'reconnect-wait'})
          await this.sleep(delayMs, stop)
          continue
        }

        failures = 0
        this.finished.messagesOut++
        this.finished.sent += due.sets.length
        const delivered = [...owed.ack, ...owed.setErrs.keys()]
        if (delivered.length > 0) ledger.markDelivered(this.peer, delivered)
        this.finished.acksSent += delivered.length
        this.emit({ack: owed.ack, peer: this.peer, sets: due.sets.map((s) => s.jti), setErrs: [...owed.setErrs.keys()], type: 'sent'})
        if (result.report.ack.length > 0 || result.report.setErrs.size > 0) {
          const applied = ledger.applyReport(this.peer, result.report)
          this.finished.ackedByPeer += applied.acked.length
          this.finished.rejectedByPeer += applied.rejected.length
          this.emit({conflicts: [], peer: this.peer, result: applied, setErrs: result.report.setErrs, type: 'report'})
        }

        let more = due.sets.length >= maxSets
        if (result.received !== undefined && receiver !== undefined) {
          this.finished.messagesIn++
          const received = await receiver.receive(this.peer, result.received)
          for (const outcome of received.outcomes) {
            if (outcome.status === 'new') this.finished.received++
            else if (outcome.status === 'duplicate') this.finished.duplicates++
            else if (outcome.status === 'rejected') this.finished.rejected++
            else this.finished.deferred++
          }

          this.emit({outcomes: received.outcomes, peer: this.peer, type: 'received'})
          more = true
        }

        if (!more) {
          await new Promise<void>((resolve) => {
            this.wake = resolve
            void this.sleep(pollMs, stop).then(resolve)
          })
          this.wake = undefined
        }
      }
    } finally {
      // One final exchange carries the acks we still owe.
      await this.handedOff()
      const owed = receiver === undefined ? ledger.owed(this.peer, maxAcks) : receiver.owed(this.peer, maxAcks)
      if (owed.ack.length > 0 || owed.setErrs.size > 0) {
        try {
          await httpExchange(client, httpUrl, [], owed, this.options.limits ?? {}, AbortSignal.timeout(5000))
          ledger.markDelivered(this.peer, [...owed.ack, ...owed.setErrs.keys()])
        } catch {
          // still owed; sent next time
        }
      }

      if (this.options.httpClient === undefined) await client.close()
    }
  }
}

function exhausted(cause: PushpullError, attempts: number): PushpullError {
  return new PushpullError('ERR_RETRIES_EXHAUSTED', `gave up after ${attempts} failed connection attempts in a row: ${cause.message}`, {cause, details: {attempts, lastCode: cause.code}})
}

function closeErrorFor(code: number, reason: string, initiatedLocally: boolean): PushpullError | undefined {
  if (code === CloseCode.POLICY && !initiatedLocally) {
    return new PushpullError('ERR_CREDENTIALS', `the peer closed the WebSocket session for an authentication or policy failure (1008)${reason === '' ? '' : `: ${reason}`}`, {
      details: {closeCode: code},
    })
  }

  if (code === CloseCode.NORMAL || code === CloseCode.GOING_AWAY) return undefined
  return new PushpullError('ERR_WS_CLOSED', `the WebSocket session closed (${code})${reason === '' ? '' : `: ${reason}`}`, {details: {closeCode: code}})
}

const JSON_HEADERS = Object.freeze({accept: 'application/json', 'content-type': 'application/json'})

async function httpExchange(
  client: HttpClient,
  url: string,
  sets: readonly DueSet[],
  owed: OwedReport,
  limits: Partial<CommunicationLimits>,
  signal: AbortSignal,
): Promise<ExchangeResult> {
  const body = buildCommunicationObject({ack: owed.ack, setErrs: owed.setErrs, sets: sets.map((s) => [s.jti, s.token] as const)})
  const response = await client.request({body, headers: JSON_HEADERS, method: 'POST', signal, url})
  if (response.status === 401 || response.status === 403) {
    throw new PushpullError('ERR_CREDENTIALS', `${url} refused the request with ${response.status}; check the bearer token`, {details: {status: response.status}})
  }

  if (response.status !== 200) {
    throw new PushpullError('ERR_PEER_STATUS', `${url} answered HTTP ${response.status} to a Communication Object`, {
      details: {retryAfterMs: response.retryAfterMs, status: response.status},
    })
  }

  let object
  try {
    object = parseCommunicationObject(response.body, {maxBytes: client.maxResponseBytes, ...limits})
  } catch (error) {
    throw new PushpullError('ERR_PEER_PROTOCOL', `${url} answered 200 with a body that is not a valid Communication Object: ${(error as Error).message}`, {cause: error})
  }

  const result: ExchangeResult = {report: {ack: object.ack, setErrs: object.setErrs}}
  if (object.sets.size > 0 || object.invalidSets.size > 0) result.received = {invalidSets: object.invalidSets, sets: object.sets}
  return result
}

// ---------------------------------------------------------------------------------------------
// `send --via ws`: a Deliverer over one session

export interface WsDelivererOptions extends Omit<WsClientOptions, 'ledger' | 'receiver' | 'onEvent'> {
  /** Most SETs per message. Default 100. */
  maxBatch?: number | undefined
  /** How long an exchange waits for the acks of the SETs it sent, in ms. Default 30 000. */
  ackWaitMs?: number | undefined
}

/**
 * A Deliverer for `send --via ws`: every `exchange` sends one Communication Object on a shared
 * connection (connecting on first use) and resolves once the peer has acked or rejected every
 * SET it carried, or `ackWaitMs` passed (the rest stay unacked: the sender retries them), with
 * every ack and setErr that arrived meanwhile (acks may name SETs of earlier exchanges).
 */
export function createWsDeliverer(options: WsDelivererOptions): Deliverer {
  const url = toWebSocketUrl(options.url)
  const ackWaitMs = options.ackWaitMs ?? 30_000
  let socket: PushpullSocket | undefined
  const acks = new Set<string>()
  const setErrs = new Map<string, {err: string; description: string}>()
  let waiter: (() => void) | undefined
  const received = new Map<string, string>()

  const connect = async (signal: AbortSignal): Promise<PushpullSocket> => {
    if (socket?.isOpen) return socket
    const next = await connectWebSocket(url, {...options, signal})
    next.on('message', (text) => {
      try {
        const object = parseCommunicationObject(text, options.limits)
        for (const jti of object.ack) acks.add(jti)
        for (const [jti, setErr] of object.setErrs) setErrs.set(jti, setErr)
        for (const [jti, token] of object.sets) if (received.size < 10_000) received.set(jti, token)
      } catch (error) {
        const failure = toPushpullError(error, 'ERR_MESSAGE_INVALID')
        void next.fail(failure.code === 'ERR_LIMIT_EXCEEDED' ? CloseCode.TOO_BIG : CloseCode.INVALID_PAYLOAD, failure.message)
      }

      waiter?.()
    })
    next.on('close', () => waiter?.())
    socket = next
    return next
  }

  return {
    carriesAcks: true,
    async close() {
      if (socket?.isOpen) await socket.close(CloseCode.NORMAL, 'done')
    },
    concurrency: 1,
    async exchange(sets: readonly DueSet[], owed: OwedReport, signal: AbortSignal): Promise<ExchangeResult> {
      const conn = await connect(signal)
      const text = buildCommunicationObject({ack: owed.ack, setErrs: owed.setErrs, sets: sets.map((s) => [s.jti, s.token] as const)})
      await conn.send(text)
      const wanted = new Set(sets.map((s) => s.jti))
      const settled = (): boolean => [...wanted].every((jti) => acks.has(jti) || setErrs.has(jti))
      const deadline = Date.now() + (sets.length === 0 ? Math.min(ackWaitMs, 1000) : ackWaitMs)
      while (!settled() && conn.isOpen && !signal.aborted && Date.now() < deadline) {
        await new Promise<void>((resolve) => {
          const timer = setTimeout(resolve, Math.max(1, deadline - Date.now()))
          const onAbort = (): void => resolve()
          signal.addEventListener('abort', onAbort, {once: true})
          waiter = () => {
            clearTimeout(timer)
            signal.removeEventListener('abort', onAbort)
            resolve()
          }
        })
        waiter = undefined
      }

      const report = {ack: [...acks], setErrs: new Map(setErrs)}
      acks.clear()
      setErrs.clear()
      const result: ExchangeResult = {report}
      if (received.size > 0) {
        result.received = {sets: new Map(received)}
        received.clear()
      }

      if (!conn.isOpen && !settled()) {
        // Report what arrived; the caller retries the rest on a new connection.
        if (report.ack.length === 0 && report.setErrs.size === 0) {
          const info = conn.closeInfo
          throw new PushpullError('ERR_WS_CLOSED', `the WebSocket session with ${displayUrl(url)} closed before the acks arrived${info === undefined ? '' : ` (${info.code})`}`, {
            details: {closeCode: info?.code},
          })
        }
      }

      return result
    },
    lateAcks: true,
    maxBatch: options.maxBatch ?? 100,
    name: 'ws',
    preview(sets: readonly DueSet[], owed: OwedReport): RequestPreview[] {
      const body = buildCommunicationObject({ack: owed.ack, setErrs: owed.setErrs, sets: sets.map((s) => [s.jti, s.token] as const)})
      const headers: Record<string, string> = {'sec-websocket-protocol': 'pushpull', ...options.headers}
      if (options.token !== undefined) headers.authorization = 'Bearer <redacted>'
      return [{body, headers, method: 'GET (upgrade), then a WebSocket message', url: displayUrl(url)}]
    },
    successStatus: 'acked',
  }
}


