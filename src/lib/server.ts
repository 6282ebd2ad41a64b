/**
 * The local receiver/transmitter behind `pushpull listen`.
 *
 * Routes (paths configurable):
 * - `POST /events`: RFC 8935 push. `Content-Type: application/secevent+jwt`, one SET. 202 (empty)
 *   when the SET is new or a duplicate, 400 `{err, description}` + `Content-Language: en` when it
 *   is refused, 503 + `Retry-After` when it cannot be judged now (JWKS down, state not writable):
 *   the transmitter retries. The 202/400 is the ack, so the inbox row is marked delivered once the
 *   response was written.
 * - `POST /pushpull`: the pushpull HTTP binding (`application/json` Communication Object -> 200
 *   Communication Object carrying what we owe this peer, `ack` and `setErrs`, plus SETs queued for
 *   it, at most `maxResponseEvents`), and multi-SET push by content type
 *   (`application/secevents+json` -> 202 `{ack, setErrs?}`, acks include late ones).
 *   `GET /pushpull` is reserved for the WebSocket upgrade (see `Listener` below).
 * - `POST /poll`: RFC 8936 transmitter: applies `ack`/`setErrs`, serves queued SETs (redelivered
 *   until acked), long-polls unless `returnImmediately`, wakes when SETs are queued, sets
 *   `moreAvailable`.
 *
 * Hostile peers: connections are capped in total and per remote address (`maxConnections`,
 * `maxConnectionsPerAddress`, answered 503 / 429 before parsing), and requests per remote address
 * are rate-limited with a token bucket (`requestRate`, 429 + `Retry-After`), so one peer flooding,
 * sending garbage or hoarding sockets cannot starve the others.
 *
 * Every request passes, in order: request rate (429), token-in-query refusal (400), Host/Origin check (421/403), route
 * (404), method (405 + Allow), bearer token (401 + WWW-Authenticate), content type (415), body
 * limit (413) and timeouts (408), body parse (400 / 413), then the work. Receiving always goes
 * validate -> store (SetReceiver, one transaction) -> report -> answer -> mark delivered.
 *
 * Peer identity comes from authentication: each configured bearer token is one peer (`token:NAME`,
 * or `token:<first 12 hex of sha256(token)>` when unnamed); without tokens every client is the one
 * peer `anonymous`. A peer's owed acks and queued SETs follow it across requests and bindings.
 *
 * Seam for the WebSocket binding: `Listener.server` (attach the upgrade handler to it),
 * `peerOf(req)` (authentication -> peer id, throws the 401), `exchange(peer, object, binding)`
 * (the whole Communication Object step: apply report, receive, build the reply, then
 * `commit()`/`fail()` once it was sent or lost), `emit`, `onQueued(peer, fn)` (wake-up when SETs
 * are queued for a peer), `report(event)` (feed the same event stream), `receiver`, `ledger`.
 */
import {createHash, timingSafeEqual} from 'node:crypto'
import type {IncomingMessage, Server, ServerResponse} from 'node:http'
import type {AddressInfo} from 'node:net'

import {
  buildCommunicationObject,
  buildMultiPushResponse,
  buildPollResponse,
  type CommunicationLimits,
  type CommunicationObject,
  DEFAULT_LIMITS,
  parseCommunicationObject,
  parseMultiPushRequest,
  parsePollRequest,
  type SetErr,
} from './communication.js'
import {PushpullError, SET_ERR_CODES, type SetErrCode, toPushpullError} from './errors.js'
import type {Forwarder} from './forwarder.js'
import {hashSetPayload, type EnqueueResult, type Ledger, type OutgoingSet, type OwedReport} from './ledger.js'
import type {ReceiveOutcome, SetReceiver} from './receiver.js'
import {decodeToken} from './set.js'
import {DEFAULT_REQUEST_RATE, type RateLimit, RateLimiter} from './rate-limit.js'
import {sanitizeText} from './text.js'
import {
  checkContentType,
  checkHostAndOrigin,
  checkMethod,
  closeHttpServer,
  createHttpServer,
  DEFAULT_SERVER_HEADERS_TIMEOUT_MS,
  DEFAULT_SERVER_REQUEST_TIMEOUT_MS,
  listenHttpServer,
  readBody,
  rejectTokenInQuery,
  requestPath,
  sendHttpError,
  sendSetError,
  servedHosts,
} from './transport/http-server.js'
import type {VerifiedSet} from './verify.js'

export const DEFAULT_LISTEN_HOST = '127.0.0.1'
export const DEFAULT_LISTEN_PORT = 8935
export const DEFAULT_LONG_POLL_TIMEOUT_MS = 30_000
/** SETs in one poll or pushpull response when the peer does not say. */
export const DEFAULT_RESPONSE_EVENTS = 100
/** Seconds a transmitter is told to wait (Retry-After) when a SET cannot be judged now. */
export const DEFAULT_RETRY_AFTER_SEC = 5
/** Acks and setErrs carried in one response at most (the rest follow on the next exchange). */
export const DEFAULT_MAX_ACKS_PER_RESPONSE = 10_000
export const ANONYMOUS_PEER = 'anonymous'
export const DEFAULT_PATHS: Readonly<ListenerPaths> = Object.freeze({events: '/events', poll: '/poll', pushpull: '/pushpull'})

const SET_JWT = 'application/secevent+jwt'
const SETS_JSON = 'application/secevents+json'
const JSON_TYPE = 'application/json'

export type Binding = 'push' | 'pushpull' | 'multi-push' | 'poll' | 'ws'

export interface ListenerPaths {
  events: string
  pushpull: string
  poll: string
}

export interface ListenerToken {
  /** Shown as the peer id `token:NAME`; default the first 12 hex of the token's SHA-256. */
  name?: string
  token: string
}

/** What the listener reports as it works (printing, counters, the interactive view). */
export type ListenerEvent =
  | {type: 'set'; peer: string; binding: Binding; jti: string; status: 'new' | 'duplicate'; verdict?: 'accepted' | 'undecided'; set: VerifiedSet}
  | {type: 'rejected'; peer: string; binding: Binding; jti: string; err: string; description: string; iss?: string; event?: string; repeat: boolean}
  | {type: 'deferred'; peer: string; binding: Binding; jti: string; description: string}
  | {type: 'ack'; peer: string; jti: string}
  | {type: 'setErr'; peer: string; jti: string; err: string; description: string}
  | {type: 'sent'; peer: string; binding: Binding; jtis: string[]}
  | {type: 'answered'; peer: string; binding: Binding; ack: number; setErrs: number}
  | {type: 'queued'; peer: string; jti: string; status: EnqueueResult['status']}
  | {type: 'abandoned'; peer: string; jti: string}
  | {type: 'http-error'; method: string; path: string; status: number; code: string; message: string}

export interface ListenerCounts {
  /** New SETs received (valid). */
  received: number
  duplicates: number
  rejected: number
  deferred: number
  /** SETs of ours the peers acknowledged. */
  acked: number
  /** SETs of ours the peers rejected. */
  nacked: number
  /** SETs queued for peers (emit). */
  queued: number
  /** SETs sent to peers in responses (redeliveries included). */
  delivered: number
}

export interface ListenerOptions {
  receiver: SetReceiver
  /** The ledger the receiver writes to (its outbox holds what we emit). */
  ledger: Ledger
  /** Default 127.0.0.1. */
  host?: string
  /** Default 8935; 0 picks a free port. */
  port?: number
  /** Serve https. */
  tls?: {cert: string | Buffer; key: string | Buffer}
  /** Bearer tokens peers must present; none means every client is the `anonymous` peer. */
  tokens?: readonly ListenerToken[]
  /** Extra `Host` names accepted (without port), e.g. the name in the TLS certificate. */
  allowHosts?: readonly string[]
  /** `Origin` values accepted (requests with any other Origin are refused 403). */
  allowOrigins?: readonly string[]
  /** Check `Host` against the served names (DNS-rebinding defence). Default true. */
  checkHost?: boolean
  /** Body, SET count and per-SET limits (protocol.md section 4). */
  limits?: Partial<Pick<CommunicationLimits, 'maxBytes' | 'maxSets' | 'maxSetBytes'>>
  /** Complete request headers within this many ms, else 408. Default 10 000. */
  headersTimeoutMs?: number
  /** Open connections in total (503 over it). Default 2000. */
  maxConnections?: number
  /** Open connections from one remote address (429 over it). Default 128. */
  maxConnectionsPerAddress?: number
  /** HTTP requests per remote address (token bucket; 429 + Retry-After over it). Default 1000/s, burst 2000. */
  requestRate?: RateLimit
  /** Complete request within this many ms, else 408. Default 30 000. */
  requestTimeoutMs?: number
  /** How long an RFC 8936 long poll is held when nothing is queued. Default 30 000. */
  longPollTimeoutMs?: number
  /** SETs in one response when the peer does not limit it (and the most a poll may ask for). Default 100. */
  maxResponseEvents?: number
  /** Retry-After (seconds) on 503 answers. Default 5. */
  retryAfterSec?: number
  /** Acks/setErrs in one response at most. Default 10 000. */
  maxAcksPerResponse?: number
  paths?: Partial<ListenerPaths>
  /** Relay accepted new SETs downstream. */
  forwarder?: Forwarder
  /** Every event (printing, counters). Exceptions are swallowed. */
  onEvent?: (event: ListenerEvent) => void
  /**
   * Called after a batch was stored and reported, before the answer is written. Test hook for the
   * crash-safety test (the CLI kills the process here when asked); inert when absent.
   */
  afterStore?: (peer: string, binding: Binding) => void
  /**
   * Hand-off of reported SETs to their consumer: resolves once everything `onEvent` has output so
   * far is out of the process (the CLI waits for stdout to flush), or returns undefined when
   * nothing is pending. The listener awaits it after reporting received SETs and before reading
   * the acks it owes, so nothing is acknowledged before it was handed off. Default: none.
   */
  handoff?: () => Promise<void> | undefined
  /** Clock in ms, for `moreAvailable` and long-poll wake-ups (use the ledger's). Default Date.now. */
  now?: () => number
}

/**
 * An extra HTTP route set mounted on the listener (`listen --ssf` mounts the SSF transmitter).
 * Called, after the token-in-query and Host/Origin checks, for paths the listener does not serve
 * itself; resolves true when it answered the request (errors included), false to fall through to
 * the next handler and finally the 404.
 */
export type ExtraRouteHandler = (req: IncomingMessage, res: ServerResponse, url: URL) => Promise<boolean>

/** One Communication Object step: the reply to send, and what to do once it was sent or lost. */
export interface Exchange {
  /** The reply members (empty ones may be left out by the builder). */
  reply: {sets: Map<string, string>; ack: string[]; setErrs: Map<string, SetErr>}
  /** The reply reached the peer: the acks/setErrs in it are no longer owed. */
  commit(): void
  /** The reply was not delivered: SETs sent in it go back to pending (acks stay owed). */
  fail(): void
}

function positive(name: string, value: number | undefined, fallback: number, min = 1): number {
  const result = value ?? fallback
  if (!Number.isSafeInteger(result) || result < min) throw new PushpullError('ERR_CONFIG', `${name} must be an integer >= ${min}, got ${String(value)}`)
  return result
}

/** The peer id of a configured token. */
export function peerIdOfToken(token: ListenerToken): string {
  if (token.name !== undefined && token.name !== '') return `token:${token.name}`
  return `token:${createHash('sha256').update(token.token, 'utf8').digest('hex').slice(0, 12)}`
}

function digest(value: string): Buffer {
  return createHash('sha256').update(value, 'utf8').digest()
}

export class Listener {
  readonly server: Server
  readonly receiver: SetReceiver
  readonly ledger: Ledger
  readonly counts: ListenerCounts = {acked: 0, deferred: 0, delivered: 0, duplicates: 0, nacked: 0, queued: 0, received: 0, rejected: 0}
  readonly paths: ListenerPaths
  private readonly options: ListenerOptions
  private readonly limits: Pick<CommunicationLimits, 'maxBytes' | 'maxSets' | 'maxSetBytes'>
  private readonly tokens: Array<{peer: string; digest: Buffer}>
  private readonly longPollTimeoutMs: number
  private readonly maxResponseEvents: number
  private readonly retryAfterSec: number
  private readonly maxAcks: number
  private readonly requestTimeoutMs: number
  private readonly queuedListeners = new Map<string, Set<() => void>>()
  private readonly extraRoutes: ExtraRouteHandler[] = []
  private readonly shutdown = new AbortController()
  private allowedHosts: string[] = []
  private address: AddressInfo | undefined
  private closing: Promise<void> | undefined
  private readonly now: () => number
  private readonly requestLimiter: RateLimiter

  constructor(options: ListenerOptions) {
    this.options = options
    this.now = options.now ?? Date.now
    this.requestLimiter = new RateLimiter({now: this.now, ...(options.requestRate ?? {perSecond: DEFAULT_REQUEST_RATE})})
    this.receiver = options.receiver
    this.ledger = options.ledger
    this.paths = {...DEFAULT_PATHS, ...options.paths}
    this.limits = {
      maxBytes: positive('maxBytes', options.limits?.maxBytes, DEFAULT_LIMITS.maxBytes),
      maxSetBytes: positive('maxSetBytes', options.limits?.maxSetBytes, DEFAULT_LIMITS.maxSetBytes),
      maxSets: positive('maxSets', options.limits?.maxSets, DEFAULT_LIMITS.maxSets),
    }
    this.longPollTimeoutMs = positive('longPollTimeoutMs', options.longPollTimeoutMs, DEFAULT_LONG_POLL_TIMEOUT_MS, 0)
    this.maxResponseEvents = positive('maxResponseEvents', options.maxResponseEvents, DEFAULT_RESPONSE_EVENTS)
    this.retryAfterSec = positive('retryAfterSec', options.retryAfterSec, DEFAULT_RETRY_AFTER_SEC, 0)
    this.maxAcks = positive('maxAcksPerResponse', options.maxAcksPerResponse, DEFAULT_MAX_ACKS_PER_RESPONSE)
    this.requestTimeoutMs = positive('requestTimeoutMs', options.requestTimeoutMs, DEFAULT_SERVER_REQUEST_TIMEOUT_MS)
    const seen = new Set<string>()
    this.tokens = (options.tokens ?? []).map((token) => {
      if (typeof token.token !== 'string' || token.token === '' || !/^[\u0021-\u007E]+$/.test(token.token)) {
        throw new PushpullError('ERR_CONFIG', `the listener token${token.name === undefined ? '' : ` named ${token.name}`} is empty or holds spaces, control or non-ASCII characters`)
      }

      if (token.name !== undefined && !/^[\w.@-]{1,64}$/.test(token.name)) {
        throw new PushpullError('ERR_CONFIG', `token name ${JSON.stringify(sanitizeText(token.name, 64))} may only hold letters, digits, '.', '@', '_' and '-' (at most 64)`)
      }

      const peer = peerIdOfToken(token)
      if (seen.has(peer)) throw new PushpullError('ERR_CONFIG', `two listener tokens map to the same peer ${peer}; give them distinct names`)
      seen.add(peer)
      return {digest: digest(token.token), peer}
    })
    for (const [name, path] of Object.entries(this.paths)) {
      if (!path.startsWith('/')) throw new PushpullError('ERR_CONFIG', `the ${name} path must start with "/", got ${JSON.stringify(path)}`)
    }

    this.server = createHttpServer(
      {
        headersTimeoutMs: options.headersTimeoutMs ?? Math.min(DEFAULT_SERVER_HEADERS_TIMEOUT_MS, this.requestTimeoutMs),
        maxConnections: options.maxConnections,
        maxConnectionsPerAddress: options.maxConnectionsPerAddress,
        onConnectionRefused: (address, reason) =>
          this.report({
            code: 'ERR_LIMIT_EXCEEDED',
            message: reason === 'total' ? 'too many connections' : `too many connections from ${sanitizeText(address, 60)}`,
            method: '',
            path: '(connection)',
            status: reason === 'total' ? 503 : 429,
            type: 'http-error',
          }),
        requestTimeoutMs: this.requestTimeoutMs,
        tls: options.tls,
      },
      async (req, res) => this.handle(req, res),
    )
  }

  /** The peers SETs can be emitted to: one per token, or `anonymous`. */
  get peers(): string[] {
    return this.tokens.length === 0 ? [ANONYMOUS_PEER] : this.tokens.map((token) => token.peer)
  }

  /** Bind and start serving. Resolves with the bound address and the URL to print. */
  async listen(): Promise<{address: AddressInfo; url: string}> {
    const host = this.options.host ?? DEFAULT_LISTEN_HOST
    const address = await listenHttpServer(this.server, this.options.port ?? DEFAULT_LISTEN_PORT, host)
    this.address = address
    this.allowedHosts = servedHosts(host, address.port, this.options.allowHosts ?? [])
    // Any in-flight SET of a previous run was never acknowledged: resend it to whoever asks first.
    this.ledger.requeueInFlight()
    return {address, url: this.url}
  }

  /** `http(s)://host:port` of the bound server. */
  get url(): string {
    if (this.address === undefined) throw new PushpullError('ERR_INTERNAL', 'the listener is not bound yet')
    const scheme = this.options.tls === undefined ? 'http' : 'https'
    const host = this.address.family === 'IPv6' || this.address.address.includes(':') ? `[${this.address.address}]` : this.address.address
    return `${scheme}://${host}:${this.address.port}`
  }

  /**
   * Stop accepting, release long polls (they answer at once), let requests in flight finish for
   * up to `graceMs`, then wait for the relay (same grace). The ledger stays open (the caller owns it).
   */
  async close(graceMs = 5000): Promise<void> {
    this.closing ??= (async () => {
      this.shutdown.abort()
      // Keep-alive connections become idle once their last answer is written: close them then.
      const sweeper = setInterval(() => this.server.closeIdleConnections(), 25)
      try {
        await closeHttpServer(this.server, graceMs)
      } finally {
        clearInterval(sweeper)
      }

      await this.options.forwarder?.drain({timeoutMs: graceMs})
    })()
    return this.closing
  }

  /**
   * Queue SETs for peers (default: every peer), redelivered until acked. Wakes their long polls
   * and WebSocket sessions.
   */
  emit(items: readonly OutgoingSet[], peers: readonly string[] = this.peers): EnqueueResult[] {
    const results: EnqueueResult[] = []
    for (const peer of peers) {
      const queued = this.ledger.enqueue(peer, items)
      for (const result of queued) {
        if (result.status === 'queued') this.counts.queued++
        this.report({jti: result.jti, peer, status: result.status, type: 'queued'})
      }

      results.push(...queued)
      if (queued.some((result) => result.status === 'queued')) this.wake(peer)
    }

    return results
  }

  /** Mount extra routes (see `ExtraRouteHandler`), tried in the order added. */
  addRoutes(handler: ExtraRouteHandler): void {
    this.extraRoutes.push(handler)
  }

  /** Call `fn` whenever SETs are queued for `peer`. Returns the unsubscribe function. */
  onQueued(peer: string, fn: () => void): () => void {
    let set = this.queuedListeners.get(peer)
    if (set === undefined) {
      set = new Set()
      this.queuedListeners.set(peer, set)
    }

    set.add(fn)
    return () => {
      set.delete(fn)
      if (set.size === 0) this.queuedListeners.delete(peer)
    }
  }

  /**
   * Authenticate a request: the peer id, or a thrown 401 (PushpullError ERR_CREDENTIALS with the
   * HTTP answer in details). Tokens are compared in constant time; none is ever echoed.
   */
  peerOf(req: IncomingMessage): string {
    if (this.tokens.length === 0) return ANONYMOUS_PEER
    const header = req.headers.authorization
    const match = header === undefined ? null : /^bearer +(\S+) *$/i.exec(header)
    if (match === null) {
      throw new PushpullError('ERR_CREDENTIALS', 'a bearer token is required (Authorization: Bearer ...)', {
        details: {err: 'authentication_failed', headers: {'www-authenticate': 'Bearer realm="pushpull"'}, status: 401},
      })
    }

    const given = digest(match[1] ?? '')
    let peer: string | undefined
    for (const token of this.tokens) {
      // Compare against every token (no early exit) so timing says nothing about which matched.
      if (timingSafeEqual(given, token.digest) && peer === undefined) peer = token.peer
    }

    if (peer === undefined) {
      throw new PushpullError('ERR_CREDENTIALS', 'the bearer token is not valid', {
        details: {err: 'authentication_failed', headers: {'www-authenticate': 'Bearer realm="pushpull", error="invalid_token"'}, status: 401},
      })
    }

    return peer
  }

  /** Feed an event to `onEvent` (and the counters). Used by the bindings, WebSocket included. */
  report(event: ListenerEvent): void {
    switch (event.type) {
      case 'set': {
        if (event.status === 'new') this.counts.received++
        else this.counts.duplicates++
        break
      }

      case 'rejected': {
        this.counts.rejected++
        break
      }

      case 'deferred': {
        this.counts.deferred++
        break
      }

      case 'ack': {
        this.counts.acked++
        break
      }

      case 'setErr': {
        this.counts.nacked++
        break
      }

      case 'sent': {
        this.counts.delivered += event.jtis.length
        break
      }

      default:
    }

    try {
      this.options.onEvent?.(event)
    } catch {
      // Printing must never break the protocol.
    }
  }

  /**
   * One Communication Object from `peer` (pushpull HTTP or WebSocket): apply its ack/setErrs to
   * our outbox, receive its SETs (stored before anything is answered), and build the reply: what
   * we owe the peer plus up to `maxResponseEvents` queued SETs (marked in flight). Call
   * `commit()` once the reply was sent, `fail()` if it could not be.
   */
  async exchange(peer: string, object: CommunicationObject, binding: Binding, options: {maxResponseEvents?: number} = {}): Promise<Exchange> {
    this.applyReport(peer, object.ack, object.setErrs)
    const immediate = await this.receiveBatch(peer, binding, object.sets, object.invalidSets)
    await this.handedOff()
    const owed = this.receiver.owed(peer, this.maxAcks, immediate)
    const limit = Math.min(options.maxResponseEvents ?? object.maxResponseEvents ?? this.maxResponseEvents, this.limits.maxSets)
    const sets = this.takeSets(peer, limit)
    return this.exchangeOf(peer, binding, owed, sets)
  }

  // -------------------------------------------------------------------------------------------
  // Request handling

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const method = req.method ?? ''
    const path = requestPath(req)
    try {
      this.checkRequestRate(req)
      rejectTokenInQuery(req)
      if (this.options.checkHost !== false) {
        checkHostAndOrigin(req, {allowedHosts: this.allowedHosts, allowedOrigins: this.options.allowOrigins, tls: this.options.tls !== undefined})
      }

      if (path === this.paths.events) await this.handlePush(req, res)
      else if (path === this.paths.pushpull) await this.handlePushpull(req, res)
      else if (path === this.paths.poll) await this.handlePoll(req, res)
      else if (!(await this.handleExtra(req, res, path))) {
        throw new PushpullError('ERR_MESSAGE_INVALID', `nothing is served at ${sanitizeText(path, 100)}; the endpoints are ${this.paths.events}, ${this.paths.pushpull} and ${this.paths.poll}`, {
          details: {status: 404},
        })
      }
    } catch (error) {
      const failure = this.answerable(error)
      const status = typeof failure.details.status === 'number' ? failure.details.status : 500
      this.report({code: failure.code, message: failure.message, method: sanitizeText(method, 20), path: sanitizeText(path, 100), status, type: 'http-error'})
      sendHttpError(res, failure)
    }
  }

  /** 429 + Retry-After when the remote address is over its request rate. */
  private checkRequestRate(req: IncomingMessage): void {
    const address = req.socket.remoteAddress ?? 'unknown'
    if (this.requestLimiter.take(address)) return
    const seconds = Math.max(1, Math.ceil(this.requestLimiter.retryAfterMs(address) / 1000))
    throw new PushpullError('ERR_LIMIT_EXCEEDED', `too many requests from this address (over ${this.requestLimiter.perSecond} per second); retry after ${seconds} s`, {
      details: {headers: {connection: 'close', 'retry-after': String(seconds)}, status: 429},
    })
  }

  private async handleExtra(req: IncomingMessage, res: ServerResponse, path: string): Promise<boolean> {
    if (this.extraRoutes.length === 0) return false
    let url: URL
    try {
      // Concatenate rather than resolve: a request target like "//other/x" must stay a path.
      url = new URL(`${this.options.tls === undefined ? 'http' : 'https'}://listener.invalid${req.url ?? path}`)
    } catch {
      return false
    }

    for (const handler of this.extraRoutes) {
      if (await handler(req, res, url)) return true
    }

    return false
  }

  /** Map storage and internal failures to an HTTP answer; keep the ones that carry a status. */
  private answerable(error: unknown): PushpullError {
    const failure = toPushpullError(error)
    if (typeof failure.details.status === 'number') return failure
    if (failure.code === 'ERR_STATE_IO' || failure.code === 'ERR_JWKS_FETCH') {
      return new PushpullError(failure.code, `${failure.message}; nothing was acknowledged, try again later`, {
        cause: failure,
        details: {headers: {'retry-after': String(this.retryAfterSec)}, status: 503},
      })
    }

    return failure
  }

  private async readRequest(req: IncomingMessage): Promise<Buffer> {
    return readBody(req, {maxBytes: this.limits.maxBytes, timeoutMs: this.requestTimeoutMs})
  }

  private async handlePush(req: IncomingMessage, res: ServerResponse): Promise<void> {
    checkMethod(req, ['POST'])
    const peer = this.peerOf(req)
    checkContentType(req, [SET_JWT])
    const token = (await this.readRequest(req)).toString('utf8').trim()
    const key = pushKeyOf(token, this.limits.maxSetBytes)
    const sets = new Map<string, string>()
    const invalidSets = new Map<string, SetErr>()
    if (Buffer.byteLength(token) > this.limits.maxSetBytes) {
      invalidSets.set(key, {description: `SET is ${Buffer.byteLength(token)} bytes, over the ${this.limits.maxSetBytes}-byte limit`, err: 'invalid_request'})
    } else {
      sets.set(key, token)
    }

    const outcomes = await this.receiveOutcomes(peer, 'push', sets, invalidSets)
    const outcome = outcomes.outcomes.find((item) => item.key === key)
    this.options.afterStore?.(peer, 'push')
    if (outcome === undefined) throw new PushpullError('ERR_INTERNAL', 'the receiver returned no outcome for the pushed SET')
    if (outcome.status === 'deferred') {
      sendSetError(res, 503, 'invalid_request', `the SET cannot be judged now (${sanitizeText(outcome.error.message, 200)}); retry later`, {'retry-after': String(this.retryAfterSec)})
      return
    }

    const delivered = (): void =>
      afterAnswer(() => {
        this.ledger.markDelivered(peer, [key])
        this.report({ack: outcome.status === 'rejected' ? 0 : 1, binding: 'push', peer, setErrs: outcome.status === 'rejected' ? 1 : 0, type: 'answered'})
      })

    if (outcome.status === 'rejected') {
      res.once('finish', delivered)
      sendSetError(res, 400, toSetErrCode(outcome.setErr.err), outcome.setErr.description)
      return
    }

    res.once('finish', delivered)
    res.writeHead(202, {'cache-control': 'no-store', 'content-length': '0'})
    res.end()
  }

  private async handlePushpull(req: IncomingMessage, res: ServerResponse): Promise<void> {
    checkMethod(req, ['POST'])
    const peer = this.peerOf(req)
    const type = checkContentType(req, [JSON_TYPE, SETS_JSON])
    const body = await this.readRequest(req)
    if (type === SETS_JSON) {
      const parsed = parseMultiPushRequest(body, this.limits)
      const immediate = await this.receiveBatch(peer, 'multi-push', parsed.sets, parsed.invalidSets)
      this.options.afterStore?.(peer, 'multi-push')
      await this.handedOff()
      const owed = this.receiver.owed(peer, this.maxAcks, immediate)
      const exchange = this.exchangeOf(peer, 'multi-push', owed, new Map())
      this.sendAfter(res, exchange, 202, buildMultiPushResponse({ack: owed.ack, setErrs: owed.setErrs}))
      return
    }

    const object = parseCommunicationObject(body, this.limits)
    const exchange = await this.exchange(peer, object, 'pushpull')
    this.options.afterStore?.(peer, 'pushpull')
    this.sendAfter(res, exchange, 200, buildCommunicationObject(exchange.reply))
  }

  private async handlePoll(req: IncomingMessage, res: ServerResponse): Promise<void> {
    checkMethod(req, ['POST'])
    const peer = this.peerOf(req)
    checkContentType(req, [JSON_TYPE])
    const request = parsePollRequest(await this.readRequest(req), this.limits)
    this.applyReport(peer, request.ack, request.setErrs)
    const limit = Math.min(request.maxEvents ?? this.maxResponseEvents, this.maxResponseEvents, this.limits.maxSets)
    let sets = this.takeSets(peer, limit)
    if (sets.size === 0 && limit > 0 && !request.returnImmediately) {
      await this.waitForSets(peer, req)
      sets = this.takeSets(peer, limit)
    }

    const next = this.ledger.nextDueAt(peer)
    const moreAvailable = limit > 0 && sets.size >= limit && next !== undefined && next <= this.now()
    const exchange = this.exchangeOf(peer, 'poll', {ack: [], setErrs: new Map()}, sets)
    this.sendAfter(res, exchange, 200, buildPollResponse({sets, ...(moreAvailable ? {moreAvailable: true} : {})}))
  }

  // -------------------------------------------------------------------------------------------
  // Shared steps

  private applyReport(peer: string, ack: readonly string[], setErrs: ReadonlyMap<string, SetErr>): void {
    if (ack.length === 0 && setErrs.size === 0) return
    const result = this.ledger.applyReport(peer, {ack, setErrs})
    for (const jti of result.acked) this.report({jti, peer, type: 'ack'})
    for (const jti of result.rejected) {
      const setErr = setErrs.get(jti)
      this.report({description: setErr?.description ?? '', err: setErr?.err ?? 'unspecified', jti, peer, type: 'setErr'})
    }
  }

  private async receiveOutcomes(peer: string, binding: Binding, sets: ReadonlyMap<string, string>, invalidSets: ReadonlyMap<string, SetErr>) {
    if (sets.size === 0 && invalidSets.size === 0) return {immediate: new Map<string, SetErr>(), outcomes: [] as ReceiveOutcome[]}
    const result = await this.receiver.receive(peer, {invalidSets, sets})
    for (const outcome of result.outcomes) this.reportOutcome(peer, binding, outcome)
    await this.handedOff()
    return result
  }

  /** Wait until what was reported so far has been handed off (see `ListenerOptions.handoff`). */
  private async handedOff(): Promise<void> {
    const pending = this.options.handoff?.()
    if (pending !== undefined) await pending
  }

  private async receiveBatch(peer: string, binding: Binding, sets: ReadonlyMap<string, string>, invalidSets: ReadonlyMap<string, SetErr>): Promise<Map<string, SetErr>> {
    return (await this.receiveOutcomes(peer, binding, sets, invalidSets)).immediate
  }

  private reportOutcome(peer: string, binding: Binding, outcome: ReceiveOutcome): void {
    switch (outcome.status) {
      case 'new': {
        this.report({binding, jti: outcome.key, peer, set: outcome.set, status: 'new', type: 'set', verdict: outcome.verdict})
        if (outcome.verdict === 'accepted') this.options.forwarder?.forward(outcome.key, outcome.set.token)
        break
      }

      case 'duplicate': {
        this.report({binding, jti: outcome.key, peer, set: outcome.set, status: 'duplicate', type: 'set'})
        break
      }

      case 'rejected': {
        this.report({
          binding,
          description: outcome.setErr.description,
          err: outcome.setErr.err,
          event: outcome.event,
          iss: outcome.iss,
          jti: outcome.key,
          peer,
          repeat: outcome.repeat,
          type: 'rejected',
        })
        break
      }

      case 'deferred': {
        this.report({binding, description: sanitizeText(outcome.error.message, 300), jti: outcome.key, peer, type: 'deferred'})
        break
      }
    }
  }

  /** Take up to `limit` due SETs for `peer` (in flight now), keeping the reply under half the body limit. */
  private takeSets(peer: string, limit: number): Map<string, string> {
    const sets = new Map<string, string>()
    const budget = Math.floor(this.limits.maxBytes / 2)
    let used = 0
    while (sets.size < limit && used < budget) {
      const chunk = Math.max(1, Math.min(limit - sets.size, Math.floor((budget - used) / this.limits.maxSetBytes)))
      const due = this.ledger.takeDue(peer, chunk)
      for (const jti of due.abandoned) this.report({jti, peer, type: 'abandoned'})
      for (const item of due.sets) {
        sets.set(item.jti, item.token)
        used += Buffer.byteLength(item.token) + item.jti.length + 6
      }

      if (due.sets.length < chunk) break
    }

    return sets
  }

  private exchangeOf(peer: string, binding: Binding, owed: OwedReport, sets: Map<string, string>): Exchange {
    let settled = false
    return {
      commit: () => {
        if (settled) return
        settled = true
        this.receiver.delivered(peer, owed)
        if (owed.ack.length > 0 || owed.setErrs.size > 0) this.report({ack: owed.ack.length, binding, peer, setErrs: owed.setErrs.size, type: 'answered'})
        if (sets.size > 0) this.report({binding, jtis: [...sets.keys()], peer, type: 'sent'})
      },
      fail: () => {
        if (settled) return
        settled = true
        if (sets.size > 0) this.ledger.requeueInFlight(peer)
      },
      reply: {ack: owed.ack, setErrs: owed.setErrs, sets},
    }
  }

  /** Write the answer; commit the exchange once it was handed to the socket, fail it otherwise. */
  private sendAfter(res: ServerResponse, exchange: Exchange, status: number, body: string): void {
    res.once('finish', () => afterAnswer(() => exchange.commit()))
    res.once('close', () => {
      if (!res.writableFinished) afterAnswer(() => exchange.fail())
    })
    const buffer = Buffer.from(body)
    const headers: Record<string, string> = {'cache-control': 'no-store', 'content-length': String(buffer.length), 'content-type': 'application/json'}
    // Shutting down: do not keep the connection open for another request.
    if (this.shutdown.signal.aborted) headers.connection = 'close'
    res.writeHead(status, headers)
    res.end(buffer)
  }

  private wake(peer: string): void {
    for (const fn of [...(this.queuedListeners.get(peer) ?? [])]) {
      try {
        fn()
      } catch {
        // A listener's failure is its own.
      }
    }
  }

  /** Hold a long poll until SETs are queued or due for `peer`, the timeout, shutdown, or the client leaves. */
  private async waitForSets(peer: string, req: IncomingMessage): Promise<void> {
    if (this.longPollTimeoutMs === 0 || this.shutdown.signal.aborted) return
    await new Promise<void>((resolve) => {
      const timers: NodeJS.Timeout[] = []
      let unsubscribe = (): void => {}
      const done = (): void => {
        for (const timer of timers) clearTimeout(timer)
        unsubscribe()
        this.shutdown.signal.removeEventListener('abort', done)
        req.socket.off('close', done)
        resolve()
      }

      unsubscribe = this.onQueued(peer, done)
      timers.push(setTimeout(done, this.longPollTimeoutMs))
      const next = this.ledger.nextDueAt(peer)
      if (next !== undefined) timers.push(setTimeout(done, Math.max(0, next - this.now())))
      this.shutdown.signal.addEventListener('abort', done, {once: true})
      req.socket.once('close', done)
    })
  }
}

/**
 * Book-keeping once an answer was written or lost runs from a socket event, where a throw would be
 * an uncaught exception that ends the process. The only expected failure is a state store closed
 * by a shutdown racing the last answer: then the ack simply stays owed (sent again later, and a
 * redelivered SET is a duplicate, never processed twice), so it is dropped here.
 */
function afterAnswer(fn: () => void): void {
  try {
    fn()
  } catch {
    // See above: the state keeps the ack owed.
  }
}

/** The inbox key of a pushed SET: its jti when it has a usable one, else a stable hash key. */
function pushKeyOf(token: string, maxSetBytes: number): string {
  if (Buffer.byteLength(token) <= maxSetBytes) {
    try {
      const {payload} = decodeToken(token, {maxBytes: maxSetBytes})
      if (typeof payload.jti === 'string' && payload.jti !== '') return payload.jti
    } catch {
      // The receiver reports why; the key only has to be stable.
    }
  }

  return `(no jti) ${hashSetPayload(token).slice(0, 16)}`
}

function toSetErrCode(err: string): SetErrCode {
  return (SET_ERR_CODES as readonly string[]).includes(err) ? (err as SetErrCode) : 'invalid_request'
}

/** Build a listener (not yet bound: call `listen()`). */
export function createListener(options: ListenerOptions): Listener {
  return new Listener(options)
}
