/**
 * Loopback fixtures for the WebSocket transport tests: an HTTP server with the pushpull transport
 * attached, raw upgrade requests, and a manual heartbeat clock.
 */
import {randomBytes} from 'node:crypto'
import {
  createServer,
  type IncomingHttpHeaders,
  type IncomingMessage,
  request,
  type Server,
  type ServerResponse,
} from 'node:http'
import {createServer as createHttpsServer} from 'node:https'
import type {AddressInfo} from 'node:net'

import {
  type AttachOptions,
  attachWebSocketServer,
  type HeartbeatTimers,
  type PushpullSocket,
  type WebSocketServerHandle,
} from '../../src/lib/transport/ws.js'

export interface TestServer {
  server: Server
  port: number
  wsUrl: string
  httpUrl: string
  handle: WebSocketServerHandle
  /** Sessions in the order they were accepted. */
  conns: PushpullSocket[]
  /** Resolves with the next accepted session (or one already accepted and not yet taken). */
  nextConnection(): Promise<PushpullSocket>
  /** Bodies of requests that reached the HTTP handler. */
  httpRequests: Array<{method: string; url: string; body: string}>
  close(): Promise<void>
}

export const PATH = '/pushpull'

export async function startServer(
  options: Partial<AttachOptions> = {},
  tls?: {key: Buffer; cert: Buffer},
): Promise<TestServer> {
  const httpRequests: TestServer['httpRequests'] = []
  const handler = (req: IncomingMessage, res: ServerResponse): void => {
    const chunks: Buffer[] = []
    req.on('data', (chunk: Buffer) => chunks.push(chunk))
    req.on('end', () => {
      httpRequests.push({method: req.method ?? '', url: req.url ?? '', body: Buffer.concat(chunks).toString('utf8')})
      if (req.method === 'POST') {
        res.writeHead(200, {'content-type': 'application/json'}).end('{"ack":[]}')
      } else {
        res.writeHead(405, {allow: 'POST'}).end()
      }
    })
  }

  const server = (tls === undefined ? createServer(handler) : createHttpsServer(tls, handler)) as Server
  const conns: PushpullSocket[] = []
  const waiting: Array<(conn: PushpullSocket) => void> = []
  let taken = 0
  const userOnConnection = options.onConnection
  const handle = attachWebSocketServer(server, {
    path: PATH,
    ...options,
    onConnection(conn, req) {
      conns.push(conn)
      userOnConnection?.(conn, req)
      const next = waiting.shift()
      if (next !== undefined) {
        taken++
        next(conn)
      }
    },
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const {port} = server.address() as AddressInfo
  const scheme = tls === undefined ? '' : 's'
  return {
    server,
    port,
    wsUrl: `ws${scheme}://127.0.0.1:${port}${PATH}`,
    httpUrl: `http${scheme}://127.0.0.1:${port}${PATH}`,
    handle,
    conns,
    httpRequests,
    nextConnection() {
      if (taken < conns.length) return Promise.resolve(conns[taken++] as PushpullSocket)
      return new Promise((resolve) => waiting.push(resolve))
    },
    async close() {
      await handle.close()
      server.closeAllConnections()
      await new Promise<void>((resolve) => server.close(() => resolve()))
    },
  }
}

export interface RawResponse {
  status: number
  headers: IncomingHttpHeaders
  body: string
}

/** Send an upgrade request by hand and report the status (101 means upgraded; the socket is then closed). */
export function rawUpgrade(
  port: number,
  path: string,
  headers: Record<string, string>,
  method = 'GET',
): Promise<RawResponse> {
  return new Promise((resolve, reject) => {
    const req = request({
      host: '127.0.0.1',
      port,
      path,
      method,
      headers: {
        Connection: 'Upgrade',
        Upgrade: 'websocket',
        'Sec-WebSocket-Version': '13',
        'Sec-WebSocket-Key': randomBytes(16).toString('base64'),
        ...headers,
      },
    })
    req.on('upgrade', (res, socket) => {
      socket.destroy()
      resolve({status: res.statusCode ?? 0, headers: res.headers, body: ''})
    })
    req.on('response', (res) => {
      const chunks: Buffer[] = []
      res.on('data', (chunk: Buffer) => chunks.push(chunk))
      res.on('end', () => resolve({status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks).toString('utf8')}))
    })
    req.on('error', reject)
    req.end()
  })
}

/** A heartbeat clock the test advances by hand. */
export function manualTimers(): HeartbeatTimers & {tick(): void; readonly active: number} {
  const callbacks = new Map<number, () => void>()
  let next = 1
  return {
    setInterval(callback) {
      const id = next++
      callbacks.set(id, callback)
      return id
    },
    clearInterval(handle) {
      callbacks.delete(handle as number)
    },
    tick() {
      for (const callback of [...callbacks.values()]) callback()
    },
    get active() {
      return callbacks.size
    },
  }
}

/** Resolve when `predicate` holds, polling on the event loop (no fixed sleeps). */
export async function until(predicate: () => boolean, what: string, timeoutMs = 5000): Promise<void> {
  const started = Date.now()
  while (!predicate()) {
    if (Date.now() - started > timeoutMs) throw new Error(`timed out waiting for ${what}`)
    await new Promise((resolve) => setTimeout(resolve, 5))
  }
}

/** A port nothing listens on (bound, then released). */
export async function closedPort(): Promise<number> {
  const server = createServer()
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const {port} = server.address() as AddressInfo
  await new Promise<void>((resolve) => server.close(() => resolve()))
  return port
}
