import {createServer} from 'node:http'
import type {AddressInfo} from 'node:net'

import {afterEach, describe, expect, it} from 'vitest'

import {
  attachWebSocketServer,
  bearerAuthenticator,
  CloseCode,
  closeErrorOf,
  connectWebSocket,
  type PushpullSocket,
  SHUTDOWN_REASON,
} from '../../src/lib/transport/ws.js'
import {PATH, rawUpgrade, startServer, type TestServer, until} from './ws-helpers.js'
import {rejection} from '../helpers/errors.js'

const cleanups: Array<() => Promise<void> | void> = []
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup()
})

async function server(options: Parameters<typeof startServer>[0] = {}): Promise<TestServer> {
  const s = await startServer({pingIntervalMs: 0, ...options})
  cleanups.push(() => s.close())
  return s
}

function track(conn: PushpullSocket): PushpullSocket {
  cleanups.push(() => {
    void conn.terminate()
  })
  return conn
}


describe('attachWebSocketServer', () => {
  it('selects pushpull among several offered subprotocols and never permessage-deflate', async () => {
    const s = await server()
    const response = await rawUpgrade(s.port, PATH, {
      'Sec-WebSocket-Protocol': 'chat, pushpull',
      'Sec-WebSocket-Extensions': 'permessage-deflate; client_max_window_bits',
    })
    expect(response.status).toBe(101)
    expect(response.headers['sec-websocket-protocol']).toBe('pushpull')
    expect(response.headers['sec-websocket-extensions']).toBeUndefined()
  })

  it('refuses (400) an upgrade that does not offer pushpull, and starts no session', async () => {
    let sessions = 0
    const s = await server({onConnection: () => sessions++})
    const offers: Array<Record<string, string>> = [{}, {'Sec-WebSocket-Protocol': 'chat, superchat'}]
    for (const headers of offers) {
      const response = await rawUpgrade(s.port, PATH, headers)
      expect(response.status).toBe(400)
      expect(response.headers['content-language']).toBe('en')
      expect(JSON.parse(response.body)).toEqual({
        err: 'invalid_request',
        description: 'the upgrade must offer the WebSocket subprotocol "pushpull"',
      })
    }

    expect(sessions).toBe(0)
    expect(s.handle.connections.size).toBe(0)
  })

  it('answers 404 for an upgrade on another path', async () => {
    const s = await server()
    const response = await rawUpgrade(s.port, '/elsewhere', {'Sec-WebSocket-Protocol': 'pushpull'})
    expect(response.status).toBe(404)
    expect(JSON.parse(response.body)).toEqual({err: 'invalid_request', description: 'no WebSocket endpoint at this path'})
  })

  it('answers 401 with WWW-Authenticate: Bearer when authentication fails or throws', async () => {
    const s = await server({authenticate: bearerAuthenticator('tok')})
    const missing = await rawUpgrade(s.port, PATH, {'Sec-WebSocket-Protocol': 'pushpull'})
    expect(missing.status).toBe(401)
    expect(missing.headers['www-authenticate']).toBe('Bearer')
    expect(JSON.parse(missing.body)).toEqual({err: 'authentication_failed', description: 'a valid bearer token is required'})
    const wrong = await rawUpgrade(s.port, PATH, {'Sec-WebSocket-Protocol': 'pushpull', Authorization: 'Bearer tok2'})
    expect(wrong.status).toBe(401)
    const right = await rawUpgrade(s.port, PATH, {'Sec-WebSocket-Protocol': 'pushpull', Authorization: 'Bearer tok'})
    expect(right.status).toBe(101)

    const throwing = await server({
      authenticate: () => Promise.reject(new Error('backend down')),
    })
    const thrown = await rawUpgrade(throwing.port, PATH, {'Sec-WebSocket-Protocol': 'pushpull'})
    expect(thrown.status).toBe(401)
    expect(thrown.headers['www-authenticate']).toBe('Bearer')
  })

  it('refuses a token in the query string (400) without calling authenticate', async () => {
    let calls = 0
    const s = await server({
      authenticate: () => {
        calls++
        return true
      },
    })
    const response = await rawUpgrade(s.port, `${PATH}?access_token=abc`, {'Sec-WebSocket-Protocol': 'pushpull'})
    expect(response.status).toBe(400)
    expect(JSON.parse(response.body).description).toBe(
      'tokens are not accepted in the query string; use the Authorization header',
    )
    expect(calls).toBe(0)
  })

  it('leaves HTTP POST on the same path to the HTTP handler, with a session open', async () => {
    const s = await server()
    const client = track(await connectWebSocket(s.wsUrl, {pingIntervalMs: 0}))
    const response = await fetch(s.httpUrl, {
      method: 'POST',
      headers: {'content-type': 'application/json'},
      body: '{"sets":{}}',
    })
    expect(response.status).toBe(200)
    expect(await response.json()).toEqual({ack: []})
    expect(s.httpRequests).toEqual([{method: 'POST', url: PATH, body: '{"sets":{}}'}])
    expect(client.isOpen).toBe(true)
    expect(s.handle.connections.size).toBe(1)
  })

  it('caps sessions in total (503) and per address (429), and frees slots when sessions end', async () => {
    const total = await server({maxConnections: 1})
    const first = track(await connectWebSocket(total.wsUrl, {pingIntervalMs: 0}))
    const over = await rejection(connectWebSocket(total.wsUrl))
    expect(over.code).toBe('ERR_WS_HANDSHAKE')
    expect(over.details.status).toBe(503)
    expect(over.details.retryAfter).toBe('5')
    await first.close()
    await until(() => total.handle.connections.size === 0, 'the slot to be released')
    track(await connectWebSocket(total.wsUrl, {pingIntervalMs: 0}))

    const perAddress = await server({maxConnections: 10, maxConnectionsPerAddress: 2})
    track(await connectWebSocket(perAddress.wsUrl, {pingIntervalMs: 0}))
    track(await connectWebSocket(perAddress.wsUrl, {pingIntervalMs: 0}))
    const third = await rejection(connectWebSocket(perAddress.wsUrl))
    expect(third.code).toBe('ERR_WS_HANDSHAKE')
    expect(third.details.status).toBe(429)
    expect(third.message).toContain('refused the WebSocket upgrade with HTTP 429: ')
    expect(third.details.body).toBe(
      '{"err":"invalid_request","description":"too many WebSocket sessions from this address; try again later"}',
    )
  })

  it('counts an upgrade still authenticating against the caps, and refused ones not at all', async () => {
    const releases: Array<(ok: boolean) => void> = []
    const s = await server({
      maxConnections: 1,
      authenticate: () => new Promise<boolean>((resolve) => releases.push(resolve)),
    })
    const pending = rawUpgrade(s.port, PATH, {'Sec-WebSocket-Protocol': 'pushpull'})
    await until(() => releases.length === 1, 'authenticate to be called')
    const second = await rawUpgrade(s.port, PATH, {'Sec-WebSocket-Protocol': 'pushpull'})
    expect(second.status).toBe(503)
    releases[0]?.(false)
    expect((await pending).status).toBe(401)
    // The refused upgrade gave its slot back.
    const again = rawUpgrade(s.port, PATH, {'Sec-WebSocket-Protocol': 'pushpull'})
    await until(() => releases.length === 2, 'authenticate to be called again')
    releases[1]?.(true)
    expect((await again).status).toBe(101)
  })

  it('answers upgrades still authenticating with 503 on shutdown', async () => {
    let called = false
    const s = await startServer({
      authenticate: () => {
        called = true
        return new Promise<boolean>(() => {})
      },
    })
    const pending = rawUpgrade(s.port, PATH, {'Sec-WebSocket-Protocol': 'pushpull'})
    await until(() => called, 'authenticate to be called')
    await s.close()
    const response = await pending
    expect(response.status).toBe(503)
    expect(JSON.parse(response.body).description).toBe('the server is shutting down')
  })

  it('closes every session with 1001 on shutdown; the client sees code and reason', async () => {
    const s = await startServer({pingIntervalMs: 0})
    const client = track(await connectWebSocket(s.wsUrl, {pingIntervalMs: 0}))
    const conn = await s.nextConnection()
    await s.close()
    const atClient = await client.closed
    expect(atClient).toEqual({code: 1001, reason: SHUTDOWN_REASON, wasClean: true, initiatedLocally: false})
    expect(conn.closeInfo).toEqual({code: 1001, reason: SHUTDOWN_REASON, wasClean: true, initiatedLocally: true})
    const error = closeErrorOf(atClient)
    expect(error?.code).toBe('ERR_WS_CLOSED')
    expect(error?.message).toBe('the peer closed the WebSocket session (1001): server shutting down')
    expect(closeErrorOf(conn.closeInfo!)).toBeUndefined()
    expect(s.handle.connections.size).toBe(0)
  })

  it('answers 503 to upgrades once shutdown has begun', async () => {
    const httpServer = createServer()
    const handle = attachWebSocketServer(httpServer, {path: '/', onConnection: () => {}})
    await new Promise<void>((resolve) => httpServer.listen(0, '127.0.0.1', resolve))
    cleanups.push(() => new Promise<void>((resolve) => httpServer.close(() => resolve())))
    const {port} = httpServer.address() as AddressInfo
    const client = track(await connectWebSocket(`ws://127.0.0.1:${port}/`, {pingIntervalMs: 0}))
    // Keep the session from answering the close so shutdown stays in progress.
    client.pause()
    const closing = handle.close()
    const during = await rawUpgrade(port, '/', {'Sec-WebSocket-Protocol': 'pushpull'})
    expect(during.status).toBe(503)
    expect(JSON.parse(during.body).description).toBe('the server is shutting down')
    client.resume()
    await closing
  })

  it('lets the server close a session with 1008 after the upgrade; the client maps it to ERR_CREDENTIALS', async () => {
    const s = await server({
      onConnection(conn) {
        void conn.fail(CloseCode.POLICY, 'token expired')
      },
    })
    const client = track(await connectWebSocket(s.wsUrl, {pingIntervalMs: 0}))
    const info = await client.closed
    expect(info).toEqual({code: 1008, reason: 'token expired', wasClean: true, initiatedLocally: false})
    const error = closeErrorOf(info)
    expect(error?.code).toBe('ERR_CREDENTIALS')
    expect(error?.message).toBe(
      'the peer closed the WebSocket session for an authentication or policy failure (1008): token expired',
    )
  })

  it('closes with 1011 when onConnection throws', async () => {
    const s = await server({
      onConnection() {
        throw new Error('bug')
      },
    })
    const client = track(await connectWebSocket(s.wsUrl, {pingIntervalMs: 0}))
    const info = await client.closed
    expect(info.code).toBe(1011)
    expect(info.reason).toBe('internal error')
  })

  it('validates its options up front', () => {
    const httpServer = createServer()
    expect(() => attachWebSocketServer(httpServer, {path: 'x', onConnection: () => {}})).toThrow(
      expect.objectContaining({code: 'ERR_CONFIG', message: 'path must start with "/" and hold no query or fragment, got "x"'}),
    )
    expect(() => attachWebSocketServer(httpServer, {maxConnections: 0, onConnection: () => {}})).toThrow(
      expect.objectContaining({code: 'ERR_CONFIG', message: 'maxConnections must be an integer >= 1, got 0'}),
    )
    expect(() => attachWebSocketServer(httpServer, {highWaterMark: -1, onConnection: () => {}})).toThrow(
      expect.objectContaining({code: 'ERR_CONFIG', message: 'highWaterMark must be an integer >= 0, got -1'}),
    )
    expect(httpServer.listenerCount('upgrade')).toBe(0)
  })
})
