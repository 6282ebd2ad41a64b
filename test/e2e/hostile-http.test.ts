/**
 * Hostile peers against the HTTP listener: while one peer (connecting from 127.0.0.2) opens many
 * sockets, floods requests, sends garbage, holds half-sent requests or never reads its answers, a
 * good peer (from 127.0.0.1) still gets its SETs received and acknowledged. Plus `listen` itself
 * (spawned) refusing a foreign Host (421) and a browser Origin (403).
 */
import {type ChildProcessWithoutNullStreams, spawn} from 'node:child_process'
import {request as httpRequest} from 'node:http'
import {connect, type Socket} from 'node:net'

import {afterEach, beforeAll, describe, expect, it} from 'vitest'

import {StaticKeySource, verificationKeysFromJson} from '../../src/lib/keys.js'
import {Ledger} from '../../src/lib/ledger.js'
import {RateLimiter} from '../../src/lib/rate-limit.js'
import {SetReceiver} from '../../src/lib/receiver.js'
import {createListener, type ListenerEvent, type ListenerOptions} from '../../src/lib/server.js'
import {MemoryLedgerStorage} from '../../src/lib/store.js'
import {createVerifier} from '../../src/lib/verify.js'
import {BIN, ROOT} from '../helpers/cli.js'
import {generatePeerKey, makeSetClaims, type PeerSigningKey, publicJwks, signSet} from '../helpers/peers/index.js'

const BAD = '127.0.0.2'
const GOOD = '127.0.0.1'

let key: PeerSigningKey
beforeAll(() => {
  key = generatePeerKey('ES256', 'k1')
})

const cleanups: Array<() => Promise<void> | void> = []
afterEach(async () => {
  while (cleanups.length > 0) await cleanups.pop()?.()
})

async function start(options: Partial<ListenerOptions> = {}) {
  const ledger = new Ledger({random: () => 0.5, storage: new MemoryLedgerStorage()})
  const verifier = createVerifier({keys: [new StaticKeySource(verificationKeysFromJson(publicJwks([key]), 'test JWKS'))]})
  const receiver = new SetReceiver({ledger, verifier})
  const events: ListenerEvent[] = []
  const listener = createListener({ledger, port: 0, receiver, ...options, onEvent: (event) => events.push(event)})
  const {address} = await listener.listen()
  const sockets: Socket[] = []
  cleanups.push(async () => {
    for (const socket of sockets) socket.destroy()
    await listener.close(200)
    ledger.close()
  })
  return {events, ledger, listener, port: address.port, sockets}
}

interface Reply {
  status: number
  headers: Record<string, string | string[] | undefined>
  text: string
}

async function send(port: number, path: string, options: {body?: string; headers?: Record<string, string>; from?: string; method?: string} = {}): Promise<Reply> {
  return new Promise<Reply>((resolve, reject) => {
    const req = httpRequest(
      {agent: false, headers: {host: `127.0.0.1:${port}`, ...options.headers}, host: '127.0.0.1', localAddress: options.from ?? GOOD, method: options.method ?? 'POST', path, port},
      (res) => {
        let text = ''
        res.setEncoding('utf8')
        res.on('data', (chunk: string) => (text += chunk))
        res.on('end', () => resolve({headers: res.headers, status: res.statusCode ?? 0, text}))
      },
    )
    req.on('error', reject)
    req.end(options.body)
  })
}

function minted(): {jti: string; token: string} {
  const claims = makeSetClaims()
  return {jti: String(claims.jti), token: signSet(claims, key)}
}

/** The good peer pushes one SET and must get 202; the listener must report it new. */
async function goodPeerIsServed(port: number, events: ListenerEvent[]): Promise<void> {
  const set = minted()
  const reply = await send(port, '/events', {body: set.token, headers: {'content-type': 'application/secevent+jwt'}})
  expect(reply.status).toBe(202)
  expect(events.some((event) => event.type === 'set' && event.jti === set.jti && event.status === 'new')).toBe(true)
  // And over pushpull HTTP: the SET is acked in the answer.
  const other = minted()
  const answer = await send(port, '/pushpull', {body: JSON.stringify({sets: {[other.jti]: other.token}}), headers: {'content-type': 'application/json'}})
  expect(answer.status).toBe(200)
  expect((JSON.parse(answer.text) as {ack?: string[]}).ack).toContain(other.jti)
}

async function openSocket(port: number, from: string): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const socket = connect({host: '127.0.0.1', localAddress: from, port}, () => resolve(socket))
    socket.on('error', reject)
  })
}

/** Everything a socket receives until it closes (or `ms` passes). */
async function drain(socket: Socket, ms = 3000): Promise<string> {
  return new Promise((resolve) => {
    let text = ''
    const timer = setTimeout(() => resolve(text), ms)
    socket.setEncoding('utf8')
    socket.on('data', (chunk: string) => (text += chunk))
    socket.on('close', () => {
      clearTimeout(timer)
      resolve(text)
    })
    socket.on('error', () => {})
  })
}

describe('hostile peers against the HTTP listener', () => {
  it('many sockets: over the per-address cap a peer is answered 429; another address is still served', async () => {
    const {events, port, sockets} = await start({maxConnectionsPerAddress: 4})
    for (let i = 0; i < 4; i++) sockets.push(await openSocket(port, BAD))
    const fifth = await openSocket(port, BAD)
    sockets.push(fifth)
    const answer = await drain(fifth)
    expect(answer).toMatch(/^HTTP\/1\.1 429 /)
    expect(answer).toMatch(/retry-after: 5/i)
    expect(answer).toContain('too many connections from this address')
    expect(events.some((event) => event.type === 'http-error' && event.status === 429 && event.code === 'ERR_LIMIT_EXCEEDED')).toBe(true)
    await goodPeerIsServed(port, events)
    // The cap is released when the hoarded sockets close.
    for (const socket of sockets) socket.destroy()
    await new Promise((resolve) => setTimeout(resolve, 50))
    const reply = await send(port, '/events', {body: minted().token, from: BAD, headers: {'content-type': 'application/secevent+jwt'}})
    expect(reply.status).toBe(202)
  })

  it('many sockets: the total cap answers 503 to everyone over it', async () => {
    const {port, sockets} = await start({maxConnections: 3})
    for (let i = 0; i < 3; i++) sockets.push(await openSocket(port, BAD))
    const extra = await openSocket(port, GOOD)
    sockets.push(extra)
    expect(await drain(extra)).toMatch(/^HTTP\/1\.1 503 [^]*too many connections; try again later/)
  })

  it('flood: over the request rate a peer gets 429 + Retry-After, another peer is still served', async () => {
    let clock = 1_000_000
    const {events, port} = await start({now: () => clock, requestRate: {burst: 5, perSecond: 1}})
    const statuses: number[] = []
    let limited: Reply | undefined
    for (let i = 0; i < 12; i++) {
      const reply = await send(port, '/pushpull', {body: '{}', from: BAD, headers: {'content-type': 'application/json'}})
      statuses.push(reply.status)
      if (reply.status === 429) limited ??= reply
    }

    expect(statuses.slice(0, 5)).toEqual([200, 200, 200, 200, 200])
    expect(statuses.slice(5).every((status) => status === 429)).toBe(true)
    expect(limited?.headers['retry-after']).toBe('1')
    expect(JSON.parse(limited?.text ?? '{}')).toEqual({description: 'too many requests from this address (over 1 per second); retry after 1 s', err: 'invalid_request'})
    await goodPeerIsServed(port, events)
    // Tokens come back with time: the flooder may send again.
    clock += 2000
    expect((await send(port, '/pushpull', {body: '{}', from: BAD, headers: {'content-type': 'application/json'}})).status).toBe(200)
  })

  it('garbage: bytes that are not HTTP get 400 and a closed connection; JSON garbage gets 400; others are served', async () => {
    const {events, port} = await start()
    const garbage = await Promise.all(
      Array.from({length: 20}, async (_, i) => {
        const socket = await openSocket(port, BAD)
        const answer = drain(socket)
        socket.write(Buffer.from(Array.from({length: 512}, (_x, j) => (i * 31 + j * 17) % 256)))
        return answer
      }),
    )
    for (const answer of garbage) expect(answer).toMatch(/^HTTP\/1\.1 400 /)
    const bad = await send(port, '/pushpull', {body: '{"sets": [1, 2', from: BAD, headers: {'content-type': 'application/json'}})
    expect(bad.status).toBe(400)
    const nested = await send(port, '/pushpull', {body: '['.repeat(5000), from: BAD, headers: {'content-type': 'application/json'}})
    expect(nested.status).toBe(400)
    await goodPeerIsServed(port, events)
  })

  it('slow peers: half-sent headers and bodies are cut at the timeouts while others are served', async () => {
    const {events, port, sockets} = await start({headersTimeoutMs: 300, requestTimeoutMs: 600})
    const slowHeaders = await openSocket(port, BAD)
    slowHeaders.write(`POST /events HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nX-Slow: `)
    const slowBody = await openSocket(port, BAD)
    slowBody.write(`POST /events HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nContent-Type: application/secevent+jwt\r\nContent-Length: 1000\r\n\r\nabc`)
    sockets.push(slowHeaders, slowBody)
    const answers = [drain(slowHeaders, 5000), drain(slowBody, 5000)]
    await goodPeerIsServed(port, events)
    const [headersAnswer, bodyAnswer] = await Promise.all(answers)
    expect(headersAnswer).toMatch(/^HTTP\/1\.1 408 /)
    expect(bodyAnswer).toMatch(/^HTTP\/1\.1 408 /)
  })

  it('a peer that never reads its answers: pipelined requests stall only its own connection', async () => {
    const {events, port, sockets} = await start()
    const hog = await openSocket(port, BAD)
    sockets.push(hog)
    hog.pause()
    const request = `POST /pushpull HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}`
    // Far more answers than a socket buffer holds, never read.
    for (let i = 0; i < 2000; i++) hog.write(request)
    await goodPeerIsServed(port, events)
    expect(hog.destroyed).toBe(false)
  })
})

describe('listen refuses what a web page could send (spawned)', () => {
  let child: ChildProcessWithoutNullStreams | undefined
  afterEach(() => {
    child?.kill('SIGKILL')
    child = undefined
  })

  it('421 for a foreign Host, 403 for a browser Origin, 202 for a plain loopback peer', async () => {
    child = spawn(process.execPath, [BIN, 'listen', '--port', '0', '--memory-state', '--allow-unsigned'], {cwd: ROOT, env: {...process.env, NO_COLOR: '1'}})
    let stderr = ''
    const port = await new Promise<number>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`listen did not start: ${stderr}`)), 15_000)
      child?.stderr.setEncoding('utf8').on('data', (chunk: string) => {
        stderr += chunk
        const match = /listening on http:\/\/127\.0\.0\.1:(\d+)/.exec(stderr)
        if (match !== null) {
          clearTimeout(timer)
          resolve(Number(match[1]))
        }
      })
    })
    const token = minted().token
    const rebinding = await send(port, '/events', {body: token, headers: {'content-type': 'application/secevent+jwt', host: `evil.example:${port}`}})
    expect(rebinding.status).toBe(421)
    expect(JSON.parse(rebinding.text)).toEqual({description: `Host "evil.example:${port}" is not served here`, err: 'invalid_request'})
    const browser = await send(port, '/events', {body: token, headers: {'content-type': 'application/secevent+jwt', origin: 'https://evil.example'}})
    expect(browser.status).toBe(403)
    expect(JSON.parse(browser.text)).toEqual({description: 'requests from web pages (with an Origin header) are refused', err: 'access_denied'})
    const plain = await send(port, '/events', {body: token, headers: {'content-type': 'application/secevent+jwt', host: `localhost:${port}`}})
    expect(plain.status).toBe(202)
  })

  it('listen --max-connections-per-address and --max-request-rate reach the server', async () => {
    child = spawn(process.execPath, [BIN, 'listen', '--port', '0', '--memory-state', '--allow-unsigned', '--max-connections-per-address', '2', '--max-request-rate', '1'], {
      cwd: ROOT,
      env: {...process.env, NO_COLOR: '1'},
    })
    let stderr = ''
    const port = await new Promise<number>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`listen did not start: ${stderr}`)), 15_000)
      child?.stderr.setEncoding('utf8').on('data', (chunk: string) => {
        stderr += chunk
        const match = /listening on http:\/\/127\.0\.0\.1:(\d+)/.exec(stderr)
        if (match !== null) {
          clearTimeout(timer)
          resolve(Number(match[1]))
        }
      })
    })
    const held = [await openSocket(port, BAD), await openSocket(port, BAD)]
    const third = await openSocket(port, BAD)
    expect(await drain(third)).toMatch(/^HTTP\/1\.1 429 /)
    for (const socket of [...held, third]) socket.destroy()
    const statuses: number[] = []
    for (let i = 0; i < 4; i++) statuses.push((await send(port, '/pushpull', {body: '{}', headers: {'content-type': 'application/json'}})).status)
    expect(statuses).toContain(429)
    expect(statuses[0]).toBe(200)
  })
})

describe('RateLimiter', () => {
  it('refills at the rate up to the burst and bounds the keys it tracks', () => {
    let clock = 0
    const limiter = new RateLimiter({burst: 2, maxKeys: 3, now: () => clock, perSecond: 4})
    expect([limiter.take('a'), limiter.take('a'), limiter.take('a')]).toEqual([true, true, false])
    expect(limiter.retryAfterMs('a')).toBe(250)
    clock += 250
    expect(limiter.take('a')).toBe(true)
    expect(limiter.take('a')).toBe(false)
    for (const name of ['b', 'c', 'd', 'e']) limiter.take(name)
    expect(limiter.size).toBe(3)
    expect(() => new RateLimiter({perSecond: 0})).toThrow(/perSecond must be a positive number, got 0/)
  })
})

describe('regression: book-keeping after an answer never throws from a socket event', () => {
  it('a state store closed before the 202 finished writing does not become an uncaught exception', async () => {
    const uncaught: unknown[] = []
    const onUncaught = (error: unknown): void => {
      uncaught.push(error)
    }

    process.on('uncaughtException', onUncaught)
    cleanups.push(() => {
      process.off('uncaughtException', onUncaught)
    })
    let closeLedger = (): void => {}
    const {port, ledger} = await start({afterStore: () => closeLedger()})
    closeLedger = () => ledger.close()
    const reply = await send(port, '/events', {body: minted().token, headers: {'content-type': 'application/secevent+jwt'}})
    expect(reply.status).toBe(202)
    await new Promise((resolve) => setTimeout(resolve, 50))
    expect(uncaught).toEqual([])
  })
})
