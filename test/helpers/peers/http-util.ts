/**
 * Small node:http helpers shared by the spec peers: body reading with a limit, RFC 8935-style
 * error bodies, bearer checks, scripted fault responses and a change notifier for `waitFor`.
 */
import {EventEmitter} from 'node:events'
import type {IncomingMessage, Server, ServerResponse} from 'node:http'
import type {Socket} from 'node:net'

import {parseJsonSafe} from './set-token.js'

export const DEFAULT_MAX_BODY_BYTES = 1024 * 1024

/** `{err, description}` as in RFC 8935 section 2.3 / RFC 8936 setErrs entries. */
export interface SetErr {
  err: string
  description: string
}

/**
 * A scripted response that replaces the peer's normal answer for one request (client-side fault
 * tests): a status with headers and body, `hang` (never answer), or `destroy` (cut the socket).
 */
export type ScriptedResponse =
  | {status: number; headers?: Record<string, string>; body?: string}
  | {hang: true}
  | {destroy: true}

/** What every HTTP peer records about each request (the Authorization header is never kept). */
export interface RecordedRequest {
  method: string
  path: string
  contentType: string | undefined
  hadAuthorization: boolean
  status: number
  body: string
}

export function mediaType(req: IncomingMessage): string | undefined {
  const value = req.headers['content-type']
  if (value === undefined) return undefined
  return value.split(';')[0]?.trim().toLowerCase()
}

export class BodyTooLarge extends Error {}

/** Read the request body; reject with BodyTooLarge as soon as it passes `limit` bytes. */
export async function readBody(req: IncomingMessage, limit: number): Promise<string> {
  const declared = Number(req.headers['content-length'])
  if (Number.isFinite(declared) && declared > limit) throw new BodyTooLarge(`Content-Length ${declared} is over ${limit}`)
  const chunks: Buffer[] = []
  let size = 0
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length
    if (size > limit) throw new BodyTooLarge(`body is over ${limit} bytes`)
    chunks.push(chunk)
  }

  return Buffer.concat(chunks).toString('utf8')
}

export function sendJson(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): string {
  const text = JSON.stringify(body)
  res.writeHead(status, {'Content-Length': Buffer.byteLength(text), 'Content-Type': 'application/json', ...headers})
  res.end(text)
  return text
}

/** RFC 8935 section 2.3 error: 400-style JSON `{err, description}` with `Content-Language: en`. */
export function sendError(res: ServerResponse, status: number, err: string, description: string, headers: Record<string, string> = {}): string {
  return sendJson(res, status, {description, err}, {'Content-Language': 'en', ...headers})
}

/** True when the request carries `Authorization: Bearer <token>` (RFC 6750 section 2.1). */
export function hasBearer(req: IncomingMessage, token: string): boolean {
  const value = req.headers.authorization
  if (typeof value !== 'string') return false
  const match = /^Bearer +(\S+) *$/i.exec(value)
  return match?.[1] === token
}

export function wwwAuthenticate(req: IncomingMessage): string {
  return req.headers.authorization === undefined ? 'Bearer realm="pushpull-peer"' : 'Bearer realm="pushpull-peer", error="invalid_token"'
}

/** Parse a JSON body; `undefined` when it is not JSON. */
/** What a spec peer's endpoint accepts; `refuseRequest` answers everything else as the RFCs say. */
export interface Endpoint {
  path: string
  /** Why POST: named in the 405 description. */
  postOnly: string
  token?: string | undefined
  mediaTypes: readonly string[]
}

/**
 * 404 for another path, 405 (Allow: POST) for another method, 401 with WWW-Authenticate for a
 * missing or wrong bearer token, 415 for another media type. Returns the status sent, or undefined
 * when the request is acceptable.
 */
export function refuseRequest(req: IncomingMessage, res: ServerResponse, endpoint: Endpoint): number | undefined {
  const url = new URL(req.url ?? '/', 'http://peer')
  if (url.pathname !== endpoint.path) {
    sendError(res, 404, 'invalid_request', `Nothing is served at ${url.pathname}.`)
    return 404
  }

  if (req.method !== 'POST') {
    sendError(res, 405, 'invalid_request', endpoint.postOnly, {Allow: 'POST'})
    return 405
  }

  if (endpoint.token !== undefined && !hasBearer(req, endpoint.token)) {
    sendError(res, 401, 'authentication_failed', 'A valid bearer token is required.', {'WWW-Authenticate': wwwAuthenticate(req)})
    return 401
  }

  const type = mediaType(req)
  if (type === undefined || !endpoint.mediaTypes.includes(type)) {
    sendError(res, 415, 'invalid_request', `The request Content-Type must be ${endpoint.mediaTypes.join(' or ')}.`)
    return 415
  }

  return undefined
}

export function tryParseJson(text: string): {ok: true; value: unknown} | {ok: false} {
  try {
    return {ok: true, value: parseJsonSafe(text)}
  } catch {
    return {ok: false}
  }
}

/** Apply a scripted response. Returns true when the request was handled by it. */
export function applyScripted(scripted: ScriptedResponse, req: IncomingMessage, res: ServerResponse, hung: Set<ServerResponse>): void {
  if ('hang' in scripted) {
    hung.add(res)
    req.resume()
    return
  }

  if ('destroy' in scripted) {
    req.socket.destroy()
    return
  }

  res.writeHead(scripted.status, scripted.headers ?? {})
  res.end(scripted.body ?? '')
}

/**
 * Change notification so tests can wait for peer state without sleeping:
 * `await peer.waitFor(() => peer.received.length === 3)`.
 */
export class Changes {
  private readonly emitter = new EventEmitter()

  constructor() {
    this.emitter.setMaxListeners(0)
  }

  changed(): void {
    this.emitter.emit('change')
  }

  waitFor(predicate: () => boolean, timeoutMs = 5000, what = 'condition'): Promise<void> {
    if (predicate()) return Promise.resolve()
    return new Promise((resolve, reject) => {
      const check = () => {
        if (!predicate()) return
        cleanup()
        resolve()
      }

      const timer = setTimeout(() => {
        cleanup()
        reject(new Error(`peer: timed out after ${timeoutMs} ms waiting for ${what}`))
      }, timeoutMs)
      const cleanup = () => {
        clearTimeout(timer)
        this.emitter.off('change', check)
      }

      this.emitter.on('change', check)
    })
  }
}

/** Track sockets so close() can end keep-alive connections and hung requests promptly. */
export function trackSockets(server: Server): Set<Socket> {
  const sockets = new Set<Socket>()
  server.on('connection', (socket: Socket) => {
    sockets.add(socket)
    socket.on('close', () => sockets.delete(socket))
  })
  return sockets
}

export async function closeServer(server: Server, sockets: Set<Socket>): Promise<void> {
  const closed = new Promise<void>((resolve) => server.close(() => resolve()))
  for (const socket of sockets) socket.destroy()
  await closed
}
