/**
 * The client binding registry: `--via` names to deliverers (send) and pollers (poll, ack).
 *
 * To add a binding (e.g. the WebSocket deliverer for `send --via ws`), add an entry to
 * `DELIVERERS` below: the `send` command builds its `--via` options from `delivererNames()`.
 */
import type {CommunicationLimits} from '../communication.js'
import {PushpullError} from '../errors.js'
import type {HttpClient, HttpClientOptions} from '../transport/http.js'
import {createMultiPushDeliverer} from './multi-push.js'
import {createRfc8936Poller} from './poll.js'
import {createPushDeliverer} from './push.js'
import {createPushpullHttpDeliverer, createPushpullHttpPoller} from './pushpull-http.js'
import type {Deliverer, Poller} from './types.js'
import {createWsDeliverer} from './ws.js'

export type {Deliverer, ExchangeResult, PeerReport, PollParams, Poller, PollResult, RequestPreview} from './types.js'
export {peerIdOf} from './http-common.js'

export interface BindingContext {
  /** The peer endpoint URL (already checked by the caller). */
  url: string
  /** The run's HTTP client (HTTP bindings). */
  client: HttpClient
  /** The options the client was built from (token, CA, timeouts), for bindings with their own transport. */
  http: HttpClientOptions
  /** SETs per request (batching bindings). */
  maxBatch?: number
  /** Requests at once (push). */
  concurrency?: number
  limits?: Partial<CommunicationLimits>
  /** Wake-up signal for bindings that hold a connection open. */
  signal?: AbortSignal
}

export interface DelivererEntry {
  name: string
  description: string
  /** URL schemes it speaks; the first entry whose scheme matches is the default for a URL. */
  schemes: readonly string[]
  /** Default for these schemes when --via is not given. */
  isDefault?: boolean
  create(context: BindingContext): Deliverer | Promise<Deliverer>
}

export interface PollerEntry {
  name: string
  description: string
  create(context: BindingContext): Poller
}

const HTTP = ['http:', 'https:'] as const
const WS = ['ws:', 'wss:', 'http:', 'https:'] as const

export const DELIVERERS: DelivererEntry[] = [
  {
    create: (ctx) => createPushDeliverer({client: ctx.client, concurrency: ctx.concurrency, hasToken: ctx.http.token !== undefined, url: ctx.url}),
    description: 'RFC 8935 push: one SET per POST, 202 or 400 {err, description}',
    isDefault: true,
    name: 'push',
    schemes: HTTP,
  },
  {
    create: (ctx) =>
      createPushpullHttpDeliverer({client: ctx.client, hasToken: ctx.http.token !== undefined, limits: ctx.limits, maxBatch: ctx.maxBatch, url: ctx.url}),
    description: 'pushpull HTTP: Communication Objects {sets, ack, setErrs}; acks may come in later responses',
    name: 'pushpull',
    schemes: HTTP,
  },
  {
    create: (ctx) => createMultiPushDeliverer({client: ctx.client, hasToken: ctx.http.token !== undefined, limits: ctx.limits, maxBatch: ctx.maxBatch, url: ctx.url}),
    description: 'multi-SET push: application/secevents+json {sets}, 202 {ack, setErrs}',
    name: 'multi-push',
    schemes: HTTP,
  },
  {
    async create(ctx) {
      const ca = ctx.http.ca ?? (ctx.http.caFile === undefined ? undefined : await (await import('node:fs/promises')).readFile(ctx.http.caFile))
      return createWsDeliverer({
        ca,
        handshakeTimeoutMs: ctx.http.connectTimeoutMs,
        headers: ctx.http.headers,
        insecure: ctx.http.insecure,
        limits: ctx.limits,
        maxBatch: ctx.maxBatch,
        maxPayload: ctx.limits?.maxBytes,
        token: ctx.http.token,
        url: ctx.url,
      })
    },
    description: 'pushpull WebSocket: one session (subprotocol pushpull), Communication Objects both ways, acks asynchronous; default for ws:// and wss://',
    isDefault: true,
    name: 'ws',
    schemes: WS,
  },
]

export const POLLERS: PollerEntry[] = [
  {
    create: (ctx) => createRfc8936Poller({client: ctx.client, hasToken: ctx.http.token !== undefined, limits: ctx.limits, url: ctx.url}),
    description: 'RFC 8936 poll: {maxEvents, returnImmediately, ack, setErrs} -> {sets, moreAvailable}',
    name: 'poll',
  },
  {
    create: (ctx) => createPushpullHttpPoller({client: ctx.client, hasToken: ctx.http.token !== undefined, limits: ctx.limits, url: ctx.url}),
    description: 'pushpull HTTP: Communication Objects both ways',
    name: 'pushpull',
  },
]

export function delivererNames(): string[] {
  return DELIVERERS.map((entry) => entry.name)
}

export function pollerNames(): string[] {
  return POLLERS.map((entry) => entry.name)
}

/** The deliverer for `--via name`, or the default for the URL's scheme. */
export function delivererEntryFor(url: URL, via: string | undefined): DelivererEntry {
  if (via !== undefined) {
    const entry = DELIVERERS.find((candidate) => candidate.name === via)
    if (entry === undefined) throw new PushpullError('ERR_USAGE', `unknown --via ${JSON.stringify(via)}; use one of ${delivererNames().join(', ')}`)
    if (!entry.schemes.includes(url.protocol)) {
      throw new PushpullError('ERR_USAGE', `--via ${via} needs a ${entry.schemes.map((s) => `${s}//`).join(' or ')} URL, got ${url.protocol}//`)
    }

    return entry
  }

  const entry = DELIVERERS.find((candidate) => candidate.isDefault === true && candidate.schemes.includes(url.protocol))
  if (entry === undefined) throw new PushpullError('ERR_USAGE', `no binding speaks ${url.protocol}// URLs; use one of ${delivererNames().join(', ')} with an http(s):// URL`)
  return entry
}

export function pollerEntryFor(via: string | undefined): PollerEntry {
  const name = via ?? 'poll'
  const entry = POLLERS.find((candidate) => candidate.name === name)
  if (entry === undefined) throw new PushpullError('ERR_USAGE', `unknown --via ${JSON.stringify(name)}; use one of ${pollerNames().join(', ')}`)
  return entry
}
