import {createHash} from 'node:crypto'
import {readFileSync} from 'node:fs'
import {createServer, type IncomingHttpHeaders, type IncomingMessage, type Server} from 'node:http'
import {type AddressInfo, createServer as createNetServer, type Socket} from 'node:net'
import {join} from 'node:path'
import type {Duplex} from 'node:stream'

import {afterEach, describe, expect, it} from 'vitest'
import {WebSocketServer} from 'ws'

import {
  bearerAuthenticator,
  connectWebSocket,
  type PushpullSocket,
  SUBPROTOCOL,
  toWebSocketUrl,
} from '../../src/lib/transport/ws.js'
import {closedPort, PATH, startServer, type TestServer} from './ws-helpers.js'
import {rejection} from '../helpers/errors.js'

const TLS_DIR = join(import.meta.dirname, '..', 'fixtures', 'tls')

const cleanups: Array<() => Promise<void> | void> = []
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup()
})

async function server(options: Parameters<typeof startServer>[0] = {}, tls?: Parameters<typeof startServer>[1]): Promise<TestServer> {
  const s = await startServer(options, tls)
  cleanups.push(() => s.close())
  return s
}

function track(conn: PushpullSocket): PushpullSocket {
  cleanups.push(() => {
    void conn.terminate()
  })
  return conn
}


/** An HTTP server whose 'upgrade' handler writes a canned raw response. */
async function rawUpgradeServer(
  respond: (socket: Duplex, req: IncomingMessage) => void,
): Promise<number> {
  const s: Server = createServer()
  s.on('upgrade', (req, socket) => respond(socket, req))
  await new Promise<void>((resolve) => s.listen(0, '127.0.0.1', resolve))
  cleanups.push(() => {
    s.closeAllConnections()
    return new Promise<void>((resolve) => s.close(() => resolve()))
  })
  return (s.address() as AddressInfo).port
}

describe('connectWebSocket', () => {
  it('upgrades with pushpull selected and exchanges text both ways', async () => {
    const s = await server()
    const client = track(await connectWebSocket(s.wsUrl, {pingIntervalMs: 0}))
    const conn = await s.nextConnection()
    expect(client.protocol).toBe(SUBPROTOCOL)
    expect(conn.protocol).toBe(SUBPROTOCOL)
    expect(client.side).toBe('client')
    expect(conn.side).toBe('server')
    expect(conn.remoteAddress).toBe('127.0.0.1')
    expect(client.remoteAddress).toBe('127.0.0.1')

    const atServer: string[] = []
    const atClient: string[] = []
    conn.on('message', (text) => {
      atServer.push(text)
      void conn.send(`echo ${text}`)
    })
    const echoed = new Promise<void>((resolve) =>
      client.on('message', (text) => {
        atClient.push(text)
        resolve()
      }),
    )
    await client.send('{"ack":["a"]}')
    await echoed
    expect(atServer).toEqual(['{"ack":["a"]}'])
    expect(atClient).toEqual(['echo {"ack":["a"]}'])
  })

  it('maps http:// to ws:// and https:// to wss://', async () => {
    expect(toWebSocketUrl('http://h.example/p').href).toBe('ws://h.example/p')
    expect(toWebSocketUrl('https://h.example/p').href).toBe('wss://h.example/p')
    const s = await server()
    const client = track(await connectWebSocket(s.httpUrl, {pingIntervalMs: 0}))
    expect(client.protocol).toBe('pushpull')
  })

  it('sends the bearer token; a missing or wrong token is ERR_CREDENTIALS with status 401', async () => {
    const s = await server({authenticate: bearerAuthenticator('s3cret-token')})
    const missing = await rejection(connectWebSocket(s.wsUrl))
    expect(missing.code).toBe('ERR_CREDENTIALS')
    expect(missing.details.status).toBe(401)
    expect(missing.message).toBe(
      `ws://127.0.0.1:${s.port}${PATH} refused the WebSocket upgrade with 401; check the bearer token: ` +
        '{"err":"authentication_failed","description":"a valid bearer token is required"}',
    )

    const wrong = await rejection(connectWebSocket(s.wsUrl, {token: 'wrong-token'}))
    expect(wrong.code).toBe('ERR_CREDENTIALS')
    expect(wrong.details.status).toBe(401)
    expect(wrong.message).not.toContain('wrong-token')

    const client = track(await connectWebSocket(s.wsUrl, {token: 's3cret-token', pingIntervalMs: 0}))
    expect(client.isOpen).toBe(true)
    expect(s.conns).toHaveLength(1)
  })

  it('maps 403 to ERR_CREDENTIALS', async () => {
    const port = await rawUpgradeServer((socket) =>
      socket.end('HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\nConnection: close\r\n\r\n'),
    )
    const error = await rejection(connectWebSocket(`ws://127.0.0.1:${port}/`))
    expect(error.code).toBe('ERR_CREDENTIALS')
    expect(error.details.status).toBe(403)
    expect(error.message).toBe(`ws://127.0.0.1:${port}/ refused the WebSocket upgrade with 403; check the bearer token`)
  })

  it('maps any other refusal to ERR_WS_HANDSHAKE with the status, Retry-After and a sanitised body excerpt', async () => {
    const body = `overloaded \u001B[31mred\u001B[0m ${'x'.repeat(5000)}`
    const port = await rawUpgradeServer((socket) =>
      socket.end(
        `HTTP/1.1 503 Service Unavailable\r\nRetry-After: 7\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`,
      ),
    )
    const error = await rejection(connectWebSocket(`ws://127.0.0.1:${port}/x`))
    expect(error.code).toBe('ERR_WS_HANDSHAKE')
    expect(error.details.status).toBe(503)
    expect(error.details.retryAfter).toBe('7')
    const excerpt = error.details.body as string
    expect(excerpt.startsWith('overloaded [31mred[0m xxx')).toBe(true)
    expect(excerpt).not.toContain('\u001B')
    expect(excerpt.length).toBeLessThanOrEqual(201)
    expect(error.message).toBe(`ws://127.0.0.1:${port}/x refused the WebSocket upgrade with HTTP 503: ${excerpt}`)
  })

  it('fails with ERR_WS_HANDSHAKE when the server does not select pushpull', async () => {
    const wss = new WebSocketServer({port: 0, host: '127.0.0.1', handleProtocols: () => false})
    await new Promise<void>((resolve) => wss.on('listening', resolve))
    cleanups.push(() => new Promise<void>((resolve) => wss.close(() => resolve())))
    const {port} = wss.address() as AddressInfo
    const error = await rejection(connectWebSocket(`ws://127.0.0.1:${port}/`))
    expect(error.code).toBe('ERR_WS_HANDSHAKE')
    expect(error.message).toBe(`server did not accept subprotocol pushpull (ws://127.0.0.1:${port}/)`)
  })

  it('fails with ERR_WS_HANDSHAKE when the server selects another subprotocol', async () => {
    const port = await rawUpgradeServer((socket, req) => {
      const accept = createHash('sha1')
        .update(`${String(req.headers['sec-websocket-key'])}258EAFA5-E914-47DA-95CA-C5AB0DC85B11`)
        .digest('base64')
      socket.end(
        'HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n' +
          `Sec-WebSocket-Accept: ${accept}\r\nSec-WebSocket-Protocol: other\r\n\r\n`,
      )
    })
    const error = await rejection(connectWebSocket(`ws://127.0.0.1:${port}/`))
    expect(error.code).toBe('ERR_WS_HANDSHAKE')
    expect(error.details.status).toBe(101)
    expect(error.message).toBe(`server did not accept subprotocol pushpull (ws://127.0.0.1:${port}/)`)
  })

  it('fails with ERR_WS_HANDSHAKE on a bad Sec-WebSocket-Accept', async () => {
    const port = await rawUpgradeServer((socket) =>
      socket.end('HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: bogus\r\n\r\n'),
    )
    const error = await rejection(connectWebSocket(`ws://127.0.0.1:${port}/`))
    expect(error.code).toBe('ERR_WS_HANDSHAKE')
    expect(error.message).toBe(
      `invalid WebSocket upgrade response from ws://127.0.0.1:${port}/: Invalid Sec-WebSocket-Accept header`,
    )
  })

  it('maps a refused port to ERR_CONNECT', async () => {
    const port = await closedPort()
    const error = await rejection(connectWebSocket(`ws://127.0.0.1:${port}/`))
    expect(error.code).toBe('ERR_CONNECT')
    expect(error.details.errno).toBe('ECONNREFUSED')
    expect(error.message).toBe(`cannot connect to ws://127.0.0.1:${port}/: connect ECONNREFUSED 127.0.0.1:${port}`)
  })

  it('times out a server that accepts TCP and never answers (ERR_TIMEOUT)', async () => {
    const sockets: Socket[] = []
    const silent = createNetServer((socket) => sockets.push(socket))
    await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve))
    cleanups.push(() => {
      for (const socket of sockets) socket.destroy()
      return new Promise<void>((resolve) => silent.close(() => resolve()))
    })
    const {port} = silent.address() as AddressInfo
    const error = await rejection(connectWebSocket(`ws://127.0.0.1:${port}/p`, {handshakeTimeoutMs: 100}))
    expect(error.code).toBe('ERR_TIMEOUT')
    expect(error.message).toBe(`WebSocket handshake with ws://127.0.0.1:${port}/p timed out after 100 ms`)
  })

  it('honours an AbortSignal before and during the handshake (ERR_ABORTED)', async () => {
    const before = await rejection(connectWebSocket('ws://127.0.0.1:9/', {signal: AbortSignal.abort()}))
    expect(before.code).toBe('ERR_ABORTED')
    expect(before.message).toBe('WebSocket connection to ws://127.0.0.1:9/ aborted before it started')

    const silent = createNetServer(() => {})
    await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve))
    cleanups.push(() => {
      silent.close()
    })
    const {port} = silent.address() as AddressInfo
    const controller = new AbortController()
    const pending = connectWebSocket(`ws://127.0.0.1:${port}/`, {signal: controller.signal})
    controller.abort()
    const during = await rejection(pending)
    expect(during.code).toBe('ERR_ABORTED')
    expect(during.message).toBe(`WebSocket connection to ws://127.0.0.1:${port}/ aborted`)
  })

  it('refuses bad URLs, headers, tokens and limits up front', async () => {
    const cases: Array<[Promise<unknown>, string, string]> = [
      [connectWebSocket('ftp://h/'), 'ERR_USAGE', 'a WebSocket URL must start with ws://, wss://, http:// or https://, got ftp:'],
      [connectWebSocket('not a url'), 'ERR_USAGE', 'not a valid URL for a WebSocket session'],
      [
        connectWebSocket('ws://h/p?access_token=abc'),
        'ERR_USAGE',
        'tokens are never sent in the query string (found "access_token"); pass a bearer token instead',
      ],
      [connectWebSocket('ws://u:p@h/'), 'ERR_USAGE', 'credentials in the URL are not supported; pass a bearer token instead'],
      [
        connectWebSocket('ws://h/', {headers: {Authorization: 'Basic x'}}),
        'ERR_USAGE',
        'header Authorization cannot be set by hand on a WebSocket upgrade; use the bearer token option',
      ],
      [
        connectWebSocket('ws://h/', {headers: {'Sec-WebSocket-Protocol': 'x'}}),
        'ERR_USAGE',
        'header Sec-WebSocket-Protocol cannot be set by hand on a WebSocket upgrade',
      ],
      [connectWebSocket('ws://h/', {headers: {'X-A': 'a\r\nX-B: b'}}), 'ERR_USAGE', 'the value of header X-A contains a line break or NUL'],
      [
        connectWebSocket('ws://h/', {token: 'abc\r\nX: y'}),
        'ERR_USAGE',
        'the bearer token contains characters a token cannot have (RFC 6750 b64token)',
      ],
      [connectWebSocket('ws://h/', {maxPayload: 0}), 'ERR_CONFIG', 'maxPayload must be an integer >= 1, got 0'],
      [connectWebSocket('ws://h/', {maxMissedPongs: 0}), 'ERR_CONFIG', 'maxMissedPongs must be an integer >= 1, got 0'],
      [connectWebSocket('ws://h/', {handshakeTimeoutMs: -1}), 'ERR_CONFIG', 'handshakeTimeoutMs must be an integer >= 1, got -1'],
    ]
    for (const [promise, code, message] of cases) {
      const error = await rejection(promise)
      expect({code: error.code, message: error.message}).toEqual({code, message})
    }
  })

  it('sends extra headers on the upgrade, offers only pushpull and no permessage-deflate', async () => {
    let seen: IncomingHttpHeaders | undefined
    const s = await server({
      authenticate(req) {
        seen = req.headers
        return true
      },
    })
    track(await connectWebSocket(s.wsUrl, {headers: {'X-Tenant': 'blue'}, pingIntervalMs: 0}))
    expect(seen?.['x-tenant']).toBe('blue')
    expect(seen?.['sec-websocket-protocol']).toBe('pushpull')
    expect(seen?.['sec-websocket-extensions']).toBeUndefined()
    expect(seen?.authorization).toBeUndefined()
  })

  describe('TLS', () => {
    const cert = readFileSync(join(TLS_DIR, 'localhost.crt'))
    const key = readFileSync(join(TLS_DIR, 'localhost.key'))

    it('refuses a self-signed certificate without a CA (ERR_TLS)', async () => {
      const s = await server({}, {key, cert})
      const error = await rejection(connectWebSocket(s.wsUrl))
      expect(error.code).toBe('ERR_TLS')
      expect(error.details.errno).toBe('DEPTH_ZERO_SELF_SIGNED_CERT')
      expect(error.message).toBe(`TLS handshake with 127.0.0.1:${s.port} failed: self-signed certificate`)
      expect(s.conns).toHaveLength(0)
    })

    it('connects with the CA file contents, or with insecure', async () => {
      const s = await server({}, {key, cert})
      const withCa = track(await connectWebSocket(s.wsUrl, {ca: cert, pingIntervalMs: 0}))
      expect(withCa.protocol).toBe('pushpull')
      const insecure = track(await connectWebSocket(s.httpUrl, {insecure: true, pingIntervalMs: 0}))
      expect(insecure.protocol).toBe('pushpull')
    })
  })
})
