import {describe, expect, it} from 'vitest'

import {isPushpullError, setErrCodeOf} from '../../src/lib/errors.js'
import {secretVerificationKey, StaticKeySource, verificationKeyFromPem, verificationKeysFromJson} from '../../src/lib/keys.js'
import {createVerifier, type VerifierOptions} from '../../src/lib/verify.js'
import {generatePeerKey, makeSetClaims, publicJwks, publicPem, signSet, unsignedSet} from '../helpers/peers/set-token.js'

const NOW = 1_760_000_000_000
const nowSec = NOW / 1000
const key = generatePeerKey('ES256', 'k1')
const other = generatePeerKey('ES256', 'k1') // same kid, different key
const jwks = new StaticKeySource(verificationKeysFromJson(publicJwks([key]), 'jwks.json'))
const claims = (over: Record<string, unknown> = {}): Record<string, unknown> => makeSetClaims({iat: nowSec, ...over})

function verifier(options: VerifierOptions = {}) {
  return createVerifier({keys: [jwks], now: () => NOW, ...options})
}

async function failure(promise: Promise<unknown>): Promise<{code: string; message: string; setErr?: string}> {
  try {
    await promise
  } catch (error) {
    if (isPushpullError(error)) return {code: error.code, message: error.message, setErr: setErrCodeOf(error)}
    throw error
  }

  throw new Error('expected a failure')
}

function flipSignatureByte(token: string): string {
  const [h, p, s] = token.split('.') as [string, string, string]
  const bytes = Buffer.from(s, 'base64url')
  bytes[10] = (bytes[10] ?? 0) ^ 0x01
  return `${h}.${p}.${bytes.toString('base64url')}`
}

describe('createVerifier', () => {
  it('verifies a good ES256 SET and says which key did it', async () => {
    const token = signSet(claims(), key)
    const set = await verifier().verify(token)
    expect(set.verified).toBe(true)
    expect(set.unsigned).toBe(false)
    expect(set.key).toMatchObject({alg: 'ES256', kid: 'k1', source: 'jwks.json'})
    expect(set.claims.iss).toBe('https://peer.example')
  })

  it.each(['application/secevent+jwt', 'SecEvent+JWT', 'APPLICATION/SECEVENT+JWT'])('accepts typ %s', async (typ) => {
    expect((await verifier().verify(signSet(claims(), key, {typ}))).verified).toBe(true)
  })

  it('verifies many SETs with one verifier (keys imported once, checked concurrently)', async () => {
    const v = verifier()
    const tokens = Array.from({length: 50}, () => signSet(claims(), key))
    const results = await Promise.all(tokens.map(async (t) => v.verify(t)))
    expect(results.every((r) => r.verified)).toBe(true)
  })

  it('rejects a flipped signature byte', async () => {
    expect(await failure(verifier().verify(flipSignatureByte(signSet(claims(), key))))).toEqual({
      code: 'ERR_SET_SIGNATURE',
      message: 'the SET signature does not verify with the key from jwks.json',
      setErr: 'invalid_key',
    })
  })

  it('rejects a swapped payload', async () => {
    const [h, , s] = signSet(claims({jti: 'a'}), key).split('.')
    const [, p] = signSet(claims({jti: 'b'}), key).split('.')
    expect(await failure(verifier().verify(`${h}.${p}.${s}`))).toMatchObject({code: 'ERR_SET_SIGNATURE'})
  })

  it('rejects a SET signed by another key with the same kid', async () => {
    expect(await failure(verifier().verify(signSet(claims(), other)))).toEqual({
      code: 'ERR_SET_SIGNATURE',
      message: 'the SET signature does not verify with the key from jwks.json',
      setErr: 'invalid_key',
    })
  })

  it('rejects an unknown kid', async () => {
    expect(await failure(verifier().verify(signSet(claims(), generatePeerKey('ES256', 'k9'))))).toEqual({
      code: 'ERR_SET_KID_UNKNOWN',
      message: 'no key with kid "k9" in jwks.json',
      setErr: 'invalid_key',
    })
  })

  it('refuses alg none unless unsigned SETs are allowed', async () => {
    const token = unsignedSet(claims())
    expect(await failure(verifier().verify(token))).toEqual({
      code: 'ERR_SET_UNSIGNED',
      message: 'the SET is unsigned (alg "none") and unsigned SETs are not allowed',
      setErr: 'invalid_key',
    })
    const set = await verifier({allowUnsigned: true}).verify(token)
    expect(set).toMatchObject({unsigned: true, unverifiedReason: 'unsigned SET (alg "none") accepted by request', verified: false})
    expect(await failure(verifier({allowUnsigned: true}).verify(`${token}c2ln`))).toMatchObject({code: 'ERR_SET_MALFORMED'})
  })

  it('refuses an algorithm outside the allow-list', async () => {
    expect(await failure(verifier({algorithms: ['RS256']}).verify(signSet(claims(), key)))).toEqual({
      code: 'ERR_SET_ALG_NOT_ALLOWED',
      message: 'algorithm ES256 is not allowed; allowed: RS256',
      setErr: 'invalid_key',
    })
  })

  it('refuses an HS256 SET MACed with the public key bytes', async () => {
    const pem = publicPem(key)
    const forged = signSet(claims(), {alg: 'HS256', kid: 'k1', secret: Buffer.from(pem)})
    const pemSource = new StaticKeySource([verificationKeyFromPem(pem, 'public.pem')])
    // Default allow-list: HS256 only joins when a secret is configured.
    expect(await failure(createVerifier({keys: [pemSource], now: () => NOW}).verify(forged))).toEqual({
      code: 'ERR_SET_ALG_NOT_ALLOWED',
      message: 'algorithm HS256 is not allowed; allowed: RS256, PS256, ES256, ES384, EdDSA',
      setErr: 'invalid_key',
    })
    // Even when HS256 is allowed explicitly, a public key never serves as an HMAC secret.
    expect(await failure(createVerifier({algorithms: ['HS256', 'ES256'], keys: [pemSource], now: () => NOW}).verify(forged))).toEqual({
      code: 'ERR_SET_ALG_NOT_ALLOWED',
      message: 'algorithm HS256 does not fit the configured key (public.pem)',
      setErr: 'invalid_key',
    })
  })

  it('verifies HS256 with a configured secret, and rejects a wrong secret', async () => {
    const secret = generatePeerKey('HS256', 'h1')
    const source = new StaticKeySource([secretVerificationKey(secret.secret as Buffer, 'the HMAC secret')])
    const token = signSet(claims(), secret)
    const good = createVerifier({keys: [source], now: () => NOW})
    expect(good.algorithms).toContain('HS256')
    expect((await good.verify(token)).verified).toBe(true)
    const wrong = new StaticKeySource([secretVerificationKey('not the secret', 'the HMAC secret')])
    expect(await failure(createVerifier({keys: [wrong], now: () => NOW}).verify(token))).toEqual({
      code: 'ERR_SET_SIGNATURE',
      message: 'the SET signature does not verify with the key from the HMAC secret',
      setErr: 'invalid_key',
    })
  })

  it.each([
    ['JWT', 'the SET header "typ" is "JWT", not "secevent+jwt"'],
    ['at+jwt', 'the SET header "typ" is "at+jwt", not "secevent+jwt"'],
    [null, 'the SET header has no "typ"; expected "secevent+jwt"'],
  ])('refuses typ %s', async (typ, message) => {
    expect(await failure(verifier().verify(signSet(claims(), key, {typ})))).toEqual({code: 'ERR_SET_TYP', message, setErr: 'invalid_request'})
  })

  it('refuses an unknown crit header parameter', async () => {
    const token = signSet(claims(), key, {header: {crit: ['urn:example:ext'], 'urn:example:ext': 1}})
    expect(await failure(verifier().verify(token))).toEqual({
      code: 'ERR_SET_CRIT',
      message: 'the SET header marks parameters critical that pushpull does not understand: urn:example:ext',
      setErr: 'invalid_request',
    })
  })

  it('checks the issuer', async () => {
    expect(await failure(verifier({issuer: 'https://idp.example'}).verify(signSet(claims(), key)))).toEqual({
      code: 'ERR_SET_ISSUER',
      message: 'the SET issuer "https://peer.example" is not the expected "https://idp.example"',
      setErr: 'invalid_issuer',
    })
    expect((await verifier({issuer: ['https://idp.example', 'https://peer.example']}).verify(signSet(claims(), key))).verified).toBe(true)
  })

  it('checks the audience, including a missing one', async () => {
    expect(await failure(verifier({audience: 'https://me.example'}).verify(signSet(claims(), key)))).toEqual({
      code: 'ERR_SET_AUDIENCE',
      message: 'the SET audience https://receiver.example does not include the expected "https://me.example"',
      setErr: 'invalid_audience',
    })
    expect(await failure(verifier({audience: 'https://me.example'}).verify(signSet(claims({aud: undefined}), key)))).toEqual({
      code: 'ERR_SET_AUDIENCE',
      message: 'the SET has no "aud"; expected "https://me.example"',
      setErr: 'invalid_audience',
    })
    const many = signSet(claims({aud: ['https://x.example', 'https://me.example']}), key)
    expect((await verifier({audience: 'https://me.example'}).verify(many)).verified).toBe(true)
  })

  it('refuses an expired SET and honours the clock tolerance', async () => {
    const token = signSet(claims({exp: nowSec - 61}), key)
    expect(await failure(verifier().verify(token))).toEqual({
      code: 'ERR_SET_EXPIRED',
      message: `the SET expired at ${new Date((nowSec - 61) * 1000).toISOString()}`,
      setErr: 'invalid_request',
    })
    expect((await verifier({clockToleranceSec: 120}).verify(token)).verified).toBe(true)
  })

  it('refuses iat and nbf too far in the future', async () => {
    const iat = nowSec + 3600
    expect(await failure(verifier().verify(signSet(claims({iat}), key)))).toEqual({
      code: 'ERR_SET_NOT_YET_VALID',
      message: `the SET "iat" ${new Date(iat * 1000).toISOString()} is more than 60 s in the future`,
      setErr: 'invalid_request',
    })
    expect(await failure(verifier().verify(signSet(claims({nbf: iat}), key)))).toMatchObject({code: 'ERR_SET_NOT_YET_VALID'})
    expect((await verifier().verify(signSet(claims({iat: nowSec + 30}), key))).verified).toBe(true)
  })

  it.each([
    ['jti missing', {jti: undefined}, 'the SET has no "jti"'],
    ['jti empty', {jti: ''}, 'the SET "jti" is empty'],
    ['jti not a string', {jti: 12}, 'the SET "jti" is not a string'],
    ['events missing', {events: undefined}, 'the SET has no "events" claim'],
    ['events {}', {events: {}}, 'the SET "events" claim is empty; a SET carries at least one event'],
    ['events not an object', {events: 'x'}, 'the SET "events" claim is not a JSON object'],
    ['event value not an object', {events: {'urn:e': 'x'}}, 'the SET event "urn:e" is not a JSON object'],
  ])('refuses claims: %s', async (_name, over, message) => {
    expect(await failure(verifier().verify(signSet(claims(over), key)))).toEqual({code: 'ERR_SET_CLAIMS', message, setErr: 'invalid_request'})
  })

  it('refuses a JWE, an oversize token and malformed tokens before any crypto', async () => {
    expect(await failure(verifier().verify('a.b.c.d.e'))).toEqual({
      code: 'ERR_SET_ENCRYPTED',
      message: 'the SET is encrypted (a 5-part JWE); encrypted SETs need a decryption key',
      setErr: 'invalid_request',
    })
    expect(await failure(verifier({maxBytes: 200}).verify(signSet(claims(), key)))).toEqual({
      code: 'ERR_SET_TOO_LARGE',
      message: 'the SET is larger than the 200-byte limit',
      setErr: 'invalid_request',
    })
    expect(await failure(verifier().verify('e30.%%%.abc'))).toEqual({code: 'ERR_SET_MALFORMED', message: 'the SET payload is not valid base64url', setErr: 'invalid_request'})
  })

  it('without keys decodes and checks everything but the signature', async () => {
    const v = createVerifier({now: () => NOW})
    expect(v.hasKeys).toBe(false)
    const set = await v.verify(signSet(claims(), key))
    expect(set).toMatchObject({unverifiedReason: 'no verification key configured', verified: false})
    expect(await failure(createVerifier({issuer: 'https://other.example', now: () => NOW}).verify(signSet(claims(), key)))).toMatchObject({
      code: 'ERR_SET_ISSUER',
    })
    expect(await failure(v.verify(signSet(claims(), key, {typ: 'JWT'})))).toMatchObject({code: 'ERR_SET_TYP'})
  })

  it('refuses a bad configuration up front', () => {
    expect(() => createVerifier({algorithms: ['none']})).toThrow('"none" cannot be in the algorithm allow-list')
    expect(() => createVerifier({clockToleranceSec: -1})).toThrow('the clock tolerance must be a non-negative number of seconds')
  })
})
