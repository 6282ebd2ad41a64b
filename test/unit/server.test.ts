import {request as httpRequest} from 'node:http'
import {connect} from 'node:net'

import {afterEach, beforeAll, describe, expect, it} from 'vitest'

import {createHttpClient} from '../../src/lib/transport/http.js'
import {Forwarder, type ForwardResult} from '../../src/lib/forwarder.js'
import {JwksUrlKeySource, StaticKeySource, verificationKeysFromJson} from '../../src/lib/keys.js'
import {Ledger} from '../../src/lib/ledger.js'
import {SetReceiver} from '../../src/lib/receiver.js'
import {createListener, type Listener, type ListenerEvent, type ListenerOptions, peerIdOfToken} from '../../src/lib/server.js'
import {MemoryLedgerStorage} from '../../src/lib/store.js'
import {createVerifier, type SetVerifier} from '../../src/lib/verify.js'
import {generatePeerKey, makeSetClaims, type PeerSigningKey, publicJwks, rejectAll, signSet, startPushReceiver, unsignedSet} from '../helpers/peers/index.js'
import {unusedPort} from '../helpers/ports.js'

let key: PeerSigningKey
let otherKey: PeerSigningKey

beforeAll(() => {
  key = generatePeerKey('ES256', 'k1')
  otherKey = generatePeerKey('ES256', 'k1')
})

const cleanups: Array<() => Promise<void> | void> = []
afterEach(async () => {
  while (cleanups.length > 0) await cleanups.pop()?.()
})

function verifier(): SetVerifier {
  return createVerifier({keys: [new StaticKeySource(verificationKeysFromJson(publicJwks([key]), 'test JWKS'))]})
}

interface Harness {
  listener: Listener
  ledger: Ledger
  events: ListenerEvent[]
  port: number
  url: string
}

async function start(options: Partial<ListenerOptions> & {verifier?: SetVerifier; decide?: 'auto' | 'manual'} = {}): Promise<Harness> {
  const ledger = new Ledger({random: () => 0.5, storage: new MemoryLedgerStorage()})
  const receiver = new SetReceiver({decide: options.decide, ledger, verifier: options.verifier ?? verifier()})
  const events: ListenerEvent[] = []
  const listener = createListener({ledger, longPollTimeoutMs: 2000, port: 0, receiver, ...options, onEvent: (event) => events.push(event)})
  const {address, url} = await listener.listen()
  cleanups.push(async () => {
    await listener.close(500)
    ledger.close()
  })
  return {events, ledger, listener, port: address.port, url}
}

interface Reply {
  status: number
  headers: Record<string, string | string[] | undefined>
  text: string
  json: () => Record<string, unknown>
}

async function send(port: number, path: string, options: {method?: string; body?: string | Buffer; headers?: Record<string, string>} = {}): Promise<Reply> {
  return new Promise<Reply>((resolve, reject) => {
    const req = httpRequest({headers: {host: `127.0.0.1:${port}`, ...options.headers}, host: '127.0.0.1', method: options.method ?? 'POST', path, port}, (res) => {
      let text = ''
      res.setEncoding('utf8')
      res.on('data', (chunk: string) => (text += chunk))
      res.on('end', () => resolve({headers: res.headers, json: () => JSON.parse(text) as Record<string, unknown>, status: res.statusCode ?? 0, text}))
    })
    req.on('error', reject)
    req.end(options.body)
  })
}

const push = async (port: number, token: string, headers: Record<string, string> = {}) =>
  send(port, '/events', {body: token, headers: {'content-type': 'application/secevent+jwt', ...headers}})
const pushpull = async (port: number, body: unknown, headers: Record<string, string> = {}) =>
  send(port, '/pushpull', {body: typeof body === 'string' ? body : JSON.stringify(body), headers: {'content-type': 'application/json', ...headers}})
const poll = async (port: number, body: unknown, headers: Record<string, string> = {}) =>
  send(port, '/poll', {body: JSON.stringify(body), headers: {'content-type': 'application/json', ...headers}})

function minted(overrides: Record<string, unknown> = {}, signingKey = key): {jti: string; token: string} {
  const claims = makeSetClaims(overrides)
  return {jti: String(claims.jti), token: signSet(claims, signingKey)}
}

function ofType<T extends ListenerEvent['type']>(events: ListenerEvent[], type: T): Array<Extract<ListenerEvent, {type: T}>> {
  return events.filter((event): event is Extract<ListenerEvent, {type: T}> => event.type === type)
}

describe('POST /events (RFC 8935 push)', () => {
  it('answers 202 with an empty body, stores before answering, and acks a redelivery without reporting it as new', async () => {
    const seenAtStore: number[] = []
    const h = await start({afterStore: () => seenAtStore.push(ofType(h.events, 'set').length)})
    const set = minted()
    const first = await push(h.port, set.token)
    expect(first.status).toBe(202)
    expect(first.text).toBe('')
    const second = await push(h.port, set.token)
    expect(second.status).toBe(202)
    const sets = ofType(h.events, 'set')
    expect(sets.map((e) => [e.jti, e.status, e.binding, e.peer, e.set.verified])).toEqual([
      [set.jti, 'new', 'push', 'anonymous', true],
      [set.jti, 'duplicate', 'push', 'anonymous', true],
    ])
    // The hook ran after the SET was stored and reported, before the answer.
    expect(seenAtStore).toEqual([1, 2])
    // The 202 was the ack: nothing stays owed.
    expect(h.ledger.owed('anonymous', 10)).toEqual({ack: [], setErrs: new Map()})
    expect(h.listener.counts).toMatchObject({duplicates: 1, received: 1})
  })

  it.each([
    ['a corrupted signature', () => minted({}, otherKey).token, 'invalid_key', /signature does not verify/],
    ['alg none', () => unsignedSet(makeSetClaims()), 'invalid_key', /unsigned/],
    ['typ JWT', () => signSet(makeSetClaims(), key, {typ: 'JWT'}), 'invalid_request', /typ/],
    ['missing jti', () => signSet(makeSetClaims({jti: undefined}), key), 'invalid_request', /jti/],
    ['not a JWS', () => 'not-a-token', 'invalid_request', /compact JWS/],
    ['a 5-part JWE', () => 'a.b.c.d.e', 'invalid_request', /encrypted/],
  ])('refuses %s with 400 {err, description} and Content-Language en', async (_name, token, err, description) => {
    const h = await start()
    const reply = await push(h.port, token())
    expect(reply.status).toBe(400)
    expect(reply.headers['content-language']).toBe('en')
    expect(reply.json().err).toBe(err)
    expect(String(reply.json().description)).toMatch(description)
    expect(ofType(h.events, 'rejected')).toHaveLength(1)
    expect(ofType(h.events, 'set')).toHaveLength(0)
  })

  it('refuses a token over the per-SET limit without crypto (400 invalid_request)', async () => {
    const h = await start({limits: {maxSetBytes: 200}})
    const reply = await push(h.port, minted().token)
    expect(reply.status).toBe(400)
    expect(reply.json()).toMatchObject({err: 'invalid_request'})
    expect(String(reply.json().description)).toMatch(/over the 200-byte limit/)
  })

  it('answers 503 with Retry-After when the JWKS is down, and stores nothing', async () => {
    const port = await unusedPort()
    const jwksVerifier = createVerifier({keys: [new JwksUrlKeySource(`http://127.0.0.1:${port}/jwks.json`, {timeoutMs: 500})]})
    const h = await start({retryAfterSec: 7, verifier: jwksVerifier})
    const set = minted()
    const reply = await push(h.port, set.token)
    expect(reply.status).toBe(503)
    expect(reply.headers['retry-after']).toBe('7')
    expect(reply.json().description).toMatch(/cannot be judged now/)
    expect(ofType(h.events, 'deferred').map((e) => e.jti)).toEqual([set.jti])
    expect(h.ledger.list({direction: 'in', limit: 10})).toEqual([])
  })

  it.each([
    ['application/json', 415],
    ['text/plain', 415],
  ])('answers Content-Type %s with %i and a JSON error, without parsing the body', async (type, status) => {
    const h = await start()
    const reply = await send(h.port, '/events', {body: minted().token, headers: {'content-type': type}})
    expect(reply.status).toBe(status)
    expect(reply.json()).toMatchObject({err: 'invalid_request'})
    expect(String(reply.json().description)).toMatch(/application\/secevent\+jwt/)
    expect(ofType(h.events, 'set')).toHaveLength(0)
  })

  it('answers a wrong method with 405 and Allow', async () => {
    const h = await start()
    for (const path of ['/events', '/poll', '/pushpull']) {
      const reply = await send(h.port, path, {method: 'PUT', body: ''})
      expect(reply.status).toBe(405)
      expect(reply.headers.allow).toBe('POST')
      expect(reply.json().description).toMatch(/method PUT is not allowed/)
    }
  })

  it('answers an unknown path with 404', async () => {
    const h = await start()
    const reply = await send(h.port, '/nope', {body: ''})
    expect(reply.status).toBe(404)
    expect(reply.json().description).toMatch(/nothing is served at \/nope/)
  })

  it('answers a declared Content-Length over the limit with 413 without reading the body', async () => {
    const h = await start({limits: {maxBytes: 1000}})
    const reply = await new Promise<string>((resolve) => {
      const socket = connect(h.port, '127.0.0.1', () => {
        socket.write(`POST /events HTTP/1.1\r\nHost: 127.0.0.1:${h.port}\r\nContent-Type: application/secevent+jwt\r\nContent-Length: 5000000\r\n\r\n`)
      })
      let text = ''
      socket.setEncoding('utf8').on('data', (chunk: string) => (text += chunk))
      socket.on('close', () => resolve(text))
      socket.on('end', () => resolve(text))
    })
    expect(reply).toMatch(/^HTTP\/1\.1 413/)
    expect(reply).toMatch(/larger than the limit of 1000 bytes/)
  })

  it('answers a chunked body growing past the limit with 413', async () => {
    const h = await start({limits: {maxBytes: 1000}})
    const reply = await send(h.port, '/pushpull', {body: Buffer.alloc(5000, 0x20), headers: {'content-type': 'application/json', 'transfer-encoding': 'chunked'}})
    expect(reply.status).toBe(413)
  })

  it('answers a body that stalls with 408 after the request timeout, processing nothing', async () => {
    const h = await start({headersTimeoutMs: 200, requestTimeoutMs: 400})
    const reply = await new Promise<string>((resolve) => {
      const socket = connect(h.port, '127.0.0.1', () => {
        socket.write(`POST /events HTTP/1.1\r\nHost: 127.0.0.1:${h.port}\r\nContent-Type: application/secevent+jwt\r\nContent-Length: 100\r\n\r\nabc`)
      })
      let text = ''
      socket.setEncoding('utf8').on('data', (chunk: string) => (text += chunk))
      socket.on('close', () => resolve(text))
    })
    expect(reply).toMatch(/^HTTP\/1\.1 408/)
    expect(ofType(h.events, 'set')).toHaveLength(0)
    expect(ofType(h.events, 'rejected')).toHaveLength(0)
  })

  it('refuses a token in the query string, a foreign Host (421) and a web page Origin (403)', async () => {
    const h = await start({tokens: [{name: 'tx', token: 'peer-token-1'}]})
    const query = await push(h.port, minted().token, {})
    expect(query.status).toBe(401)
    const inQuery = await send(h.port, '/events?access_token=peer-token-1', {body: minted().token, headers: {'content-type': 'application/secevent+jwt'}})
    expect(inQuery.status).toBe(400)
    expect(inQuery.json().description).toMatch(/tokens are not accepted in the query string/)
    expect(inQuery.text).not.toContain('peer-token-1')
    const host = await push(h.port, minted().token, {authorization: 'Bearer peer-token-1', host: 'evil.example'})
    expect(host.status).toBe(421)
    const origin = await push(h.port, minted().token, {authorization: 'Bearer peer-token-1', origin: 'https://evil.example'})
    expect(origin.status).toBe(403)
    expect(ofType(h.events, 'set')).toHaveLength(0)
  })

  it('requires a configured bearer token: 401 with WWW-Authenticate, the token never echoed', async () => {
    const h = await start({tokens: [{token: 'peer-token-1'}]})
    const missing = await push(h.port, minted().token)
    expect(missing.status).toBe(401)
    expect(missing.headers['www-authenticate']).toMatch(/^Bearer/)
    expect(missing.json()).toMatchObject({err: 'authentication_failed'})
    const wrong = await push(h.port, minted().token, {authorization: 'Bearer not-the-token'})
    expect(wrong.status).toBe(401)
    expect(wrong.headers['www-authenticate']).toMatch(/invalid_token/)
    expect(wrong.text).not.toContain('not-the-token')
    const errors = ofType(h.events, 'http-error')
    expect(JSON.stringify(errors)).not.toContain('not-the-token')
    const ok = await push(h.port, minted().token, {authorization: 'Bearer peer-token-1'})
    expect(ok.status).toBe(202)
    expect(ofType(h.events, 'set')[0]?.peer).toBe(peerIdOfToken({token: 'peer-token-1'}))
    expect(peerIdOfToken({token: 'peer-token-1'})).toMatch(/^token:[\da-f]{12}$/)
  })
})

describe('POST /pushpull (pushpull HTTP binding)', () => {
  it('acks valid SETs and answers setErrs per SET in the 200 Communication Object; the answer is delivered once', async () => {
    const h = await start()
    const good = minted()
    const bad = minted({}, otherKey)
    const mismatch = minted()
    const reply = await pushpull(h.port, {sets: {[good.jti]: good.token, [bad.jti]: bad.token, 'wrong-key': mismatch.token, 'not-a-string': 42}, extra: true})
    expect(reply.status).toBe(200)
    const body = reply.json() as {ack: string[]; setErrs: Record<string, {err: string; description: string}>; sets?: unknown}
    expect(body.ack).toEqual([good.jti])
    expect(body.setErrs[bad.jti]?.err).toBe('invalid_key')
    expect(body.setErrs['wrong-key']).toMatchObject({err: 'invalid_request'})
    expect(body.setErrs['wrong-key']?.description).toMatch(/differs from the SET's jti/)
    expect(body.setErrs['not-a-string']).toMatchObject({err: 'invalid_request'})
    expect(body.sets).toBeUndefined()
    // Delivered: the next exchange owes nothing.
    const next = await pushpull(h.port, {})
    expect(next.json()).toEqual({})
    // A redelivery is acked again, not reported as new.
    const again = await pushpull(h.port, {sets: {[good.jti]: good.token}})
    expect(again.json()).toEqual({ack: [good.jti]})
    expect(ofType(h.events, 'set').map((e) => e.status)).toEqual(['new', 'duplicate'])
  })

  it.each([
    ['truncated JSON', '{"sets": {', /not valid JSON|JSON/],
    ['an array', '[]', /expected a JSON object, got an array/],
    ['42', '42', /expected a JSON object/],
    ['null', 'null', /expected a JSON object, got null/],
    ['sets not an object', '{"sets": []}', /"sets" must be an object/],
    ['ack not an array', '{"ack": "x"}', /"ack" must be an array/],
    ['setErrs not an object', '{"setErrs": 1}', /"setErrs" must be an object/],
    ['maxResponseEvents negative', '{"maxResponseEvents": -1}', /maxResponseEvents/],
    ['maxResponseEvents fractional', '{"maxResponseEvents": 1.5}', /maxResponseEvents/],
    ['maxResponseEvents a string', '{"maxResponseEvents": "2"}', /maxResponseEvents/],
    ['deep nesting', `${'['.repeat(5000)}${']'.repeat(5000)}`, /deep|nest/i],
  ])('answers %s with 400 invalid_request and changes nothing', async (_name, body, description) => {
    const h = await start()
    h.listener.emit([minted()])
    const reply = await pushpull(h.port, body)
    expect(reply.status).toBe(400)
    expect(reply.json().err).toBe('invalid_request')
    expect(String(reply.json().description)).toMatch(description)
    expect(h.ledger.stats()[0]?.outbox.pending).toBe(1)
  })

  it('answers more SETs than the limit with 413, processing none of them', async () => {
    const h = await start({limits: {maxSets: 2}})
    const sets = Object.fromEntries([minted(), minted(), minted()].map((s) => [s.jti, s.token]))
    const reply = await pushpull(h.port, {sets})
    expect(reply.status).toBe(413)
    expect(reply.json().description).toMatch(/3 SETs, over the limit of 2/)
    expect(ofType(h.events, 'set')).toHaveLength(0)
  })

  it('accepts application/json; charset=utf-8 and ignores unknown members', async () => {
    const h = await start()
    const good = minted()
    const reply = await pushpull(h.port, {future: {x: 1}, sets: {[good.jti]: good.token}}, {'content-type': 'application/json; charset=utf-8'})
    expect(reply.status).toBe(200)
    expect(reply.json()).toEqual({ack: [good.jti]})
  })

  it('serves queued SETs (maxResponseEvents), applies acks from later exchanges (and `acks`), ignores unknown jtis', async () => {
    const h = await start()
    const queued = [minted(), minted(), minted()]
    h.listener.emit(queued)
    const none = await pushpull(h.port, {maxResponseEvents: 0})
    expect(none.json()).toEqual({})
    const first = await pushpull(h.port, {maxResponseEvents: 2})
    const firstSets = (first.json() as {sets: Record<string, string>}).sets
    expect(Object.keys(firstSets)).toEqual([queued[0]!.jti, queued[1]!.jti])
    expect(firstSets[queued[0]!.jti]).toBe(queued[0]!.token)
    const second = await pushpull(h.port, {acks: [queued[0]!.jti, 'never-sent'], setErrs: {[queued[1]!.jti]: {err: 'invalid_key', description: 'bad \u001B[31mkey'}}})
    expect(Object.keys((second.json() as {sets: Record<string, string>}).sets)).toEqual([queued[2]!.jti])
    expect(ofType(h.events, 'ack').map((e) => e.jti)).toEqual([queued[0]!.jti])
    expect(ofType(h.events, 'setErr')).toEqual([{description: 'bad [31mkey', err: 'invalid_key', jti: queued[1]!.jti, peer: 'anonymous', type: 'setErr'}])
    // An ack for a SET sent in an earlier exchange is accepted.
    await pushpull(h.port, {ack: [queued[2]!.jti]})
    expect(h.ledger.stats()[0]?.outbox).toMatchObject({acked: 2, in_flight: 0, pending: 0, rejected: 1})
  })

  it('treats a jti in both ack and setErrs of one object as rejected', async () => {
    const h = await start()
    const queued = minted()
    h.listener.emit([queued])
    await pushpull(h.port, {})
    await pushpull(h.port, {ack: [queued.jti], setErrs: {[queued.jti]: {}}})
    expect(ofType(h.events, 'ack')).toHaveLength(0)
    expect(ofType(h.events, 'setErr').map((e) => [e.jti, e.err])).toEqual([[queued.jti, 'unspecified']])
  })

  it('keeps owed acks and queued SETs per peer (bearer token identity)', async () => {
    const h = await start({tokens: [{name: 'a', token: 'token-aaaa'}, {name: 'b', token: 'token-bbbb'}]})
    expect(h.listener.peers).toEqual(['token:a', 'token:b'])
    const item = minted()
    h.listener.emit([item], ['token:a'])
    const asB = await pushpull(h.port, {}, {authorization: 'Bearer token-bbbb'})
    expect(asB.json()).toEqual({})
    const asA = await pushpull(h.port, {}, {authorization: 'Bearer token-aaaa'})
    expect(Object.keys((asA.json() as {sets: object}).sets)).toEqual([item.jti])
  })

  it('in manual mode stores new SETs undecided and acks them on a later exchange once decided', async () => {
    const h = await start({decide: 'manual'})
    const item = minted()
    const first = await pushpull(h.port, {sets: {[item.jti]: item.token}})
    expect(first.json()).toEqual({})
    expect(ofType(h.events, 'set')[0]?.verdict).toBe('undecided')
    h.ledger.decide('anonymous', [{jti: item.jti, verdict: 'accepted'}])
    const later = await pushpull(h.port, {})
    expect(later.json()).toEqual({ack: [item.jti]})
  })
})

describe('multi-SET push (application/secevents+json)', () => {
  it('answers 202 {ack, setErrs}; {} asks for late acks; over the batch limit is 413', async () => {
    const h = await start({decide: 'manual', limits: {maxSets: 2}})
    const good = minted()
    const bad = minted({}, otherKey)
    const reply = await send(h.port, '/pushpull', {body: JSON.stringify({sets: {[good.jti]: good.token, [bad.jti]: bad.token}}), headers: {'content-type': 'application/secevents+json'}})
    expect(reply.status).toBe(202)
    expect(reply.json()).toEqual({ack: [], setErrs: {[bad.jti]: {description: expect.stringMatching(/signature/) as string, err: 'invalid_key'}}})
    h.ledger.decide('anonymous', [{jti: good.jti, verdict: 'accepted'}])
    const late = await send(h.port, '/pushpull', {body: '{}', headers: {'content-type': 'application/secevents+json'}})
    expect(late.status).toBe(202)
    expect(late.json()).toEqual({ack: [good.jti]})
    const sets = Object.fromEntries([minted(), minted(), minted()].map((s) => [s.jti, s.token]))
    const over = await send(h.port, '/pushpull', {body: JSON.stringify({sets}), headers: {'content-type': 'application/secevents+json'}})
    expect(over.status).toBe(413)
    expect(ofType(h.events, 'set')).toHaveLength(1)
  })
})

describe('POST /poll (RFC 8936 transmitter)', () => {
  it('serves queued SETs, redelivers until acked, sets moreAvailable, and applies acks in later polls', async () => {
    const h = await start()
    const queued = [minted(), minted(), minted()]
    h.listener.emit(queued)
    const first = await poll(h.port, {maxEvents: 2, returnImmediately: true})
    expect(first.status).toBe(200)
    expect(first.json()).toEqual({moreAvailable: true, sets: {[queued[0]!.jti]: queued[0]!.token, [queued[1]!.jti]: queued[1]!.token}})
    const second = await poll(h.port, {ack: [queued[0]!.jti, queued[1]!.jti], returnImmediately: true})
    expect(second.json()).toEqual({sets: {[queued[2]!.jti]: queued[2]!.token}})
    expect(ofType(h.events, 'ack').map((e) => e.jti)).toEqual([queued[0]!.jti, queued[1]!.jti])
    const ackOnly = await poll(h.port, {ack: [queued[2]!.jti], maxEvents: 0, returnImmediately: true})
    expect(ackOnly.json()).toEqual({sets: {}})
    expect(h.ledger.stats()[0]?.outbox.acked).toBe(3)
  })

  it('holds a long poll and wakes it when a SET is queued', async () => {
    const h = await start({longPollTimeoutMs: 10_000})
    const waiting = poll(h.port, {})
    const item = minted()
    // The poll is waiting (nothing queued yet); queue once the server holds it.
    await new Promise<void>((resolve) => {
      const check = (): void => {
        if (h.listener.server.listenerCount('request') > 0 && (h.listener as unknown as {queuedListeners: Map<string, Set<unknown>>}).queuedListeners.size > 0) resolve()
        else setTimeout(check, 5)
      }

      check()
    })
    h.listener.emit([item])
    const reply = await waiting
    expect(reply.json()).toEqual({sets: {[item.jti]: item.token}})
  })

  it('answers an empty long poll with {"sets":{}} after the timeout, and at once on shutdown', async () => {
    const h = await start({longPollTimeoutMs: 100})
    const reply = await poll(h.port, {})
    expect(reply.json()).toEqual({sets: {}})
    const slow = await start({longPollTimeoutMs: 60_000})
    const pending = poll(slow.port, {})
    await new Promise<void>((resolve) => {
      const check = (): void => {
        if ((slow.listener as unknown as {queuedListeners: Map<string, Set<unknown>>}).queuedListeners.size > 0) resolve()
        else setTimeout(check, 5)
      }

      check()
    })
    await slow.listener.close(2000)
    expect((await pending).json()).toEqual({sets: {}})
  })

  it('answers a bad poll request with 400', async () => {
    const h = await start()
    const reply = await poll(h.port, {returnImmediately: 'yes'})
    expect(reply.status).toBe(400)
    expect(reply.json()).toMatchObject({err: 'invalid_request'})
    expect(String(reply.json().description)).toMatch(/returnImmediately/)
  })
})

describe('--forward-to relay', () => {
  it('relays each new accepted SET as an RFC 8935 push and reports the downstream status and body', async () => {
    const downstream = await startPushReceiver()
    cleanups.push(() => downstream.close())
    const results: ForwardResult[] = []
    const client = createHttpClient()
    cleanups.push(() => client.close())
    const forwarder = new Forwarder({client, onResult: (r) => results.push(r), url: downstream.url})
    const h = await start({forwarder})
    const item = minted()
    expect((await push(h.port, item.token)).status).toBe(202)
    expect((await push(h.port, item.token)).status).toBe(202)
    await forwarder.drain({timeoutMs: 5000})
    expect(downstream.accepted()).toEqual([item.token])
    expect(results).toEqual([{body: '', jti: item.jti, ok: true, status: 202, url: downstream.url}])

    downstream.setJudge(rejectAll('invalid_issuer', `no \u001B[2J${'x'.repeat(500)}`))
    const other = minted()
    await pushpull(h.port, {sets: {[other.jti]: other.token}})
    await forwarder.drain({timeoutMs: 5000})
    const rejected = results[1]!
    expect(rejected).toMatchObject({jti: other.jti, ok: false, status: 400})
    expect(rejected.body).toMatch(/^\{"description":"no /)
    expect(rejected.body).not.toContain('\u001B')
    expect(rejected.body!.length).toBeLessThanOrEqual(201)
  })

  it('reports a downstream that cannot be reached', async () => {
    const port = await unusedPort()
    const results: ForwardResult[] = []
    const client = createHttpClient({connectTimeoutMs: 1000})
    cleanups.push(() => client.close())
    const forwarder = new Forwarder({client, onResult: (r) => results.push(r), url: `http://127.0.0.1:${port}/events`})
    forwarder.forward('j1', minted().token)
    await forwarder.drain({timeoutMs: 5000})
    expect(results).toHaveLength(1)
    expect(results[0]).toMatchObject({error: {code: 'ERR_CONNECT'}, jti: 'j1', ok: false})
  })
})

describe('configuration', () => {
  it('refuses duplicate peer names, bad token names and relative paths', async () => {
    const ledger = new Ledger({storage: new MemoryLedgerStorage()})
    const receiver = new SetReceiver({ledger, verifier: verifier()})
    expect(() => createListener({ledger, receiver, tokens: [{name: 'a', token: 'x1'}, {name: 'a', token: 'x2'}]})).toThrow(/same peer token:a/)
    expect(() => createListener({ledger, receiver, tokens: [{name: 'a b', token: 'x1'}]})).toThrow(/may only hold letters/)
    expect(() => createListener({ledger, receiver, tokens: [{token: 'has space'}]})).toThrow(/spaces, control or non-ASCII/)
    expect(() => createListener({ledger, receiver, paths: {events: 'events'}})).toThrow(/must start with "\/"/)
    expect(() => createListener({ledger, receiver, maxResponseEvents: 0})).toThrow(expect.objectContaining({code: 'ERR_CONFIG'}))
  })
})
