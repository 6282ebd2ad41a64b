import {createPrivateKey} from 'node:crypto'
import {createServer} from 'node:http'
import type {AddressInfo} from 'node:net'

import {afterEach, describe, expect, it} from 'vitest'

import {generateKeyPair} from '../../src/lib/keys.js'
import {checkVerificationState, classifySsfEvent, awaitVerification, newVerificationState} from '../../src/lib/ssf/verification.js'
import {checkIssuer, metadataUrl, validateMetadata} from '../../src/lib/ssf/metadata.js'
import {createSsfTransmitter, type SsfTransmitter} from '../../src/lib/ssf/transmitter.js'
import {createHttpClient} from '../../src/lib/transport/http.js'
import {createVerifier} from '../../src/lib/verify.js'
import type {SetClaims} from '../../src/lib/set.js'

const cleanups: Array<() => Promise<void>> = []
afterEach(async () => {
  while (cleanups.length > 0) await cleanups.pop()?.()
})

describe('metadata', () => {
  it('inserts the well-known segment before the issuer path', () => {
    expect(metadataUrl('https://tx.example')).toBe('https://tx.example/.well-known/ssf-configuration')
    expect(metadataUrl('https://tx.example/')).toBe('https://tx.example/.well-known/ssf-configuration')
    expect(metadataUrl('https://tx.example/t1/')).toBe('https://tx.example/.well-known/ssf-configuration/t1')
    expect(metadataUrl('https://tx.example:8443/a/b', {legacy: true})).toBe('https://tx.example:8443/.well-known/risc-configuration/a/b')
  })

  it('checks issuer, URLs and jwks_uri', () => {
    const issuer = 'https://tx.example'
    const ok = validateMetadata({authorization_schemes: [{spec_urn: 'urn:ietf:rfc:6749'}], configuration_endpoint: 'https://tx.example/s', issuer, jwks_uri: 'https://tx.example/j'}, {issuer})
    expect(ok).toMatchObject({authorization_schemes: ['urn:ietf:rfc:6749'], configuration_endpoint: 'https://tx.example/s', delivery_methods_supported: []})
    expect(() => validateMetadata({issuer: 'https://tx.example/', jwks_uri: 'https://tx.example/j'}, {issuer})).toThrow(/names the issuer "https:\/\/tx.example\/", not "https:\/\/tx.example"/)
    expect(() => validateMetadata({issuer, jwks_uri: 'http://tx.example/j'}, {issuer})).toThrow('jwks_uri http://tx.example/j uses http; SSF requires https')
    expect(() => validateMetadata({issuer}, {issuer})).toThrow(/has no "jwks_uri"/)
    expect(validateMetadata({issuer}, {issuer, requireJwks: false}).jwks_uri).toBeUndefined()
    expect(() => validateMetadata({issuer, jwks_uri: 'https://tx.example/j', delivery_methods_supported: 'x'}, {issuer})).toThrow('"delivery_methods_supported" must be an array of strings')
    expect(() => validateMetadata([], {issuer})).toThrow('transmitter metadata is not a JSON object')
    expect(() => checkIssuer('https://tx.example?x=1')).toThrow('must not have a query or fragment')
    expect(() => checkIssuer('http://10.0.0.1', {allowHttp: true})).toThrow(/non-loopback host/)
  })
})

describe('verification events', () => {
  const claims = (events: Record<string, Record<string, unknown>>, sub?: Record<string, unknown>): SetClaims => ({events, iat: 1, iss: 'https://tx', jti: 'j1', ...(sub === undefined ? {} : {sub_id: sub as SetClaims['sub_id']})})

  it('classifies verification and stream-updated events', () => {
    expect(classifySsfEvent(claims({'https://schemas.openid.net/secevent/ssf/event-type/verification': {state: 's'}}, {format: 'opaque', id: 'st'}))).toEqual({state: 's', streamId: 'st', type: 'verification'})
    expect(classifySsfEvent(claims({'https://schemas.openid.net/secevent/ssf/event-type/stream-updated': {reason: 'r', status: 'paused'}}))).toEqual({reason: 'r', status: 'paused', type: 'stream-updated'})
    expect(classifySsfEvent(claims({'urn:x': {}}))).toBeUndefined()
    expect(newVerificationState(() => new Uint8Array(16))).toBe('AAAAAAAAAAAAAAAAAAAAAA')
  })

  it('rejects the wrong state with invalid_state', () => {
    const set = claims({'https://schemas.openid.net/secevent/ssf/event-type/verification': {state: 'other'}})
    let error: unknown
    try {
      checkVerificationState(set, {state: 'mine'})
    } catch (caught) {
      error = caught
    }

    expect(error).toMatchObject({code: 'ERR_SET_STATE', details: {err: 'invalid_state', jti: 'j1'}, message: 'verification SET j1 carries state "other", not the state "mine" we asked for'})
    expect(() => checkVerificationState(claims({'https://schemas.openid.net/secevent/ssf/event-type/verification': {state: 'mine'}}, {format: 'opaque', id: 'b'}), {state: 'mine', streamId: 'a'})).toThrow('is for stream "b", not "a"')
  })

  it('times out on an empty stream with an injected clock, polling once per interval', async () => {
    const server = createServer((_req, res) => res.writeHead(200, {'content-type': 'application/json'}).end('{"sets":{}}'))
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
    cleanups.push(async () => new Promise<void>((resolve) => server.close(() => resolve())))
    const client = createHttpClient()
    cleanups.push(async () => client.close())
    let clock = 0
    const sleeps: number[] = []
    await expect(
      awaitVerification({
        client,
        intervalMs: 1000,
        now: () => clock,
        pollUrl: `http://127.0.0.1:${(server.address() as AddressInfo).port}/poll`,
        sleep: async (ms) => {
          sleeps.push(ms)
          clock += ms
        },
        state: 's',
        timeoutMs: 2500,
        verifier: createVerifier(),
      }),
    ).rejects.toMatchObject({code: 'ERR_TIMEOUT', message: expect.stringContaining('no verification SET with state "s" arrived') as string})
    expect(sleeps).toEqual([1000, 1000, 500])
  })
})

describe('transmitter handler', () => {
  async function start(): Promise<{base: string; transmitter: SsfTransmitter}> {
    const pair = await generateKeyPair('ES256', 'k1')
    const holder: {transmitter?: SsfTransmitter} = {}
    const server = createServer((req, res) => {
      void holder.transmitter?.handle(req, res, new URL(req.url ?? '/', 'http://127.0.0.1')).then((handled) => {
        if (!handled) res.writeHead(404).end('not ours')
      })
    })
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
    const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`
    const transmitter = createSsfTransmitter({
      issuer: `${base}/tx`,
      jwks: pair.publicJwks as unknown as {keys: Array<Record<string, unknown>>},
      longPollMs: 20,
      signer: {alg: 'ES256', key: createPrivateKey(pair.privatePem), kid: pair.kid},
      token: 't',
    })
    holder.transmitter = transmitter
    cleanups.push(async () => {
      transmitter.close()
      server.closeAllConnections()
      await new Promise<void>((resolve) => server.close(() => resolve()))
    })
    return {base, transmitter}
  }

  const auth = {authorization: 'Bearer t', 'content-type': 'application/json'}

  it('serves metadata under the issuer path and leaves other paths alone', async () => {
    const {base} = await start()
    const meta = (await (await fetch(`${base}/.well-known/ssf-configuration/tx`)).json()) as Record<string, unknown>
    expect(meta).toMatchObject({configuration_endpoint: `${base}/tx/ssf/stream`, issuer: `${base}/tx`, jwks_uri: `${base}/tx/ssf/jwks.json`})
    const jwks = (await (await fetch(`${base}/tx/ssf/jwks.json`)).json()) as {keys: Array<{kid: string}>}
    expect(jwks.keys[0]?.kid).toBe('k1')
    expect(await (await fetch(`${base}/elsewhere`)).text()).toBe('not ours')
  })

  it('answers the specification status codes', async () => {
    const {base, transmitter} = await start()
    const stream = `${base}/tx/ssf/stream`
    expect((await fetch(stream)).status).toBe(401)
    expect((await fetch(stream, {body: '{"delivery":{"method":"urn:x"}}', headers: auth, method: 'POST'})).status).toBe(400)
    expect((await fetch(stream, {body: '{"delivery":{"method":"urn:ietf:rfc:8935","endpoint_url":"http://rx.example/e"}}', headers: auth, method: 'POST'})).status).toBe(400)
    expect((await fetch(stream, {body: 'x', headers: {...auth, 'content-type': 'text/plain'}, method: 'POST'})).status).toBe(415)
    expect((await fetch(stream, {body: '[1', headers: auth, method: 'POST'})).status).toBe(400)
    expect((await fetch(stream, {headers: auth, method: 'OPTIONS'})).status).toBe(405)
    const created = await fetch(stream, {body: '{}', headers: auth, method: 'POST'})
    expect(created.status).toBe(201)
    const config = (await created.json()) as {stream_id: string; delivery: {endpoint_url: string}}
    const patch = await fetch(stream, {body: JSON.stringify({iss: 'https://other', stream_id: config.stream_id}), headers: auth, method: 'PATCH'})
    expect(patch.status).toBe(400)
    expect(((await patch.json()) as {description: string}).description).toBe('"iss" is Transmitter-Supplied and does not match the stream\'s value')
    expect((await fetch(`${stream}?stream_id=nope`, {headers: auth})).status).toBe(404)
    expect((await fetch(`${base}/tx/ssf/status`, {body: JSON.stringify({status: 'sleeping', stream_id: config.stream_id}), headers: auth, method: 'POST'})).status).toBe(400)
    expect((await fetch(`${base}/tx/ssf/subjects:add`, {body: JSON.stringify({stream_id: config.stream_id, subject: 'a'}), headers: auth, method: 'POST'})).status).toBe(400)

    // A transmitter-initiated status change is announced with a stream-updated SET on the poll queue.
    await transmitter.setStreamStatus(config.stream_id, 'enabled', 'back')
    const polled = (await (await fetch(config.delivery.endpoint_url, {body: '{"returnImmediately":true}', headers: auth, method: 'POST'})).json()) as {sets: Record<string, string>}
    const [jti] = Object.keys(polled.sets)
    expect(transmitter.pending(config.stream_id)).toEqual([jti])
    await fetch(config.delivery.endpoint_url, {body: JSON.stringify({ack: [jti], maxEvents: 0, returnImmediately: true}), headers: auth, method: 'POST'})
    expect(transmitter.pending(config.stream_id)).toEqual([])
    expect((await fetch(`${stream}?stream_id=${config.stream_id}`, {headers: auth, method: 'DELETE'})).status).toBe(204)
  })
})
