/**
 * An OpenID Shared Signals Framework 1.0 transmitter, written from the specification alone
 * (sections "Transmitter Configuration Discovery" and "Management API for SET Event Streams").
 * It imports nothing from src/.
 *
 * - Metadata at `/.well-known/ssf-configuration` (plus the issuer path, if any), JWKS at `/jwks`.
 * - Configuration endpoint `/streams`: POST creates (201; no `delivery` means poll, and the
 *   transmitter supplies the poll URL), GET reads one (`?stream_id=`) or lists all, PATCH updates
 *   the members given, PUT replaces, DELETE removes (204).
 * - Status endpoint `/status`: GET `?stream_id=` and POST `{stream_id, status, reason?}` (200).
 * - `/subjects/add` (200, empty) and `/subjects/remove` (204).
 * - `/verify` `{stream_id, state?}`: 204, then a verification SET is queued on the stream with
 *   `sub_id` `{format: "opaque", id: stream_id}` and the state echoed (or a wrong one, when told).
 * - `/poll/<stream_id>`: RFC 8936 poll (returnImmediately honoured; long polls are answered at
 *   once with what there is, which RFC 8936 allows).
 *
 * Fault switches: `metadata` (members to override or, with `undefined`, delete), `failWith`
 * (answer one operation with a fixed status), `singleStream` (409 on a second create),
 * `wrongState` (verification SETs carry a state other than the one requested), `token`.
 */
import {randomUUID} from 'node:crypto'
import {createServer, type IncomingMessage, type ServerResponse} from 'node:http'

import {listenLoopback, LOOPBACK} from '../ports.js'
import {closeServer, hasBearer, readBody, sendError, sendJson, trackSockets, tryParseJson, wwwAuthenticate} from './http-util.js'
import {generatePeerKey, isPlainObject, type PeerSigningKey, publicJwks, signSet} from './set-token.js'

export const SSF_VERIFICATION = 'https://schemas.openid.net/secevent/ssf/event-type/verification'
export const SSF_STREAM_UPDATED = 'https://schemas.openid.net/secevent/ssf/event-type/stream-updated'
export const PUSH_METHOD = 'urn:ietf:rfc:8935'
export const POLL_METHOD = 'urn:ietf:rfc:8936'

export type SsfOperation = 'metadata' | 'create' | 'list' | 'get' | 'update' | 'replace' | 'delete' | 'status-get' | 'status-set' | 'add' | 'remove' | 'verify'

export interface SsfPeerOptions {
  /** Path component of the issuer (`/t1` -> issuer `http://127.0.0.1:PORT/t1`). Default none. */
  issuerPath?: string
  /** Management bearer token. Default none required. */
  token?: string
  /** Override (or, with `undefined`, remove) metadata members. */
  metadata?: Record<string, unknown>
  /** Override members of every stream configuration returned. */
  streamOverrides?: Record<string, unknown>
  /** Answer the operation with this status (and an error body). */
  failWith?: Partial<Record<SsfOperation, number>>
  /** Refuse a second stream with 409. */
  singleStream?: boolean
  /** Verification SETs carry this state instead of the requested one. */
  wrongState?: string
  /** Serve the metadata under `risc-configuration` only. */
  riscOnly?: boolean
  key?: PeerSigningKey
  audience?: string
  eventsSupported?: string[]
}

interface PeerStream {
  config: Record<string, unknown>
  status: string
  reason?: string
  subjects: unknown[]
  queue: Array<{jti: string; token: string}>
}

export interface SsfPeer {
  issuer: string
  url: string
  key: PeerSigningKey
  streams: Map<string, PeerStream>
  /** Verification requests received: stream_id and state. */
  verifications: Array<{streamId: string; state?: string}>
  /** jtis acked and setErrs received on the poll endpoints. */
  acked: string[]
  setErrs: Record<string, {err: string; description?: string}>
  /** Method and path of every request. */
  requests: Array<{method: string; path: string; authorized: boolean}>
  /** Put a SET on a stream's poll queue. */
  enqueue(streamId: string, claims: Record<string, unknown>): string
  close(): Promise<void>
}

export async function startSsfTransmitter(options: SsfPeerOptions = {}): Promise<SsfPeer> {
  const key = options.key ?? generatePeerKey('ES256', 'ssf-peer')
  const streams = new Map<string, PeerStream>()
  const verifications: SsfPeer['verifications'] = []
  const acked: string[] = []
  const setErrs: SsfPeer['setErrs'] = {}
  const requests: SsfPeer['requests'] = []
  const audience = options.audience ?? 'https://receiver.example/'
  const supported = options.eventsSupported ?? [SSF_VERIFICATION, SSF_STREAM_UPDATED, 'https://schemas.openid.net/secevent/caep/event-type/session-revoked']
  const issuerPath = options.issuerPath ?? ''
  let origin = ''
  const issuer = (): string => `${origin}${issuerPath}`

  const metadata = (): Record<string, unknown> => {
    const doc: Record<string, unknown> = {
      spec_version: '1_0',
      issuer: issuer(),
      jwks_uri: `${origin}/jwks`,
      delivery_methods_supported: [PUSH_METHOD, POLL_METHOD],
      configuration_endpoint: `${origin}/streams`,
      status_endpoint: `${origin}/status`,
      add_subject_endpoint: `${origin}/subjects/add`,
      remove_subject_endpoint: `${origin}/subjects/remove`,
      verification_endpoint: `${origin}/verify`,
      authorization_schemes: [{spec_urn: 'urn:ietf:rfc:6750'}],
    }
    for (const [name, value] of Object.entries(options.metadata ?? {})) {
      if (value === undefined) delete doc[name]
      else doc[name] = value
    }

    return doc
  }

  const view = (stream: PeerStream): Record<string, unknown> => ({...stream.config, ...options.streamOverrides})

  const enqueue = (streamId: string, claims: Record<string, unknown>): string => {
    const stream = streams.get(streamId)
    if (stream === undefined) throw new Error(`no stream ${streamId}`)
    const jti = typeof claims.jti === 'string' ? claims.jti : randomUUID()
    const token = signSet({aud: audience, iat: Math.floor(Date.now() / 1000), iss: issuer(), jti, ...claims}, key)
    stream.queue.push({jti, token})
    return jti
  }

  const deliveryFor = (value: unknown, streamId: string): Record<string, unknown> | string => {
    if (value === undefined) return {endpoint_url: `${origin}/poll/${streamId}`, method: POLL_METHOD}
    if (!isPlainObject(value) || typeof value.method !== 'string') return 'delivery.method is required'
    if (value.method === POLL_METHOD) return {endpoint_url: `${origin}/poll/${streamId}`, method: POLL_METHOD}
    if (value.method !== PUSH_METHOD) return 'unsupported delivery method'
    if (typeof value.endpoint_url !== 'string') return 'push delivery needs endpoint_url'
    return {...value}
  }

  const handler = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const url = new URL(req.url ?? '/', origin)
    const path = url.pathname
    const method = req.method ?? 'GET'
    const authorized = options.token === undefined || hasBearer(req, options.token)
    requests.push({authorized, method, path})
    const body = method === 'GET' || method === 'DELETE' ? '' : await readBody(req, 1024 * 1024)
    const parsed = body === '' ? {ok: true as const, value: {}} : tryParseJson(body)
    const json = parsed.ok && isPlainObject(parsed.value) ? parsed.value : undefined
    const fail = (op: SsfOperation): boolean => {
      const status = options.failWith?.[op]
      if (status === undefined) return false
      sendError(res, status, status === 401 ? 'authentication_failed' : 'invalid_request', `scripted ${status} for ${op}`, status === 401 ? {'WWW-Authenticate': wwwAuthenticate(req)} : {})
      return true
    }

    const wellKnown = `/.well-known/${options.riscOnly === true ? 'risc' : 'ssf'}-configuration${issuerPath}`
    if (path === wellKnown && method === 'GET') {
      if (!fail('metadata')) sendJson(res, 200, metadata())
      return
    }

    if (path === '/jwks') {
      sendJson(res, 200, publicJwks([key]))
      return
    }

    const management = ['/streams', '/status', '/subjects/add', '/subjects/remove', '/verify'].includes(path) || path.startsWith('/poll/')
    if (!management) {
      sendError(res, 404, 'invalid_request', 'not found')
      return
    }

    if (!authorized) {
      sendError(res, 401, 'authentication_failed', 'bearer token required', {'WWW-Authenticate': wwwAuthenticate(req)})
      return
    }

    if (json === undefined) {
      sendError(res, 400, 'invalid_request', 'body is not a JSON object')
      return
    }

    const lookup = (id: unknown): PeerStream | undefined => (typeof id === 'string' ? streams.get(id) : undefined)
    const notFound = (): void => {
      sendError(res, 404, 'invalid_request', 'stream not found')
    }

    if (path === '/streams') {
      if (method === 'POST') {
        if (fail('create')) return
        if (options.singleStream === true && streams.size > 0) {
          sendError(res, 409, 'invalid_request', 'a stream already exists for this receiver')
          return
        }

        const streamId = randomUUID().replaceAll('-', '')
        const delivery = deliveryFor(json.delivery, streamId)
        if (typeof delivery === 'string') {
          sendError(res, 400, 'invalid_request', delivery)
          return
        }

        const requested = Array.isArray(json.events_requested) ? (json.events_requested as string[]) : undefined
        const config: Record<string, unknown> = {
          aud: audience,
          delivery,
          events_delivered: requested === undefined ? [...supported] : supported.filter((uri) => requested.includes(uri)),
          events_supported: supported,
          iss: issuer(),
          stream_id: streamId,
        }
        if (requested !== undefined) config.events_requested = requested
        if (typeof json.description === 'string') config.description = json.description
        streams.set(streamId, {config, queue: [], status: 'enabled', subjects: []})
        sendJson(res, 201, view(streams.get(streamId) as PeerStream))
        return
      }

      if (method === 'GET') {
        const id = url.searchParams.get('stream_id')
        if (id === null) {
          if (!fail('list')) sendJson(res, 200, [...streams.values()].map(view))
          return
        }

        if (fail('get')) return
        const stream = lookup(id)
        if (stream === undefined) notFound()
        else sendJson(res, 200, view(stream))
        return
      }

      if (method === 'PATCH' || method === 'PUT') {
        if (fail(method === 'PATCH' ? 'update' : 'replace')) return
        const stream = lookup(json.stream_id)
        if (stream === undefined) {
          notFound()
          return
        }

        for (const member of ['iss', 'aud', 'events_supported', 'events_delivered']) {
          if (json[member] !== undefined && JSON.stringify(json[member]) !== JSON.stringify(stream.config[member])) {
            sendError(res, 400, 'invalid_request', `${member} is transmitter-supplied and does not match`)
            return
          }
        }

        for (const member of ['events_requested', 'description', 'delivery']) {
          if (json[member] !== undefined) {
            stream.config[member] = member === 'delivery' ? deliveryFor(json[member], json.stream_id as string) : json[member]
          } else if (method === 'PUT') {
            if (member === 'delivery') stream.config.delivery = deliveryFor(undefined, json.stream_id as string)
            else delete stream.config[member]
          }
        }

        const requested = stream.config.events_requested as string[] | undefined
        stream.config.events_delivered = requested === undefined ? [...supported] : supported.filter((uri) => requested.includes(uri))
        sendJson(res, 200, view(stream))
        return
      }

      if (method === 'DELETE') {
        if (fail('delete')) return
        const id = url.searchParams.get('stream_id')
        if (id === null || !streams.delete(id)) {
          notFound()
          return
        }

        res.writeHead(204).end()
        return
      }

      sendError(res, 405, 'invalid_request', 'method not allowed', {Allow: 'GET, POST, PATCH, PUT, DELETE'})
      return
    }

    if (path === '/status') {
      const id = method === 'GET' ? url.searchParams.get('stream_id') : json.stream_id
      if (fail(method === 'GET' ? 'status-get' : 'status-set')) return
      const stream = lookup(id)
      if (stream === undefined) {
        notFound()
        return
      }

      if (method === 'POST') {
        if (typeof json.status !== 'string' || !['enabled', 'paused', 'disabled'].includes(json.status)) {
          sendError(res, 400, 'invalid_request', 'status must be enabled, paused or disabled')
          return
        }

        stream.status = json.status
        if (typeof json.reason === 'string') stream.reason = json.reason
        else delete stream.reason
      }

      sendJson(res, 200, {stream_id: id, status: stream.status, ...(stream.reason === undefined ? {} : {reason: stream.reason})})
      return
    }

    if (path === '/subjects/add' || path === '/subjects/remove') {
      const add = path === '/subjects/add'
      if (fail(add ? 'add' : 'remove')) return
      const stream = lookup(json.stream_id)
      if (stream === undefined) {
        notFound()
        return
      }

      if (!isPlainObject(json.subject) || typeof json.subject.format !== 'string') {
        sendError(res, 400, 'invalid_request', 'subject must be a subject identifier')
        return
      }

      if (add) stream.subjects.push(json.subject)
      else stream.subjects = stream.subjects.filter((item) => JSON.stringify(item) !== JSON.stringify(json.subject))
      res.writeHead(add ? 200 : 204).end()
      return
    }

    if (path === '/verify') {
      if (fail('verify')) return
      const stream = lookup(json.stream_id)
      if (stream === undefined) {
        notFound()
        return
      }

      const state = typeof json.state === 'string' ? json.state : undefined
      verifications.push({state, streamId: json.stream_id as string})
      res.writeHead(204).end()
      const sent = options.wrongState ?? state
      enqueue(json.stream_id as string, {
        events: {[SSF_VERIFICATION]: sent === undefined ? {} : {state: sent}},
        sub_id: {format: 'opaque', id: json.stream_id},
      })
      return
    }

    // /poll/<stream_id>
    const stream = streams.get(decodeURIComponent(path.slice('/poll/'.length)))
    if (stream === undefined) {
      notFound()
      return
    }

    const ack = Array.isArray(json.ack) ? (json.ack as unknown[]).filter((item): item is string => typeof item === 'string') : []
    const errs = isPlainObject(json.setErrs) ? json.setErrs : {}
    acked.push(...ack)
    for (const [jti, value] of Object.entries(errs)) setErrs[jti] = value as {err: string; description?: string}
    const done = new Set([...ack, ...Object.keys(errs)])
    stream.queue = stream.queue.filter((item) => !done.has(item.jti))
    const max = typeof json.maxEvents === 'number' ? json.maxEvents : 1000
    const out: Record<string, string> = {}
    if (stream.status === 'enabled') for (const item of stream.queue.slice(0, max)) out[item.jti] = item.token
    sendJson(res, 200, {sets: out, ...(stream.queue.length > Object.keys(out).length && max > 0 ? {moreAvailable: true} : {})})
  }

  const server = createServer((req, res) => {
    handler(req, res).catch(() => {
      if (!res.headersSent) sendError(res, 500, 'invalid_request', 'peer failure')
    })
  })
  const sockets = trackSockets(server)
  const port = await listenLoopback(server)
  origin = `http://${LOOPBACK}:${port}`
  return {
    acked,
    async close() {
      await closeServer(server, sockets)
    },
    enqueue,
    issuer: issuer(),
    key,
    requests,
    setErrs,
    streams,
    url: origin,
    verifications,
  }
}
