import {connect as netConnect, type AddressInfo, type Socket} from 'node:net'

import {afterEach, describe, expect, it} from 'vitest'
import WebSocket, {WebSocketServer} from 'ws'

import {type PushpullError} from '../../src/lib/errors.js'
import {
  CloseCode,
  closeErrorOf,
  type CloseInfo,
  connectWebSocket,
  isSendableCloseCode,
  type PushpullSocket,
  truncateCloseReason,
} from '../../src/lib/transport/ws.js'
import {manualTimers, PATH, startServer, type TestServer, until} from './ws-helpers.js'
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

function track<T extends PushpullSocket | WebSocket>(conn: T): T {
  cleanups.push(() => {
    void conn.terminate()
  })
  return conn
}

/** A plain ws client offering pushpull, for peers that misbehave on purpose. */
async function rawClient(url: string, options: WebSocket.ClientOptions = {}): Promise<WebSocket> {
  const ws = track(new WebSocket(url, ['pushpull'], {perMessageDeflate: false, ...options}))
  await new Promise<void>((resolve, reject) => {
    ws.once('open', resolve)
    ws.once('error', reject)
  })
  return ws
}

function closeOf(ws: WebSocket): Promise<{code: number; reason: string}> {
  return new Promise((resolve) => ws.once('close', (code, reason) => resolve({code, reason: reason.toString()})))
}

function errorsOf(conn: PushpullSocket): PushpullError[] {
  const errors: PushpullError[] = []
  conn.on('error', (error) => errors.push(error))
  return errors
}


describe('PushpullSocket messages', () => {
  it('delivers text frames and binary frames holding UTF-8 as text', async () => {
    const s = await server()
    const received: string[] = []
    const peer = await rawClient(s.wsUrl)
    const conn = await s.nextConnection()
    conn.on('message', (text) => received.push(text))
    peer.send('{"ack":["héllo ✓"]}')
    peer.send(Buffer.from('{"sets":{"é":"a.b.c"}}', 'utf8'))
    await until(() => received.length === 2, 'two messages')
    expect(received).toEqual(['{"ack":["héllo ✓"]}', '{"sets":{"é":"a.b.c"}}'])
  })

  it('closes with 1007 on a binary message that is not UTF-8', async () => {
    const s = await server()
    const peer = await rawClient(s.wsUrl)
    const conn = await s.nextConnection()
    const received: string[] = []
    conn.on('message', (text) => received.push(text))
    const errors = errorsOf(conn)
    const peerClosed = closeOf(peer)
    peer.send(Buffer.from([0x7b, 0xff, 0xfe, 0x7d]))
    peer.send('{"after":"the bad one"}')
    const info = await conn.closed
    expect(info).toMatchObject({code: 1007, reason: 'binary message is not valid UTF-8', initiatedLocally: true})
    expect(await peerClosed).toEqual({code: 1007, reason: 'binary message is not valid UTF-8'})
    expect(errors.map((e) => [e.code, e.message])).toEqual([
      ['ERR_MESSAGE_INVALID', 'binary WebSocket message is not valid UTF-8'],
    ])
    expect(received).toEqual([])
  })

  it('closes with 1007 on a text frame that is not UTF-8', async () => {
    const s = await server()
    const peer = await rawClient(s.wsUrl)
    const conn = await s.nextConnection()
    const errors = errorsOf(conn)
    const peerClosed = closeOf(peer)
    peer.send(Buffer.from([0xc3, 0x28]), {binary: false})
    expect(await conn.closed).toMatchObject({code: 1007, initiatedLocally: true})
    expect((await peerClosed).code).toBe(1007)
    expect(errors.map((e) => [e.code, e.message])).toEqual([
      ['ERR_MESSAGE_INVALID', 'incoming WebSocket text message is not valid UTF-8'],
    ])
  })

  it('keeps messages that arrive before the first message listener', async () => {
    const s = await server({
      onConnection(conn) {
        void conn.send('first')
        void conn.send('second')
      },
    })
    const client = track(await connectWebSocket(s.wsUrl, {pingIntervalMs: 0}))
    // Give both messages time to arrive with nobody listening.
    await new Promise((resolve) => setTimeout(resolve, 30))
    const received: string[] = []
    client.on('message', (text) => received.push(text))
    await until(() => received.length === 2, 'queued messages')
    expect(received).toEqual(['first', 'second'])
  })

  it('closes with 1011 and reports ERR_INTERNAL when a message listener throws', async () => {
    const s = await server()
    const client = track(await connectWebSocket(s.wsUrl, {pingIntervalMs: 0}))
    const conn = await s.nextConnection()
    const errors = errorsOf(conn)
    conn.on('message', () => {
      throw new Error('listener bug')
    })
    await client.send('x')
    expect(await client.closed).toMatchObject({code: 1011, reason: 'internal error', initiatedLocally: false})
    expect(errors.map((e) => [e.code, e.message])).toEqual([
      ['ERR_INTERNAL', 'a WebSocket message listener threw: Error: listener bug'],
    ])
  })
})

describe('PushpullSocket size limits', () => {
  it('closes with 1009 at the server when a client message is over maxPayload', async () => {
    const s = await server({maxPayload: 1024})
    const peer = await rawClient(s.wsUrl)
    const conn = await s.nextConnection()
    const errors = errorsOf(conn)
    const received: string[] = []
    conn.on('message', (text) => received.push(text))
    const peerClosed = closeOf(peer)
    peer.send('x'.repeat(1024))
    peer.send('y'.repeat(1025))
    expect(await conn.closed).toMatchObject({code: 1009, initiatedLocally: true})
    expect((await peerClosed).code).toBe(1009)
    expect(received).toEqual(['x'.repeat(1024)])
    expect(errors.map((e) => [e.code, e.message])).toEqual([
      ['ERR_LIMIT_EXCEEDED', 'incoming WebSocket message is over the limit of 1024 bytes'],
    ])
  })

  it('closes with 1009 at the client when a server message is over maxPayload', async () => {
    const s = await server({maxSendBytes: 4096})
    const client = track(await connectWebSocket(s.wsUrl, {maxPayload: 1024, pingIntervalMs: 0}))
    const errors = errorsOf(client)
    const conn = await s.nextConnection()
    await conn.send('z'.repeat(2048))
    const atClient = await client.closed
    expect(atClient).toMatchObject({code: 1009, initiatedLocally: true})
    const atServer = await conn.closed
    expect(atServer).toMatchObject({code: 1009, initiatedLocally: false})
    expect(errors.map((e) => e.code)).toEqual(['ERR_LIMIT_EXCEEDED'])
    expect(closeErrorOf(atServer)?.message).toBe('the peer closed the WebSocket session: message too big (1009)')
    expect(closeErrorOf(atServer)?.code).toBe('ERR_LIMIT_EXCEEDED')
  })

  it('refuses an over-size frame from its header, before any payload arrives', async () => {
    const s = await server({maxPayload: 1024 * 1024})
    const socket: Socket = netConnect(s.port, '127.0.0.1')
    cleanups.push(() => {
      socket.destroy()
    })
    const chunks: Buffer[] = []
    socket.on('data', (chunk: Buffer) => chunks.push(chunk))
    socket.write(
      `GET ${PATH} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n` +
        'Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Protocol: pushpull\r\n\r\n',
    )
    await until(() => Buffer.concat(chunks).includes('\r\n\r\n'), 'the 101 response')
    const head = Buffer.concat(chunks).toString('latin1')
    expect(head.startsWith('HTTP/1.1 101 ')).toBe(true)
    const headLength = head.indexOf('\r\n\r\n') + 4
    const conn = await s.nextConnection()
    // A masked text frame announcing 1 GiB, followed by only 4 bytes of payload.
    const frame = Buffer.alloc(2 + 8 + 4 + 4)
    frame[0] = 0x81
    frame[1] = 0x80 | 127
    frame.writeBigUInt64BE(1n << 30n, 2)
    socket.write(frame)
    const info = await conn.closed
    expect(info).toMatchObject({code: 1009, initiatedLocally: true})
    await until(() => Buffer.concat(chunks).length >= headLength + 4, 'the close frame')
    const closeFrame = Buffer.concat(chunks).subarray(headLength, headLength + 4)
    expect([...closeFrame]).toEqual([0x88, 0x02, 0x03, 0xf1]) // close, 2 bytes, 1009
  })

  it('rejects a send over maxSendBytes with ERR_LIMIT_EXCEEDED and keeps the session', async () => {
    const s = await server()
    const client = track(await connectWebSocket(s.wsUrl, {maxSendBytes: 1000, pingIntervalMs: 0}))
    const error = await rejection(client.send('é'.repeat(501)))
    expect(error.code).toBe('ERR_LIMIT_EXCEEDED')
    expect(error.message).toBe('message of 1002 bytes is over the WebSocket message limit of 1000 bytes')
    expect(client.isOpen).toBe(true)
  })
})

describe('PushpullSocket backpressure', () => {
  it('send() waits while a peer that does not read keeps bufferedAmount above the high-water mark', async () => {
    const highWaterMark = 64 * 1024
    const s = await server({highWaterMark})
    const client = track(await connectWebSocket(s.wsUrl, {pingIntervalMs: 0}))
    let received = 0
    client.on('message', () => received++)
    client.pause()
    const conn = await s.nextConnection()
    const message = 'm'.repeat(16 * 1024)
    const limit = 64 * 1024 * 1024
    let sent = 0
    let maxBuffered = 0
    let blocked: Promise<void> | undefined
    while (sent * message.length < limit) {
      const pending = conn.send(message)
      sent++
      const outcome = await Promise.race([
        pending.then(() => 'sent' as const),
        new Promise<'blocked'>((resolve) => setTimeout(() => resolve('blocked'), 250)),
      ])
      maxBuffered = Math.max(maxBuffered, conn.bufferedAmount)
      if (outcome === 'blocked') {
        blocked = pending
        break
      }
    }

    // The sender stopped long before 64 MiB, with at most the mark plus one message queued.
    expect(blocked).toBeDefined()
    expect(sent * message.length).toBeLessThan(limit)
    expect(maxBuffered).toBeLessThanOrEqual(highWaterMark + message.length)
    client.resume()
    await blocked
    await until(() => received === sent, 'every message to arrive')
    expect(received).toBe(sent)
  })

  it('rejects a send waiting for the flush, queued sends and later sends with ERR_WS_CLOSED when the session ends', async () => {
    const s = await server({highWaterMark: 0})
    const client = track(await connectWebSocket(s.wsUrl, {pingIntervalMs: 0}))
    client.pause()
    const conn = await s.nextConnection()
    const message = 'p'.repeat(64 * 1024)
    let blocked: Promise<void> | undefined
    for (let i = 0; i < 1024 && blocked === undefined; i++) {
      const pending = conn.send(message)
      const outcome = await Promise.race([
        pending.then(() => 'sent' as const),
        new Promise<'blocked'>((resolve) => setTimeout(() => resolve('blocked'), 250)),
      ])
      if (outcome === 'blocked') blocked = pending
    }

    expect(blocked).toBeDefined()
    const queued = conn.send('queued behind the blocked one')
    void conn.terminate()
    for (const promise of [blocked, queued]) {
      const error = await rejection(promise as Promise<void>)
      expect(error.code).toBe('ERR_WS_CLOSED')
    }

    const after = await rejection(conn.send('late'))
    expect(after.code).toBe('ERR_WS_CLOSED')
    expect(after.message).toBe('cannot send: the WebSocket session is closed or closing')
  })
})

describe('PushpullSocket heartbeat', () => {
  it('terminates a server-side peer that stops answering pings after two missed pongs (real 50 ms timer)', async () => {
    const s = await server({pingIntervalMs: 50, maxMissedPongs: 2})
    const peer = await rawClient(s.wsUrl, {autoPong: false})
    let pings = 0
    peer.on('ping', () => pings++)
    const peerClosed = closeOf(peer)
    const conn = await s.nextConnection()
    expect(await conn.closed).toEqual({code: 1006, reason: 'zombie', wasClean: false, initiatedLocally: true})
    expect(pings).toBe(2)
    expect((await peerClosed).code).toBe(1006)
    const error = closeErrorOf(conn.closeInfo as CloseInfo)
    expect(error?.code).toBe('ERR_WS_CLOSED')
    expect(error?.message).toBe('WebSocket session ended abnormally (1006): the peer stopped answering pings')
  })

  it('keeps a peer that answers, measures the round trip, and terminates a silent server (injected timers)', async () => {
    const timers = manualTimers()
    const clock = [1000, 1042]
    const s = await server({pingIntervalMs: 10_000, timers, now: () => clock.shift() ?? 0})
    const client = track(await connectWebSocket(s.wsUrl, {pingIntervalMs: 0}))
    const conn = await s.nextConnection()
    expect(conn.rttMs).toBeUndefined()
    for (let i = 0; i < 4; i++) {
      const pong = new Promise<number>((resolve) => {
        const off = conn.on('pong', (rtt) => {
          off()
          resolve(rtt)
        })
      })
      timers.tick()
      const rtt = await pong
      if (i === 0) expect(rtt).toBe(42)
    }

    expect(conn.rttMs).toBe(0)
    expect(conn.isOpen).toBe(true)
    expect(client.isOpen).toBe(true)
    await client.close()
    expect(timers.active).toBe(0)
  })

  it('terminates a server that stops answering pings, from the client side', async () => {
    const wss = new WebSocketServer({
      port: 0,
      host: '127.0.0.1',
      autoPong: false,
      handleProtocols: (protocols) => (protocols.has('pushpull') ? 'pushpull' : false),
    })
    await new Promise<void>((resolve) => wss.on('listening', resolve))
    let pings = 0
    wss.on('connection', (ws) => ws.on('ping', () => pings++))
    cleanups.push(() => {
      for (const ws of wss.clients) ws.terminate()
      return new Promise<void>((resolve) => wss.close(() => resolve()))
    })
    const timers = manualTimers()
    const client = track(
      await connectWebSocket(`ws://127.0.0.1:${(wss.address() as AddressInfo).port}/`, {pingIntervalMs: 1000, timers}),
    )
    timers.tick()
    timers.tick()
    await until(() => pings === 2, 'two pings at the server')
    expect(client.isOpen).toBe(true)
    timers.tick()
    expect(await client.closed).toEqual({code: 1006, reason: 'zombie', wasClean: false, initiatedLocally: true})
    expect(timers.active).toBe(0)
  })
})

describe('PushpullSocket close', () => {
  it('propagates a close code and reason to the peer', async () => {
    const s = await server()
    const client = track(await connectWebSocket(s.wsUrl, {pingIntervalMs: 0}))
    const conn = await s.nextConnection()
    const closes: CloseInfo[] = []
    conn.on('close', (info) => closes.push(info))
    const atClient = await client.close(CloseCode.GOING_AWAY, 'client interrupted')
    expect(atClient).toEqual({code: 1001, reason: 'client interrupted', wasClean: true, initiatedLocally: true})
    expect(await conn.closed).toEqual({code: 1001, reason: 'client interrupted', wasClean: true, initiatedLocally: false})
    expect(closes).toHaveLength(1)
    expect(closeErrorOf(atClient)).toBeUndefined()
  })

  it('delivers messages sent just before a peer-initiated close', async () => {
    const s = await server()
    const client = track(await connectWebSocket(s.wsUrl, {pingIntervalMs: 0}))
    const conn = await s.nextConnection()
    const received: string[] = []
    conn.on('message', (text) => received.push(text))
    void client.send('last words')
    await client.close()
    await conn.closed
    expect(received).toEqual(['last words'])
  })

  it('strips terminal control characters from a peer close reason', async () => {
    const wss = new WebSocketServer({port: 0, host: '127.0.0.1', handleProtocols: () => 'pushpull'})
    await new Promise<void>((resolve) => wss.on('listening', resolve))
    wss.on('connection', (ws) => ws.close(4000, '\u001B[2Jgone\u202E'))
    cleanups.push(() => new Promise<void>((resolve) => wss.close(() => resolve())))
    const client = track(
      await connectWebSocket(`ws://127.0.0.1:${(wss.address() as AddressInfo).port}/`, {pingIntervalMs: 0}),
    )
    const info = await client.closed
    expect(info).toEqual({code: 4000, reason: '[2Jgone', wasClean: true, initiatedLocally: false})
    expect(closeErrorOf(info)?.message).toBe('the peer closed the WebSocket session (4000): [2Jgone')
  })

  it('terminate() reports 1006 on both sides', async () => {
    const s = await server()
    const client = track(await connectWebSocket(s.wsUrl, {pingIntervalMs: 0}))
    const conn = await s.nextConnection()
    expect(await client.terminate()).toEqual({code: 1006, reason: 'terminated', wasClean: false, initiatedLocally: true})
    expect(await conn.closed).toEqual({code: 1006, reason: '', wasClean: false, initiatedLocally: false})
    expect(closeErrorOf(conn.closeInfo as CloseInfo)?.message).toBe(
      'WebSocket session ended abnormally (1006): the connection was lost',
    )
  })

  it('refuses close codes that cannot be sent, and truncates long reasons to 123 bytes', async () => {
    const s = await server()
    const client = track(await connectWebSocket(s.wsUrl, {pingIntervalMs: 0}))
    const conn = await s.nextConnection()
    expect(() => client.fail(1006, 'x')).toThrow(
      expect.objectContaining({code: 'ERR_USAGE', message: '1006 is not a close code that can be sent'}),
    )
    const long = 'é'.repeat(100)
    await client.fail(CloseCode.POLICY, long)
    const info = await conn.closed
    expect(info.code).toBe(1008)
    expect(info.reason).toBe('é'.repeat(61))
  })
})

describe('close helpers', () => {
  it('isSendableCloseCode', () => {
    expect([1000, 1001, 1007, 1008, 1009, 1011, 3000, 4999].every((code) => isSendableCloseCode(code))).toBe(true)
    expect([0, 999, 1004, 1005, 1006, 1015, 2999, 5000, 1000.5].some((code) => isSendableCloseCode(code))).toBe(false)
  })

  it('truncateCloseReason never splits a character', () => {
    expect(truncateCloseReason('short')).toBe('short')
    const cut = truncateCloseReason('✓'.repeat(50))
    expect(Buffer.byteLength(cut)).toBe(123)
    expect(cut).toBe('✓'.repeat(41))
  })

  it('closeErrorOf maps close codes to error codes', () => {
    const of = (code: number, initiatedLocally: boolean): string | undefined =>
      closeErrorOf({code, reason: '', wasClean: true, initiatedLocally})?.code
    expect(of(1000, true)).toBeUndefined()
    expect(of(1001, true)).toBeUndefined()
    expect(of(1000, false)).toBe('ERR_WS_CLOSED')
    expect(of(1008, false)).toBe('ERR_CREDENTIALS')
    expect(of(1008, true)).toBe('ERR_MESSAGE_INVALID')
    expect(of(1007, false)).toBe('ERR_PEER_PROTOCOL')
    expect(of(1007, true)).toBe('ERR_MESSAGE_INVALID')
    expect(of(1009, false)).toBe('ERR_LIMIT_EXCEEDED')
    expect(of(1011, false)).toBe('ERR_WS_CLOSED')
    expect(of(1006, false)).toBe('ERR_WS_CLOSED')
  })
})
