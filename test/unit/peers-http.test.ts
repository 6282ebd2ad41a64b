import {afterEach, describe, expect, it} from 'vitest'

import {
  decodeSetUnverified, generatePeerKey, makeSetClaims, mintSets, publicJwks, rejectAll, signSet, startPollTransmitter,
  startPushpullHttpPeer, startPushReceiver, unsignedSet, verifyingJudge, verifySetSignature,
} from '../helpers/peers/index.js'

const closers: (() => Promise<void>)[] = []
afterEach(async () => {
  while (closers.length > 0) await closers.pop()?.()
})

async function track<T extends {close(): Promise<void>}>(peer: Promise<T>): Promise<T> {
  const started = await peer
  closers.push(() => started.close())
  return started
}

const key = generatePeerKey('ES256', 'k1')

function post(url: string, body: string, headers: Record<string, string> = {}, method = 'POST'): Promise<Response> {
  return fetch(url, {body: method === 'GET' ? undefined : body, headers, method})
}

describe('set-token signer and decoder', () => {
  it('signs ES256 and HS256 SETs with typ secevent+jwt that verify only with the right key', () => {
    const hs = generatePeerKey('HS256', 'h1')
    const claims = makeSetClaims({jti: 'abc'})
    for (const k of [key, hs]) {
      const token = signSet(claims, k)
      const decoded = decodeSetUnverified(token)
      expect(decoded.header).toEqual({alg: k.alg, kid: k.kid, typ: 'secevent+jwt'})
      expect(decoded.claims.jti).toBe('abc')
      expect(verifySetSignature(token, [k])).toBe(true)
    }

    const other = generatePeerKey('ES256', 'k1')
    expect(verifySetSignature(signSet(claims, key), [other])).toBe(false)
    const token = signSet(claims, key)
    const tampered = `${token.slice(0, -4)}${token.endsWith('AAAA') ? 'BBBB' : 'AAAA'}`
    expect(verifySetSignature(tampered, [key])).toBe(false)
    expect(publicJwks([key, hs]).keys).toHaveLength(1)
    expect(publicJwks([key]).keys[0]).toMatchObject({alg: 'ES256', crv: 'P-256', kid: 'k1', kty: 'EC'})
    expect(publicJwks([key]).keys[0]).not.toHaveProperty('d')
  })

  it('refuses JWE and non-JWS input and never lets __proto__ reach a prototype', () => {
    expect(() => decodeSetUnverified('a.b.c.d.e')).toThrow('encrypted (JWE) token')
    expect(() => decodeSetUnverified('abc')).toThrow('not a compact JWS')
    const evil = `${Buffer.from('{"alg":"none"}').toString('base64url')}.${Buffer.from('{"__proto__":{"polluted":1},"jti":"x"}').toString('base64url')}.`
    const {claims} = decodeSetUnverified(evil)
    expect(Object.keys(claims)).toEqual(['jti'])
    expect(({} as Record<string, unknown>).polluted).toBeUndefined()
  })

  it('verifyingJudge names the right err for each failure', () => {
    const judge = verifyingJudge({audience: 'https://receiver.example', issuer: 'https://peer.example', keys: [key]})
    const check = (token: string) => judge(token, decodeSetUnverified(token).claims)
    expect(check(signSet(makeSetClaims(), key))).toBeUndefined()
    expect(check(unsignedSet(makeSetClaims()))).toMatchObject({err: 'invalid_key'})
    expect(check(signSet(makeSetClaims(), generatePeerKey('ES256', 'k1')))).toMatchObject({err: 'invalid_key'})
    expect(check(signSet(makeSetClaims(), key, {typ: 'JWT'}))).toMatchObject({description: 'The SET header typ is not secevent+jwt.', err: 'invalid_request'})
    expect(check(signSet(makeSetClaims({iss: 'https://evil.example'}), key))).toMatchObject({err: 'invalid_issuer'})
    expect(check(signSet(makeSetClaims({aud: 'https://other.example'}), key))).toMatchObject({err: 'invalid_audience'})
    expect(check(signSet(makeSetClaims({events: {}}), key))).toMatchObject({err: 'invalid_request'})
  })
})

describe('startPushReceiver (RFC 8935)', () => {
  it('answers 202 with an empty body and records tokens in order', async () => {
    const peer = await track(startPushReceiver())
    const sets = mintSets(3, key)
    for (const {token} of sets) {
      const res = await post(peer.url, token, {'Content-Type': 'application/secevent+jwt'})
      expect(res.status).toBe(202)
      expect(await res.text()).toBe('')
    }

    expect(peer.received.map((r) => r.jti)).toEqual(sets.map((s) => s.jti))
    expect(peer.accepted()).toEqual(sets.map((s) => s.token))
  })

  it('answers 400 {err, description} with Content-Language when the judge rejects', async () => {
    const peer = await track(startPushReceiver({judge: rejectAll('invalid_key', 'bad signature')}))
    const res = await post(peer.url, mintSets(1, key)[0]!.token, {'Content-Type': 'application/secevent+jwt; charset=utf-8'})
    expect(res.status).toBe(400)
    expect(res.headers.get('content-language')).toBe('en')
    expect(res.headers.get('content-type')).toBe('application/json')
    expect(await res.json()).toEqual({description: 'bad signature', err: 'invalid_key'})
    expect(peer.received[0]?.rejected).toEqual({description: 'bad signature', err: 'invalid_key'})
    expect(peer.accepted()).toEqual([])
  })

  it('rejects undecodable bodies with invalid_request by default', async () => {
    const peer = await track(startPushReceiver())
    const res = await post(peer.url, 'not-a-jwt', {'Content-Type': 'application/secevent+jwt'})
    expect(res.status).toBe(400)
    expect(await res.json()).toEqual({description: 'The SET is not a compact JWS with a JSON payload.', err: 'invalid_request'})
  })

  it('answers 405 with Allow, 415 for other content types, 413 over the limit', async () => {
    const peer = await track(startPushReceiver({maxBodyBytes: 100}))
    const get = await post(peer.url, '', {}, 'GET')
    expect(get.status).toBe(405)
    expect(get.headers.get('allow')).toBe('POST')
    expect(await get.json()).toMatchObject({err: 'invalid_request'})

    const json = await post(peer.url, '{}', {'Content-Type': 'application/json'})
    expect(json.status).toBe(415)
    expect(await json.json()).toEqual({description: 'The request Content-Type must be application/secevent+jwt.', err: 'invalid_request'})

    const big = await post(peer.url, 'x'.repeat(500), {'Content-Type': 'application/secevent+jwt'})
    expect(big.status).toBe(413)
    expect(peer.received).toEqual([])
    expect(peer.requests.map((r) => r.status)).toEqual([405, 415, 413])
  })

  it('answers 401 with WWW-Authenticate: Bearer without or with a wrong token', async () => {
    const peer = await track(startPushReceiver({token: 's3cret'}))
    const token = mintSets(1, key)[0]!.token
    const none = await post(peer.url, token, {'Content-Type': 'application/secevent+jwt'})
    expect(none.status).toBe(401)
    expect(none.headers.get('www-authenticate')).toMatch(/^Bearer /)
    const wrong = await post(peer.url, token, {Authorization: 'Bearer nope', 'Content-Type': 'application/secevent+jwt'})
    expect(wrong.status).toBe(401)
    expect(wrong.headers.get('www-authenticate')).toContain('error="invalid_token"')
    const right = await post(peer.url, token, {Authorization: 'Bearer s3cret', 'Content-Type': 'application/secevent+jwt'})
    expect(right.status).toBe(202)
    expect(peer.received).toHaveLength(1)
    expect(JSON.stringify(peer.requests)).not.toContain('s3cret')
  })

  it('plays scripted responses (503 + Retry-After) before answering normally', async () => {
    const peer = await track(startPushReceiver())
    peer.script({body: 'busy', headers: {'Retry-After': '1'}, status: 503})
    const token = mintSets(1, key)[0]!.token
    const first = await post(peer.url, token, {'Content-Type': 'application/secevent+jwt'})
    expect(first.status).toBe(503)
    expect(first.headers.get('retry-after')).toBe('1')
    expect((await post(peer.url, token, {'Content-Type': 'application/secevent+jwt'})).status).toBe(202)
  })
})

describe('startPollTransmitter (RFC 8936)', () => {
  const poll = (url: string, body: unknown) => post(url, JSON.stringify(body), {'Content-Type': 'application/json'})

  it('returns queued SETs, redelivers them until acked, and records acks and setErrs', async () => {
    const peer = await track(startPollTransmitter())
    const sets = mintSets(3, key)
    peer.queue(sets)
    const first = await (await poll(peer.url, {returnImmediately: true})).json() as {sets: Record<string, string>}
    expect(Object.keys(first.sets)).toEqual(sets.map((s) => s.jti))
    expect(first.sets[sets[0]!.jti]).toBe(sets[0]!.token)

    // Nothing acked: everything again.
    const again = await (await poll(peer.url, {returnImmediately: true})).json() as {sets: Record<string, string>}
    expect(Object.keys(again.sets)).toHaveLength(3)
    expect(peer.deliveries(sets[0]!.jti)).toBe(2)

    const res = await poll(peer.url, {ack: [sets[0]!.jti], returnImmediately: true, setErrs: {[sets[1]!.jti]: {description: 'bad', err: 'invalid_key'}}})
    expect(await res.json()).toEqual({sets: {[sets[2]!.jti]: sets[2]!.token}})
    expect(peer.acked).toEqual([sets[0]!.jti])
    expect(peer.setErrs[sets[1]!.jti]).toEqual({description: 'bad', err: 'invalid_key'})
    expect(peer.pending()).toEqual([sets[2]!.jti])
    expect(peer.requestCount()).toBe(3)
  })

  it('honours maxEvents with moreAvailable, and maxEvents 0 is ack-only', async () => {
    const peer = await track(startPollTransmitter())
    const sets = mintSets(3, key)
    peer.queue(sets)
    const some = await (await poll(peer.url, {maxEvents: 2, returnImmediately: true})).json() as {sets: Record<string, string>; moreAvailable?: boolean}
    expect(Object.keys(some.sets)).toEqual([sets[0]!.jti, sets[1]!.jti])
    expect(some.moreAvailable).toBe(true)
    const ackOnly = await (await poll(peer.url, {ack: sets.map((s) => s.jti), maxEvents: 0, returnImmediately: true})).json()
    expect(ackOnly).toEqual({sets: {}})
    expect(peer.acked).toEqual(sets.map((s) => s.jti))
    expect(peer.pending()).toEqual([])
  })

  it('holds a long poll until a SET is queued (and no longer)', {timeout: 5000}, async () => {
    // The hold timeout is far beyond the test timeout: only the wake-up on queue() can pass this.
    const peer = await track(startPollTransmitter({longPollTimeoutMs: 60_000}))
    const pending = poll(peer.url, {})
    await peer.waitFor(() => peer.waiting() === 1)
    const [set] = mintSets(1, key)
    peer.queue([set!.token])
    const body = await (await pending).json() as {sets: Record<string, string>}
    expect(body).toEqual({sets: {[set!.jti]: set!.token}})
    expect(peer.polls[0]?.waited).toBe(true)
  })

  it('answers an empty long poll with {"sets": {}} after the timeout', async () => {
    const peer = await track(startPollTransmitter({longPollTimeoutMs: 50}))
    const res = await poll(peer.url, {})
    expect(res.status).toBe(200)
    expect(await res.json()).toEqual({sets: {}})
  })

  it('answers 400 invalid_request for malformed polls and changes nothing', async () => {
    const peer = await track(startPollTransmitter())
    peer.queue(mintSets(1, key))
    const cases: [string, string][] = [
      ['{"maxEvents": -1}', '"maxEvents" must be a non-negative integer.'],
      ['{"maxEvents": 1.5}', '"maxEvents" must be a non-negative integer.'],
      ['{"ack": "x"}', '"ack" must be an array of jti strings.'],
      ['{"setErrs": []}', '"setErrs" must be an object keyed by jti.'],
      ['{"returnImmediately": "yes"}', '"returnImmediately" must be a boolean.'],
      ['[]', 'The poll request is not a JSON object.'],
      ['{"ack": [', 'The poll request is not a JSON object.'],
    ]
    for (const [body, description] of cases) {
      const res = await post(peer.url, body, {'Content-Type': 'application/json'})
      expect(res.status, body).toBe(400)
      expect(await res.json()).toEqual({description, err: 'invalid_request'})
    }

    expect(peer.polls).toEqual([])
    expect(peer.pending()).toHaveLength(1)
  })

  it('answers 405, 415 and 401 like the other endpoints', async () => {
    const peer = await track(startPollTransmitter({token: 't'}))
    expect((await post(peer.url, '', {}, 'GET')).status).toBe(405)
    expect((await post(peer.url, '{}', {'Content-Type': 'application/json'})).status).toBe(401)
    const wrongType = await post(peer.url, '{}', {Authorization: 'Bearer t', 'Content-Type': 'text/plain'})
    expect(wrongType.status).toBe(415)
    expect(await wrongType.json()).toEqual({description: 'The request Content-Type must be application/json.', err: 'invalid_request'})
  })

  it('records acks for jtis it never queued separately', async () => {
    const peer = await track(startPollTransmitter())
    await poll(peer.url, {ack: ['never-sent'], returnImmediately: true})
    expect(peer.unknownAcks).toEqual(['never-sent'])
    expect(peer.acked).toEqual([])
  })
})

describe('startPushpullHttpPeer (pushpull HTTP and multi-SET push)', () => {
  const exchange = async (url: string, body: unknown, type = 'application/json') => {
    const res = await post(url, JSON.stringify(body), {'Content-Type': type})
    return {body: await res.json() as Record<string, unknown>, res}
  }

  it('acks received SETs and sends its queued SETs, redelivered until acked', async () => {
    const peer = await track(startPushpullHttpPeer())
    const mine = mintSets(2, key)
    const theirs = mintSets(2, key)
    peer.queue(theirs)
    const first = await exchange(peer.url, {sets: Object.fromEntries(mine.map((s) => [s.jti, s.token]))})
    expect(first.res.status).toBe(200)
    expect(first.body).toEqual({ack: mine.map((s) => s.jti), sets: Object.fromEntries(theirs.map((s) => [s.jti, s.token]))})
    expect(peer.processed().map((r) => r.jti)).toEqual(mine.map((s) => s.jti))

    const second = await exchange(peer.url, {ack: [theirs[1]!.jti]})
    expect(second.body).toEqual({sets: {[theirs[0]!.jti]: theirs[0]!.token}})
    expect(peer.ackedByClient).toEqual([theirs[1]!.jti])
    expect(peer.deliveries(theirs[0]!.jti)).toBe(2)
  })

  it('respects maxResponseEvents, including 0', async () => {
    const peer = await track(startPushpullHttpPeer())
    peer.queue(mintSets(3, key))
    expect(await exchange(peer.url, {maxResponseEvents: 0})).toMatchObject({body: {}})
    expect(Object.keys((await exchange(peer.url, {maxResponseEvents: 2})).body.sets as object)).toHaveLength(2)
    for (const bad of [-1, 1.5, '2']) {
      const {body, res} = await exchange(peer.url, {maxResponseEvents: bad})
      expect(res.status).toBe(400)
      expect(body).toEqual({description: '"maxResponseEvents" must be a non-negative integer.', err: 'invalid_request'})
    }
  })

  it('answers setErrs from the judge, for key/jti mismatches and non-string values, and re-acks duplicates once', async () => {
    const peer = await track(startPushpullHttpPeer({judge: verifyingJudge({keys: [key]})}))
    const [good, other] = mintSets(2, key)
    const forged = signSet(makeSetClaims({jti: 'forged'}), generatePeerKey('ES256', 'k1'))
    const {body} = await exchange(peer.url, {sets: {[good!.jti]: good!.token, forged, 'not-its-jti': other!.token, 'number': 42}})
    expect(body.ack).toEqual([good!.jti])
    expect(body.setErrs).toEqual({
      forged: {description: 'The SET signature did not verify.', err: 'invalid_key'},
      'not-its-jti': {description: 'The "sets" key is not the SET\'s jti.', err: 'invalid_request'},
      number: {description: 'The value under "sets" for "number" is not a string.', err: 'invalid_request'},
    })
    const again = await exchange(peer.url, {sets: {[good!.jti]: good!.token}})
    expect(again.body).toEqual({ack: [good!.jti]})
    expect(peer.processed().map((r) => r.jti)).toEqual([good!.jti])
    expect(peer.received.filter((r) => r.jti === good!.jti).map((r) => r.duplicate)).toEqual([false, true])
  })

  it('with deferAcks answers SETs in the next response (late acks)', async () => {
    const peer = await track(startPushpullHttpPeer({deferAcks: true, includeEmptyMembers: true}))
    const [a] = mintSets(1, key)
    expect((await exchange(peer.url, {sets: {[a!.jti]: a!.token}})).body).toEqual({ack: [], setErrs: {}, sets: {}})
    expect((await exchange(peer.url, {})).body).toEqual({ack: [a!.jti], setErrs: {}, sets: {}})
  })

  it('answers 400 for malformed objects, 413 over the SET limit, 415, 405, 401', async () => {
    const peer = await track(startPushpullHttpPeer({maxSetsPerObject: 2, token: 'tok'}))
    const auth = {Authorization: 'Bearer tok', 'Content-Type': 'application/json'}
    const cases: [string, string][] = [
      ['[]', 'The Communication Object must be a JSON object.'],
      ['{"sets": []}', '"sets" must be an object keyed by jti.'],
      ['{"ack": {}}', '"ack" must be an array of jti strings.'],
      ['{"setErrs": "x"}', '"setErrs" must be an object keyed by jti.'],
      ['{"sets": {', 'The body is not valid JSON.'],
    ]
    for (const [body, description] of cases) {
      const res = await post(peer.url, body, auth)
      expect(res.status, body).toBe(400)
      expect(res.headers.get('content-language')).toBe('en')
      expect(await res.json()).toEqual({description, err: 'invalid_request'})
    }

    const three = Object.fromEntries(mintSets(3, key).map((s) => [s.jti, s.token]))
    const big = await post(peer.url, JSON.stringify({sets: three}), auth)
    expect(big.status).toBe(413)
    expect(await big.json()).toEqual({description: 'More than 2 SETs in one object.', err: 'invalid_request'})
    expect(peer.received).toEqual([])
    expect((await post(peer.url, '{}', {...auth, 'Content-Type': 'text/plain'})).status).toBe(415)
    const get = await post(peer.url, '', {}, 'GET')
    expect([get.status, get.headers.get('allow')]).toEqual([405, 'POST'])
    const unauth = await post(peer.url, '{}', {'Content-Type': 'application/json'})
    expect([unauth.status, unauth.headers.get('www-authenticate')]).toEqual([401, 'Bearer realm="pushpull-peer"'])
    expect((await post(peer.url, '{"unknown": 1}', auth)).status).toBe(200)
  })

  it('accepts multi-SET push: 202 with ack and setErrs; {"sets": {}} collects late acks', async () => {
    const peer = await track(startPushpullHttpPeer({deferAcks: true}))
    const sets = mintSets(2, key)
    const first = await exchange(peer.url, {sets: Object.fromEntries(sets.map((s) => [s.jti, s.token]))}, 'application/secevents+json')
    expect(first.res.status).toBe(202)
    expect(first.body).toEqual({ack: []})
    const late = await exchange(peer.url, {sets: {bad: 'zzz'}}, 'application/secevents+json')
    expect(late.body).toEqual({ack: sets.map((s) => s.jti)})
    const last = await exchange(peer.url, {sets: {}}, 'application/secevents+json')
    expect(last.body).toEqual({ack: [], setErrs: {bad: {description: 'The SET is not a compact JWS with a JSON payload.', err: 'invalid_request'}}})
    expect(peer.received.map((r) => r.via)).toEqual(['multi-push', 'multi-push', 'multi-push'])

    const missing = await post(peer.url, '{}', {'Content-Type': 'application/secevents+json'})
    expect(missing.status).toBe(400)
    expect(missing.headers.get('content-type')).toBe('application/problem+json')
    expect(await missing.json()).toEqual({description: 'A multi-SET push body needs a "sets" object.', err: 'invalid_request'})
  })
})
