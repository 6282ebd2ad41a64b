/**
 * The server side of the pushpull WebSocket binding, attached to an existing HTTP(S) server so
 * the upgrade (a GET) shares the path of the pushpull HTTP endpoint (protocol.md decision 1):
 * the HTTP server's 'request' handler keeps every POST; this module answers only 'upgrade'.
 */
import {timingSafeEqual} from 'node:crypto'
import {type IncomingMessage, type Server as HttpServer, STATUS_CODES} from 'node:http'
import type {Duplex} from 'node:stream'

import {type WebSocket, WebSocketServer} from 'ws'

import {PushpullError} from '../errors.js'
import {
  CloseCode,
  PushpullSocket,
  resolveSocketOptions,
  type SocketOptions,
  SUBPROTOCOL,
} from './ws-socket.js'

export const DEFAULT_MAX_CONNECTIONS = 1000
export const DEFAULT_MAX_CONNECTIONS_PER_ADDRESS = 100
export const SHUTDOWN_REASON = 'server shutting down'

export interface AttachOptions extends SocketOptions {
  /** The exact path (no query) that accepts upgrades; other paths get 404. Default '/'. */
  path?: string
  /**
   * Decide whether the upgrade request carries acceptable credentials. False (or a throw) answers
   * 401 with `WWW-Authenticate: Bearer`. Default: everyone is accepted.
   */
  authenticate?: (req: IncomingMessage) => boolean | Promise<boolean>
  /** Called once per accepted session, before any message is delivered. A throw closes it with 1011. */
  onConnection: (conn: PushpullSocket, req: IncomingMessage) => void
  /** Open plus pending sessions in total; more answer 503. Default 1000. */
  maxConnections?: number
  /** Open plus pending sessions from one remote address; more answer 429. Default 100. */
  maxConnectionsPerAddress?: number
}

export interface WebSocketServerHandle {
  /** The sessions open right now. */
  readonly connections: ReadonlySet<PushpullSocket>
  /**
   * Stop accepting upgrades (503), close every session (default 1001 "server shutting down"),
   * wait for them to end (each within its close timeout) and detach from the HTTP server.
   */
  close(code?: number, reason?: string): Promise<void>
}

/** Parse a bearer token from an Authorization header; undefined when there is none. */
export function bearerTokenOf(req: IncomingMessage): string | undefined {
  const header = req.headers.authorization
  if (header === undefined) return undefined
  const match = /^Bearer +([\w.~+/-]+=*) *$/i.exec(header)
  return match?.[1]
}

/** An authenticate() that accepts exactly one bearer token (compared in constant time). */
export function bearerAuthenticator(expected: string): (req: IncomingMessage) => boolean {
  const want = Buffer.from(expected)
  return (req) => {
    const token = bearerTokenOf(req)
    if (token === undefined) return false
    const got = Buffer.from(token)
    return got.length === want.length && timingSafeEqual(got, want)
  }
}

/** The subprotocols a client offered in Sec-WebSocket-Protocol. */
export function offeredSubprotocols(req: IncomingMessage): string[] {
  const raw = req.headers['sec-websocket-protocol']
  if (raw === undefined) return []
  return raw
    .split(',')
    .map((part) => part.trim())
    .filter((part) => part !== '')
}

function refuse(socket: Duplex, status: number, description: string, headers: Record<string, string> = {}): void {
  const body = JSON.stringify({err: status === 401 ? 'authentication_failed' : 'invalid_request', description})
  const head = {
    Connection: 'close',
    'Content-Type': 'application/json',
    'Content-Language': 'en',
    'Content-Length': String(Buffer.byteLength(body)),
    ...headers,
  }
  const lines = Object.entries(head).map(([name, value]) => `${name}: ${value}`)
  if (!socket.writable) {
    socket.destroy()
    return
  }

  socket.once('finish', () => socket.destroy())
  socket.end(`HTTP/1.1 ${status} ${STATUS_CODES[status] ?? ''}\r\n${lines.join('\r\n')}\r\n\r\n${body}`)
}

function checkCount(name: string, value: number): number {
  if (!Number.isSafeInteger(value) || value < 1) {
    throw new PushpullError('ERR_CONFIG', `${name} must be an integer >= 1, got ${String(value)}`, {details: {option: name}})
  }

  return value
}

/**
 * Accept pushpull WebSocket sessions on `httpServer` at `options.path`. Upgrades elsewhere get
 * 404; without `pushpull` among the offered subprotocols 400; failed authentication 401 with
 * `WWW-Authenticate: Bearer`; over the connection caps 503 (total) or 429 (per address).
 */
export function attachWebSocketServer(httpServer: HttpServer, options: AttachOptions): WebSocketServerHandle {
  const socketOptions = resolveSocketOptions(options)
  const path = options.path ?? '/'
  if (!path.startsWith('/') || path.includes('?') || path.includes('#')) {
    throw new PushpullError('ERR_CONFIG', `path must start with "/" and hold no query or fragment, got "${path}"`)
  }

  const maxConnections = checkCount('maxConnections', options.maxConnections ?? DEFAULT_MAX_CONNECTIONS)
  const maxPerAddress = checkCount(
    'maxConnectionsPerAddress',
    options.maxConnectionsPerAddress ?? DEFAULT_MAX_CONNECTIONS_PER_ADDRESS,
  )
  const authenticate = options.authenticate ?? (() => true)
  const wss = new WebSocketServer({
    noServer: true,
    clientTracking: false,
    perMessageDeflate: false,
    maxPayload: socketOptions.maxPayload,
    autoPong: true,
    skipUTF8Validation: false,
    handleProtocols: (protocols) => (protocols.has(SUBPROTOCOL) ? SUBPROTOCOL : false),
    // ws 8.23 option, missing from @types/ws 8.18.
    ...({closeTimeout: socketOptions.closeTimeoutMs} as object),
  })

  const connections = new Set<PushpullSocket>()
  const perAddress = new Map<string, number>()
  const authenticating = new Set<Duplex>()
  let slots = 0
  let closing = false

  const take = (address: string): void => {
    slots++
    perAddress.set(address, (perAddress.get(address) ?? 0) + 1)
  }

  const release = (address: string): void => {
    slots--
    const left = (perAddress.get(address) ?? 1) - 1
    if (left <= 0) perAddress.delete(address)
    else perAddress.set(address, left)
  }

  const onUpgrade = (req: IncomingMessage, socket: Duplex, head: Buffer): void => {
    // Until ws owns the socket, a reset must not become an uncaught 'error'.
    const swallow = (): void => {}
    socket.on('error', swallow)
    const reqUrl = new URL(req.url ?? '/', 'http://upgrade.invalid')
    if (reqUrl.pathname !== path) {
      refuse(socket, 404, `no WebSocket endpoint at this path`)
      return
    }

    if (closing) {
      refuse(socket, 503, 'the server is shutting down')
      return
    }

    if (req.method !== 'GET') {
      refuse(socket, 405, 'a WebSocket upgrade must be a GET', {Allow: 'GET, POST'})
      return
    }

    if ((req.headers.upgrade ?? '').toLowerCase() !== 'websocket') {
      refuse(socket, 400, 'only WebSocket upgrades are accepted here')
      return
    }

    for (const name of reqUrl.searchParams.keys()) {
      if (/^(access_token|token|bearer)$/i.test(name)) {
        refuse(socket, 400, 'tokens are not accepted in the query string; use the Authorization header')
        return
      }
    }

    if (!offeredSubprotocols(req).includes(SUBPROTOCOL)) {
      refuse(socket, 400, `the upgrade must offer the WebSocket subprotocol "${SUBPROTOCOL}"`)
      return
    }

    const address = req.socket.remoteAddress ?? 'unknown'
    if (slots >= maxConnections) {
      refuse(socket, 503, 'too many WebSocket sessions; try again later', {'Retry-After': '5'})
      return
    }

    if ((perAddress.get(address) ?? 0) >= maxPerAddress) {
      refuse(socket, 429, 'too many WebSocket sessions from this address; try again later', {'Retry-After': '5'})
      return
    }

    take(address)
    let released = false
    const releaseOnce = (): void => {
      if (released) return
      released = true
      release(address)
    }

    authenticating.add(socket)
    void (async () => {
      let ok: boolean
      try {
        ok = await authenticate(req)
      } catch {
        ok = false
      } finally {
        authenticating.delete(socket)
      }

      if (socket.destroyed || !socket.writable) {
        releaseOnce()
        socket.destroy()
        return
      }

      if (closing) {
        releaseOnce()
        refuse(socket, 503, 'the server is shutting down')
        return
      }

      if (!ok) {
        releaseOnce()
        refuse(socket, 401, 'a valid bearer token is required', {'WWW-Authenticate': 'Bearer'})
        return
      }

      socket.removeListener('error', swallow)
      let upgraded = false
      wss.handleUpgrade(req, socket, head, (ws: WebSocket) => {
        upgraded = true
        const conn = new PushpullSocket(ws, socketOptions, {side: 'server', remoteAddress: req.socket.remoteAddress})
        connections.add(conn)
        void conn.closed.then(() => {
          connections.delete(conn)
          releaseOnce()
        })
        try {
          options.onConnection(conn, req)
        } catch {
          void conn.fail(CloseCode.INTERNAL, 'internal error')
        }
      })
      // ws answered the request itself (bad key or version, or a closed socket).
      if (!upgraded) {
        releaseOnce()
        socket.on('error', swallow)
      }
    })()
  }

  httpServer.on('upgrade', onUpgrade)

  return {
    connections,
    async close(code: number = CloseCode.GOING_AWAY, reason = SHUTDOWN_REASON): Promise<void> {
      closing = true
      // Upgrades still authenticating are answered now rather than left to hold the server open.
      for (const socket of authenticating) refuse(socket, 503, 'the server is shutting down')
      await Promise.all([...connections].map((conn) => conn.close(code, reason)))
      httpServer.removeListener('upgrade', onUpgrade)
      wss.close()
    },
  }
}
