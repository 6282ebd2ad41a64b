/**
 * The transmitter side of SSF 1.0, as a request handler a node http(s) server mounts
 * (`listen --ssf`, tests). It serves, under the issuer's path:
 *
 *   GET  /.well-known/ssf-configuration[/<issuer path>]   metadata (public)
 *   GET  <p>/ssf/jwks.json                                 the signing key's public JWKS (public)
 *   *    <p>/ssf/stream                                    configuration endpoint: POST 201 | GET 200 | PATCH 200 | PUT 200 | DELETE 204
 *   GET/POST <p>/ssf/status                               status endpoint (200)
 *   POST <p>/ssf/subjects:add | subjects:remove          200 | 204
 *   POST <p>/ssf/verify                                    204, then a verification SET is emitted
 *   POST <p>/ssf/poll/<stream_id>                          built-in RFC 8936 poll endpoint (unless `pollUrl` is given)
 *
 * Errors follow the specification: 400 malformed or invalid, 401 missing/wrong bearer token,
 * 404 unknown stream, 405 wrong method, 409 a second stream when `allowMultipleStreams` is false,
 * 415 a body that is not JSON, 429 verification requested faster than `min_verification_interval`.
 * Every error body is `{"err","description"}`.
 *
 * Events. Every SET the handler emits (verification, stream-updated, `queueEvent`) is signed with
 * `signer`, then handed to `onEvent({token, jti, streamId, delivery})` when given: that is how the
 * integrator feeds the listener's own outbound queue (push to the stream's endpoint with its
 * `authorization_header`, or its poll/pushpull endpoints). When `pollUrl` is not given the handler
 * also keeps a per-stream queue served by its built-in poll endpoint; SETs leave it when acked
 * (or setErr'd) by the poller. Events are only queued for an enabled stream (paused streams hold
 * them; disabled streams drop them), and ordinary events only when their type is in
 * `events_delivered`. With `pollUrl` (an external queue) the events of a paused stream are held in
 * memory and handed to `onEvent` when the stream is enabled again; a stream-updated event
 * announcing the pause itself is never held.
 *
 * Streams already in `store` (from an earlier run) are re-stamped at creation with this run's
 * `issuer` and, for poll streams, this run's poll endpoint.
 */
import {randomUUID} from 'node:crypto'
import type {IncomingMessage, ServerResponse} from 'node:http'

import {buildPollResponse, parsePollRequest} from '../communication.js'
import {PushpullError} from '../errors.js'
import {EVENT_TYPES} from '../events.js'
import {isJsonObject, ownMember, parseJsonBounded} from '../json.js'
import type {Signer} from '../keys.js'
import {mintSet} from '../mint.js'
import {sanitizeText} from '../text.js'
import {checkBearer, checkMethod, readBody, sendHttpError, sendJson} from '../transport/http-server.js'
import type {StreamConfig, StreamDelivery} from './client.js'
import {checkTransmitterUrl, DELIVERY_POLL, DELIVERY_PUSH, metadataUrl} from './metadata.js'
import {MemorySsfStreamStore, type SsfStreamStore, type StoredStream} from './store.js'
import {STREAM_UPDATED_EVENT, VERIFICATION_EVENT} from './verification.js'

export const DEFAULT_SSF_MAX_BODY_BYTES = 64 * 1024
export const DEFAULT_SSF_AUDIENCE = 'pushpull-receiver'
export const DEFAULT_SSF_LONG_POLL_MS = 5000

export interface EmittedEvent {
  token: string
  jti: string
  streamId: string
  delivery: StreamDelivery
}

export interface SsfTransmitterOptions {
  /** The issuer identifier: the URL this server is reached at, optionally with a path (`http://127.0.0.1:8080/t1`). */
  issuer: string
  /** Signs the SETs the transmitter emits. */
  signer: Signer
  /** The public JWKS served at `<p>/ssf/jwks.json` (the signer's public key). */
  jwks: {keys: ReadonlyArray<Record<string, unknown>>}
  /** Bearer token required on the management API and the built-in poll endpoint. Default none (open). */
  token?: string
  /**
   * Check a management or poll request's credentials instead of `token` (throw a PushpullError
   * with `details.status` 401 to refuse). `listen --ssf` passes the listener's own token check.
   * `authorization_schemes` in the metadata is announced when either this or `token` is given.
   */
  authorize?: (req: IncomingMessage) => void
  /** Stream storage. Default in memory. */
  store?: SsfStreamStore
  /** `aud` of every stream created. Default "pushpull-receiver". */
  audience?: string | string[]
  /** Event types offered (`events_supported`). Default every type in the pushpull catalog. */
  eventsSupported?: readonly string[]
  /** Delivery methods accepted on create. Default push and poll. */
  deliveryMethods?: readonly string[]
  /** When false, a second create answers 409. Default true. */
  allowMultipleStreams?: boolean
  /** Seconds between verification requests per stream; faster ones get 429. Default 0 (no limit, member omitted). */
  minVerificationIntervalSec?: number
  /** The poll endpoint to assign to poll streams. Default the built-in `<p>/ssf/poll/<stream_id>`. */
  pollUrl?: (streamId: string) => string
  /** Accept http:// push endpoints on loopback hosts (tests, demos). Default false. */
  allowHttp?: boolean
  /** Called with every SET emitted (see the module comment). */
  onEvent?: (event: EmittedEvent) => void
  /** Largest request body, in bytes. Default 64 KiB. */
  maxBodyBytes?: number
  /** Longest hold of a built-in long poll, in ms. Default 5000. */
  longPollMs?: number
  now?: () => number
  randomId?: () => string
}

export interface SsfTransmitter {
  /** Serve `req` when its path is one of ours; resolves false (nothing written) otherwise. */
  handle(req: IncomingMessage, res: ServerResponse, url: URL): Promise<boolean>
  /** Sign and emit one event on a stream. Resolves undefined when the stream does not take it now. */
  queueEvent(streamId: string, event: {events: Record<string, Record<string, unknown>>; sub_id?: Record<string, unknown>; txn?: string}): Promise<EmittedEvent | undefined>
  /** Transmitter-initiated status change: stored, then announced with a stream-updated SET. */
  setStreamStatus(streamId: string, status: StoredStream['status'], reason?: string): Promise<void>
  /** SETs waiting in the built-in poll queue of a stream (jtis). */
  pending(streamId: string): string[]
  readonly metadataUrl: string
  readonly store: SsfStreamStore
  close(): void
}

const STATUSES = new Set(['enabled', 'paused', 'disabled'])
const TRANSMITTER_SUPPLIED = ['iss', 'aud', 'events_supported', 'events_delivered', 'min_verification_interval', 'inactivity_timeout'] as const

function httpError(status: number, message: string, err: 'invalid_request' | 'access_denied' = 'invalid_request', headers?: Record<string, string>): PushpullError {
  return new PushpullError(status === 404 ? 'ERR_PEER_REJECTED' : 'ERR_MESSAGE_INVALID', message, {details: {err, status, ...(headers === undefined ? {} : {headers})}})
}

function sameJson(a: unknown, b: unknown): boolean {
  return JSON.stringify(a) === JSON.stringify(b)
}

export function createSsfTransmitter(options: SsfTransmitterOptions): SsfTransmitter {
  const issuerUrl = new URL(options.issuer)
  const issuer = options.issuer
  const prefix = issuerUrl.pathname.replace(/\/+$/, '')
  const base = `${issuerUrl.origin}${prefix}`
  const paths = {
    jwks: `${prefix}/ssf/jwks.json`,
    poll: `${prefix}/ssf/poll/`,
    remove: `${prefix}/ssf/subjects:remove`,
    add: `${prefix}/ssf/subjects:add`,
    status: `${prefix}/ssf/status`,
    stream: `${prefix}/ssf/stream`,
    verify: `${prefix}/ssf/verify`,
    wellKnown: new URL(metadataUrl(issuer)).pathname,
  }
  const store = options.store ?? new MemorySsfStreamStore()
  const now = options.now ?? Date.now
  const randomId = options.randomId ?? (() => randomUUID().replaceAll('-', ''))
  const maxBodyBytes = options.maxBodyBytes ?? DEFAULT_SSF_MAX_BODY_BYTES
  const longPollMs = options.longPollMs ?? DEFAULT_SSF_LONG_POLL_MS
  const audience = options.audience ?? DEFAULT_SSF_AUDIENCE
  const eventsSupported = [...(options.eventsSupported ?? EVENT_TYPES.map((type) => type.uri))]
  const deliveryMethods = [...(options.deliveryMethods ?? [DELIVERY_PUSH, DELIVERY_POLL])]
  const minInterval = options.minVerificationIntervalSec ?? 0
  const builtinPoll = options.pollUrl === undefined
  const queues = new Map<string, Array<{jti: string; token: string}>>()
  const waiters = new Map<string, Set<() => void>>()
  /** With an external poll endpoint: events of paused streams, handed to onEvent once re-enabled (memory only). */
  const held = new Map<string, EmittedEvent[]>()
  let closed = false

  const metadata = {
    spec_version: '1_0',
    issuer,
    jwks_uri: `${base}/ssf/jwks.json`,
    delivery_methods_supported: deliveryMethods,
    configuration_endpoint: `${base}/ssf/stream`,
    status_endpoint: `${base}/ssf/status`,
    add_subject_endpoint: `${base}/ssf/subjects:add`,
    remove_subject_endpoint: `${base}/ssf/subjects:remove`,
    verification_endpoint: `${base}/ssf/verify`,
    ...(options.token === undefined && options.authorize === undefined ? {} : {authorization_schemes: [{spec_urn: 'urn:ietf:rfc:6750'}]}),
    default_subjects: 'ALL',
  }

  const pollUrlOf = (streamId: string): string => options.pollUrl?.(streamId) ?? `${base}/ssf/poll/${encodeURIComponent(streamId)}`

  // Streams kept from an earlier run (a durable store) follow this run's issuer and poll endpoint:
  // `listen --ssf` on another port or host is still the transmitter of those streams.
  for (const stream of store.list()) {
    const {config} = stream
    const pollEndpoint = config.delivery.method === DELIVERY_POLL ? pollUrlOf(config.stream_id) : config.delivery.endpoint_url
    if (config.iss === issuer && config.delivery.endpoint_url === pollEndpoint) continue
    config.iss = issuer
    if (pollEndpoint !== undefined) config.delivery.endpoint_url = pollEndpoint
    store.put(stream)
  }

  /** The stream is enabled again: wake built-in long polls, release held events. */
  function resume(streamId: string): void {
    wake(streamId)
    const list = held.get(streamId)
    if (list === undefined) return
    held.delete(streamId)
    for (const event of list) options.onEvent?.(event)
  }

  function wake(streamId: string): void {
    const set = waiters.get(streamId)
    if (set === undefined) return
    waiters.delete(streamId)
    for (const resolve of set) resolve()
  }

  async function readJson(req: IncomingMessage): Promise<Record<string, unknown>> {
    const type = req.headers['content-type']
    if (type !== undefined && !/^application\/json\s*(;|$)/i.test(type)) {
      throw new PushpullError('ERR_MESSAGE_INVALID', `Content-Type ${JSON.stringify(sanitizeText(type, 80))} is not accepted; send application/json`, {details: {status: 415}})
    }

    const body = await readBody(req, {maxBytes: maxBodyBytes})
    if (body.length === 0) return {}
    const value = parseJsonBounded(body, {maxBytes: maxBodyBytes}, {invalid: 'ERR_MESSAGE_INVALID', invalidDetails: {status: 400}, tooLarge: 'ERR_LIMIT_EXCEEDED', tooLargeDetails: {status: 413}})
    if (!isJsonObject(value)) throw httpError(400, 'the request body must be a JSON object')
    return value
  }

  function streamIdFrom(value: unknown): string {
    if (typeof value !== 'string' || value === '') throw httpError(400, '"stream_id" is required')
    return value
  }

  function findStream(streamId: string): StoredStream {
    const stream = store.get(streamId)
    if (stream === undefined) throw httpError(404, `no stream "${sanitizeText(streamId, 80)}" for this receiver`)
    return stream
  }

  function stringArray(value: unknown, name: string): string[] | undefined {
    if (value === undefined) return undefined
    if (!Array.isArray(value) || !value.every((item) => typeof item === 'string')) throw httpError(400, `"${name}" must be an array of strings`)
    return [...(value as string[])]
  }

  function parseDelivery(value: unknown, streamId: string): StreamDelivery {
    if (value === undefined) return {endpoint_url: pollUrlOf(streamId), method: DELIVERY_POLL}
    if (!isJsonObject(value)) throw httpError(400, '"delivery" must be an object')
    const method = ownMember(value, 'method')
    if (typeof method !== 'string') throw httpError(400, '"delivery.method" must be a string')
    if (!deliveryMethods.includes(method)) {
      throw httpError(400, `delivery method ${JSON.stringify(sanitizeText(method, 100))} is not supported; use one of ${deliveryMethods.join(', ')}`)
    }

    if (method === DELIVERY_POLL) return {endpoint_url: pollUrlOf(streamId), method}
    const endpoint = ownMember(value, 'endpoint_url')
    if (typeof endpoint !== 'string') throw httpError(400, 'push delivery needs "delivery.endpoint_url"')
    let href: string
    try {
      href = checkTransmitterUrl(endpoint, 'delivery.endpoint_url', {allowHttp: options.allowHttp})
    } catch (error) {
      throw httpError(400, (error as Error).message)
    }

    const delivery: StreamDelivery = {endpoint_url: href, method}
    const authorization = ownMember(value, 'authorization_header')
    if (authorization !== undefined) {
      if (typeof authorization !== 'string' || /[\r\n]/.test(authorization)) throw httpError(400, '"delivery.authorization_header" must be a single-line string')
      delivery.authorization_header = authorization
    }

    return delivery
  }

  function delivered(requested: readonly string[] | undefined): string[] {
    return requested === undefined ? [...eventsSupported] : eventsSupported.filter((uri) => requested.includes(uri))
  }

  function checkTransmitterSupplied(body: Record<string, unknown>, config: StreamConfig): void {
    for (const key of TRANSMITTER_SUPPLIED) {
      const given = ownMember(body, key)
      if (given !== undefined && !sameJson(given, config[key])) {
        throw httpError(400, `"${key}" is Transmitter-Supplied and does not match the stream's value`)
      }
    }
  }

  function describe(body: unknown): string | undefined {
    if (body === undefined) return undefined
    if (typeof body !== 'string') throw httpError(400, '"description" must be a string')
    return body.slice(0, 1000)
  }

  async function emit(stream: StoredStream, events: Record<string, Record<string, unknown>>, extra: {sub_id?: Record<string, unknown>; txn?: string} = {}): Promise<EmittedEvent | undefined> {
    if (stream.status === 'disabled') return undefined
    const minted = await mintSet(
      {aud: stream.config.aud, events, iss: issuer, sub_id: extra.sub_id ?? {format: 'opaque', id: stream.config.stream_id}, ...(extra.txn === undefined ? {} : {txn: extra.txn})},
      options.signer,
      {now},
    )
    const event: EmittedEvent = {delivery: stream.config.delivery, jti: minted.claims.jti, streamId: stream.config.stream_id, token: minted.token}
    if (builtinPoll && stream.config.delivery.method === DELIVERY_POLL) {
      const queue = queues.get(event.streamId) ?? []
      queue.push({jti: event.jti, token: event.token})
      queues.set(event.streamId, queue)
      if (stream.status === 'enabled') wake(event.streamId)
    }

    if (!builtinPoll && stream.status === 'paused') {
      const list = held.get(event.streamId) ?? []
      list.push(event)
      held.set(event.streamId, list)
      return event
    }

    options.onEvent?.(event)
    return event
  }

  // -------------------------------------------------------------------------------------------
  // Endpoints

  async function configuration(req: IncomingMessage, res: ServerResponse, url: URL): Promise<void> {
    checkMethod(req, ['GET', 'POST', 'PATCH', 'PUT', 'DELETE'])
    const method = req.method ?? 'GET'
    if (method === 'GET') {
      const streamId = url.searchParams.get('stream_id')
      if (streamId === null) {
        sendJson(res, 200, store.list().map((stream) => stream.config))
        return
      }

      sendJson(res, 200, findStream(streamId).config)
      return
    }

    if (method === 'DELETE') {
      const streamId = streamIdFrom(url.searchParams.get('stream_id') ?? undefined)
      findStream(streamId)
      store.delete(streamId)
      queues.delete(streamId)
      held.delete(streamId)
      wake(streamId)
      res.writeHead(204, {'cache-control': 'no-store'}).end()
      return
    }

    const body = await readJson(req)
    if (method === 'POST') {
      if (options.allowMultipleStreams === false && store.list().length > 0) {
        throw httpError(409, 'this transmitter allows one stream per receiver and it already exists; read it with GET and change it with PATCH or PUT')
      }

      const streamId = randomId()
      const requested = stringArray(ownMember(body, 'events_requested'), 'events_requested')
      const config: StreamConfig = {
        aud: Array.isArray(audience) ? [...audience] : audience,
        delivery: parseDelivery(ownMember(body, 'delivery'), streamId),
        events_delivered: delivered(requested),
        events_supported: [...eventsSupported],
        iss: issuer,
        stream_id: streamId,
      }
      if (requested !== undefined) config.events_requested = requested
      const description = describe(ownMember(body, 'description'))
      if (description !== undefined) config.description = description
      if (minInterval > 0) config.min_verification_interval = minInterval
      store.put({config, createdAt: now(), status: 'enabled', subjects: []})
      sendJson(res, 201, config)
      return
    }

    // PATCH (update: members given change) or PUT (replace: Receiver-Supplied members left out are removed).
    const stream = findStream(streamIdFrom(ownMember(body, 'stream_id')))
    const {config} = stream
    checkTransmitterSupplied(body, config)
    const replace = method === 'PUT'
    const requested = stringArray(ownMember(body, 'events_requested'), 'events_requested')
    if (requested !== undefined || replace) {
      if (requested === undefined) delete config.events_requested
      else config.events_requested = requested
      config.events_delivered = delivered(requested)
    }

    const deliveryValue = ownMember(body, 'delivery')
    if (deliveryValue !== undefined || replace) config.delivery = parseDelivery(deliveryValue, config.stream_id)
    const description = describe(ownMember(body, 'description'))
    if (description !== undefined) config.description = description
    else if (replace) delete config.description
    store.put(stream)
    sendJson(res, 200, config)
  }

  async function status(req: IncomingMessage, res: ServerResponse, url: URL): Promise<void> {
    checkMethod(req, ['GET', 'POST'])
    if (req.method === 'GET') {
      const stream = findStream(streamIdFrom(url.searchParams.get('stream_id') ?? undefined))
      sendJson(res, 200, {status: stream.status, stream_id: stream.config.stream_id, ...(stream.reason === undefined ? {} : {reason: stream.reason})})
      return
    }

    const body = await readJson(req)
    const stream = findStream(streamIdFrom(ownMember(body, 'stream_id')))
    const value = ownMember(body, 'status')
    if (typeof value !== 'string' || !STATUSES.has(value)) throw httpError(400, '"status" must be "enabled", "paused" or "disabled"')
    const reason = ownMember(body, 'reason')
    if (reason !== undefined && typeof reason !== 'string') throw httpError(400, '"reason" must be a string')
    stream.status = value as StoredStream['status']
    if (reason === undefined) delete stream.reason
    else stream.reason = reason.slice(0, 1000)
    store.put(stream)
    if (stream.status === 'enabled') resume(stream.config.stream_id)
    sendJson(res, 200, {status: stream.status, stream_id: stream.config.stream_id, ...(stream.reason === undefined ? {} : {reason: stream.reason})})
  }

  async function subjects(req: IncomingMessage, res: ServerResponse, add: boolean): Promise<void> {
    checkMethod(req, ['POST'])
    const body = await readJson(req)
    const stream = findStream(streamIdFrom(ownMember(body, 'stream_id')))
    const subject = ownMember(body, 'subject')
    if (!isJsonObject(subject) || typeof ownMember(subject, 'format') !== 'string') {
      throw httpError(400, '"subject" must be a subject identifier object with a "format"')
    }

    const verified = ownMember(body, 'verified')
    if (verified !== undefined && typeof verified !== 'boolean') throw httpError(400, '"verified" must be a boolean')
    const others = stream.subjects.filter((item) => !sameJson(item.subject, subject))
    stream.subjects = add ? [...others, {subject, ...(verified === undefined ? {} : {verified})}] : others
    store.put(stream)
    if (add) {
      res.writeHead(200, {'cache-control': 'no-store', 'content-length': '0'}).end()
    } else {
      res.writeHead(204, {'cache-control': 'no-store'}).end()
    }
  }

  async function verify(req: IncomingMessage, res: ServerResponse): Promise<void> {
    checkMethod(req, ['POST'])
    const body = await readJson(req)
    const stream = findStream(streamIdFrom(ownMember(body, 'stream_id')))
    const state = ownMember(body, 'state')
    if (state !== undefined && typeof state !== 'string') throw httpError(400, '"state" must be a string')
    const at = now()
    if (minInterval > 0 && stream.lastVerificationAt !== undefined && at - stream.lastVerificationAt < minInterval * 1000) {
      const wait = Math.ceil((stream.lastVerificationAt + minInterval * 1000 - at) / 1000)
      throw httpError(429, `verification requested again within min_verification_interval (${minInterval} s)`, 'invalid_request', {'retry-after': String(wait)})
    }

    stream.lastVerificationAt = at
    store.put(stream)
    res.writeHead(204, {'cache-control': 'no-store'}).end()
    await emit(stream, {[VERIFICATION_EVENT]: state === undefined ? {} : {state}})
  }

  async function poll(req: IncomingMessage, res: ServerResponse, streamId: string): Promise<void> {
    checkMethod(req, ['POST'])
    findStream(streamId)
    const body = await readBody(req, {maxBytes: maxBodyBytes})
    let request
    try {
      request = parsePollRequest(body)
    } catch (error) {
      throw httpError(400, (error as Error).message)
    }

    const finished = new Set<string>([...request.ack, ...request.setErrs.keys()])
    const queue = (queues.get(streamId) ?? []).filter((item) => !finished.has(item.jti))
    queues.set(streamId, queue)
    const max = request.maxEvents ?? 1000
    const available = (): Array<{jti: string; token: string}> => (findStreamStatus(streamId) === 'enabled' ? (queues.get(streamId) ?? []).slice(0, max) : [])
    if (max > 0 && available().length === 0 && !request.returnImmediately && !closed) {
      await new Promise<void>((resolve) => {
        const set = waiters.get(streamId) ?? new Set()
        const timer = setTimeout(done, longPollMs)
        function done(): void {
          clearTimeout(timer)
          set.delete(done)
          resolve()
        }

        set.add(done)
        waiters.set(streamId, set)
        req.socket.once('close', done)
      })
    }

    const items = max === 0 ? [] : available()
    const more = max > 0 && (queues.get(streamId)?.length ?? 0) > items.length
    const text = buildPollResponse({sets: items.map((item) => [item.jti, item.token] as const), ...(more ? {moreAvailable: true} : {})})
    sendJson(res, 200, JSON.parse(text) as unknown)
  }

  function findStreamStatus(streamId: string): string | undefined {
    return store.get(streamId)?.status
  }

  function authorize(req: IncomingMessage): void {
    if (options.authorize !== undefined) options.authorize(req)
    else if (options.token !== undefined) checkBearer(req, options.token)
  }

  return {
    close(): void {
      closed = true
      for (const streamId of [...waiters.keys()]) wake(streamId)
    },

    async handle(req: IncomingMessage, res: ServerResponse, url: URL): Promise<boolean> {
      const path = url.pathname
      try {
        if (path === paths.wellKnown) {
          checkMethod(req, ['GET'])
          sendJson(res, 200, metadata)
          return true
        }

        if (path === paths.jwks) {
          checkMethod(req, ['GET'])
          sendJson(res, 200, options.jwks, {'content-type': 'application/jwk-set+json'})
          return true
        }

        if (path === paths.stream) {
          authorize(req)
          await configuration(req, res, url)
          return true
        }

        if (path === paths.status) {
          authorize(req)
          await status(req, res, url)
          return true
        }

        if (path === paths.add || path === paths.remove) {
          authorize(req)
          await subjects(req, res, path === paths.add)
          return true
        }

        if (path === paths.verify) {
          authorize(req)
          await verify(req, res)
          return true
        }

        if (builtinPoll && path.startsWith(paths.poll) && path.length > paths.poll.length) {
          authorize(req)
          await poll(req, res, decodeURIComponent(path.slice(paths.poll.length)))
          return true
        }
      } catch (error) {
        sendHttpError(res, error)
        return true
      }

      return false
    },

    metadataUrl: metadataUrl(issuer),

    pending(streamId: string): string[] {
      return (queues.get(streamId) ?? []).map((item) => item.jti)
    },

    async queueEvent(streamId, event) {
      const stream = store.get(streamId)
      if (stream === undefined) throw new PushpullError('ERR_USAGE', `no SSF stream "${sanitizeText(streamId, 80)}"`)
      const types = Object.keys(event.events)
      if (!types.every((uri) => stream.config.events_delivered.includes(uri) || uri === VERIFICATION_EVENT || uri === STREAM_UPDATED_EVENT)) {
        return undefined
      }

      return emit(stream, event.events, {sub_id: event.sub_id, txn: event.txn})
    },

    async setStreamStatus(streamId, value, reason) {
      const stream = store.get(streamId)
      if (stream === undefined) throw new PushpullError('ERR_USAGE', `no SSF stream "${sanitizeText(streamId, 80)}"`)
      stream.status = value
      if (reason === undefined) delete stream.reason
      else stream.reason = reason
      store.put(stream)
      // Announce it even when the stream is now paused or disabled: the receiver must learn why.
      const announce = {...stream, status: 'enabled' as const}
      await emit(announce, {[STREAM_UPDATED_EVENT]: {status: value, ...(reason === undefined ? {} : {reason})}})
      if (value === 'enabled') resume(streamId)
    },

    store,
  }
}

