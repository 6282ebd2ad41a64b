/**
 * Differential tests: the verifier (node:crypto fast path, remembered headers and key lookups) must
 * accept and reject exactly what the jose-based reference verifier does (decodeToken + jose's
 * compactVerify for every signature), with the same error code and message, over every algorithm
 * pushpull uses, every tampered case we know of, and random valid and mutated tokens.
 * Signing is checked the same way: what mintSet signs, jose verifies, and byte for byte the same
 * signature as jose's CompactSign for the deterministic algorithms.
 */
import {createHmac, createSecretKey, generateKeyPairSync, type KeyObject, randomBytes, sign} from 'node:crypto'

import fc from 'fast-check'
import {CompactSign, compactVerify} from 'jose'
import {afterAll, describe, expect, it} from 'vitest'

import {fastPathCovers} from '../../src/lib/crypto-fast.js'
import {isPushpullError} from '../../src/lib/errors.js'
import {type KeySource, StaticKeySource, type VerificationKey} from '../../src/lib/keys.js'
import {mintSet} from '../../src/lib/mint.js'
import {createVerifier, type SetVerifier, type VerifierOptions} from '../../src/lib/verify.js'
import {createVerifyPool} from '../../src/lib/verify-pool.js'
import {createReferenceVerifier} from './verify-differential-reference.js'

const NOW = 1_760_000_000_000
const NOW_SEC = NOW / 1000
const EVENT = 'https://schemas.openid.net/secevent/caep/event-type/session-presented'

type Alg = 'ES256' | 'ES384' | 'RS256' | 'PS256' | 'EdDSA' | 'HS256'
const ALGS: readonly Alg[] = ['ES256', 'ES384', 'RS256', 'PS256', 'EdDSA', 'HS256']

interface TestKey {
  alg: Alg
  /** Private key (or the secret for HS256). */
  signing: KeyObject
  /** Public key (or the secret for HS256). */
  verifying: KeyObject
}

function makeKey(alg: Alg, modulusLength = 2048): TestKey {
  if (alg === 'HS256') {
    const secret = createSecretKey(randomBytes(32))
    return {alg, signing: secret, verifying: secret}
  }

  const pair =
    alg === 'ES256' || alg === 'ES384'
      ? generateKeyPairSync('ec', {namedCurve: alg === 'ES256' ? 'P-256' : 'P-384'})
      : alg === 'EdDSA'
        ? generateKeyPairSync('ed25519')
        : generateKeyPairSync('rsa', {modulusLength})
  return {alg, signing: pair.privateKey, verifying: pair.publicKey}
}

const KEYS = Object.fromEntries(ALGS.map((alg) => [alg, makeKey(alg)])) as Record<Alg, TestKey>
// PS256 and RS256 share RSA keys in practice; give PS256 the RS256 key pair.
KEYS.PS256 = {...KEYS.RS256, alg: 'PS256'}
const OTHER = Object.fromEntries(ALGS.map((alg) => [alg, makeKey(alg)])) as Record<Alg, TestKey>
const SHORT_RSA = makeKey('RS256', 1024)
const RSA_PSS = (() => {
  const pair = generateKeyPairSync('rsa-pss', {modulusLength: 2048})
  return {alg: 'PS256' as const, signing: pair.privateKey, verifying: pair.publicKey}
})()

// --- an independent signer (node:crypto only) for arbitrary header and payload bytes ----------

const b64 = (data: string | Buffer): string => (typeof data === 'string' ? Buffer.from(data, 'utf8') : data).toString('base64url')

function rawSignature(alg: string, key: KeyObject, input: string, dsaEncoding: 'ieee-p1363' | 'der' = 'ieee-p1363'): Buffer {
  const data = Buffer.from(input)
  switch (alg) {
    case 'HS256': {
      return createHmac('sha256', key).update(data).digest()
    }

    case 'ES256':
    case 'ES384': {
      return sign(alg === 'ES256' ? 'sha256' : 'sha384', data, {dsaEncoding, key})
    }

    case 'PS256': {
      return sign('sha256', data, {key, padding: 6, saltLength: 32})
    }

    case 'RS256': {
      return sign('sha256', data, key)
    }

    default: {
      return sign(null, data, key)
    }
  }
}

function claims(over: Record<string, unknown> = {}): Record<string, unknown> {
  return {aud: 'https://receiver.example', events: {[EVENT]: {}}, iat: NOW_SEC, iss: 'https://idp.example', jti: `j-${randomBytes(4).toString('hex')}`, ...over}
}

interface Parts {
  header?: Record<string, unknown> | Buffer
  payload?: Record<string, unknown> | Buffer
}

/** Sign header and payload (objects are JSON-encoded, Buffers used as they are) with `key`. */
function token(key: TestKey, parts: Parts = {}, signAlg: string = key.alg, signingKey: KeyObject = key.signing, dsa: 'ieee-p1363' | 'der' = 'ieee-p1363'): string {
  const header = parts.header ?? {alg: key.alg, kid: 'k1', typ: 'secevent+jwt'}
  const payload = parts.payload ?? claims()
  const input = `${b64(Buffer.isBuffer(header) ? header : JSON.stringify(header))}.${b64(Buffer.isBuffer(payload) ? payload : JSON.stringify(payload))}`
  return `${input}.${b64(rawSignature(signAlg, signingKey, input, dsa))}`
}

const split = (t: string): [string, string, string] => t.split('.') as [string, string, string]

function withSignature(t: string, signature: Buffer | string): string {
  const [h, p] = split(t)
  return `${h}.${p}.${typeof signature === 'string' ? signature : b64(signature)}`
}

function flipSignatureByte(t: string, index: number): string {
  const bytes = Buffer.from(split(t)[2], 'base64url')
  const at = ((index % bytes.length) + bytes.length) % bytes.length
  bytes[at] = (bytes[at] ?? 0) ^ 0x01
  return withSignature(t, bytes)
}

/** Set the unused low bits of the last base64url character (the same bytes, a non-canonical text). */
function nonCanonical(part: string): string {
  const bytes = Buffer.from(part, 'base64url').length
  const unusedBits = part.length * 6 - bytes * 8
  if (unusedBits === 0) return part
  const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_'
  const last = alphabet.indexOf(part.at(-1) as string)
  return part.slice(0, -1) + alphabet[last | ((1 << unusedBits) - 1)]
}

const CURVE_ORDER: Record<string, bigint> = {
  ES256: 0xffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551n,
  ES384: 0xffffffffffffffffffffffffffffffffffffffffffffffffc7634d81f4372ddf581a0db248b0a77aecec196accc52973n,
}

/** The same ECDSA signature with s replaced by n - s (valid for ECDSA, "high S"). */
function highS(t: string, alg: 'ES256' | 'ES384'): string {
  const sig = Buffer.from(split(t)[2], 'base64url')
  const half = sig.length / 2
  const s = BigInt(`0x${sig.subarray(half).toString('hex')}`)
  const flipped = ((CURVE_ORDER[alg] as bigint) - s).toString(16).padStart(half * 2, '0')
  return withSignature(t, Buffer.concat([sig.subarray(0, half), Buffer.from(flipped, 'hex')]))
}

// --- comparing verdicts ------------------------------------------------------------------------

type Verdict = {ok: unknown} | {code: string; message: string}

async function verdictOf(verifier: {verify(token: string): Promise<unknown>}, t: string): Promise<Verdict> {
  try {
    return {ok: await verifier.verify(t)}
  } catch (error) {
    if (isPushpullError(error)) return {code: error.code, message: error.message}
    return {code: 'NOT A PUSHPULL ERROR', message: String(error)}
  }
}

interface Pair {
  fast: SetVerifier
  /** The same verifier with its signature checks in worker threads (src/lib/verify-pool.ts). */
  pooled: SetVerifier
  reference: ReturnType<typeof createReferenceVerifier>
}

const POOL = createVerifyPool({maxBatch: 3, workers: 2})
afterAll(async () => POOL.close())

function pair(options: VerifierOptions): Pair {
  return {fast: createVerifier(options), pooled: createVerifier({...options, signatures: POOL}), reference: createReferenceVerifier(options)}
}

/** Both verdicts; the test asserts they are equal and returns the verdict for further checks. */
async function compare(verifiers: Pair, t: string): Promise<Verdict> {
  const fast = await verdictOf(verifiers.fast, t)
  const reference = await verdictOf(verifiers.reference, t)
  expect(fast).toEqual(reference)
  // Twice: the second call goes through the remembered header and key lookup.
  expect(await verdictOf(verifiers.fast, t)).toEqual(reference)
  expect(await verdictOf(verifiers.pooled, t)).toEqual(reference)
  return fast
}

function staticSource(...keys: VerificationKey[]): StaticKeySource {
  return new StaticKeySource(keys)
}

function vkey(key: TestKey | {verifying: KeyObject}, over: Partial<VerificationKey> = {}): VerificationKey {
  return {key: key.verifying, source: 'test key', ...over}
}

/** A key source that is not a StaticKeySource (nothing may be remembered about it). */
function dynamicSource(keys: VerificationKey[]): KeySource {
  return {
    description: 'dynamic keys',
    hasSecret: keys.some((k) => k.key.type === 'secret'),
    async keysFor(kid) {
      return kid === undefined ? keys : keys.filter((k) => k.kid === undefined || k.kid === kid)
    },
  }
}

function tampered(alg: Alg, key: TestKey): [string, string][] {
  const good = token(key)
  const [h, p, s] = split(good)
  const cases: [string, string][] = [
    ['valid', good],
    ['flipped first signature byte', flipSignatureByte(good, 0)],
    ['flipped middle signature byte', flipSignatureByte(good, 17)],
    ['flipped last signature byte', flipSignatureByte(good, -1)],
    ['swapped payload', `${h}.${split(token(key))[1]}.${s}`],
    ['signed by another key', token(key, {}, alg, OTHER[alg].signing)],
    ['truncated signature (one byte)', withSignature(good, Buffer.from(s, 'base64url').subarray(0, -1))],
    ['truncated signature (half)', withSignature(good, Buffer.from(s, 'base64url').subarray(0, 16))],
    ['signature with a byte appended', withSignature(good, Buffer.concat([Buffer.from(s, 'base64url'), Buffer.from([0])]))],
    ['empty signature', `${h}.${p}.`],
    ['all-zero signature', withSignature(good, Buffer.alloc(Buffer.from(s, 'base64url').length))],
    ['non-canonical base64url signature', withSignature(good, nonCanonical(s))],
    ['non-canonical base64url payload', `${h}.${nonCanonical(p)}.${s}`],
    ['non-canonical base64url header', `${nonCanonical(h)}.${p}.${s}`],
    ['padded signature', `${good}==`],
    ['trailing garbage character', `${good}x`],
    ['trailing dot', `${good}.`],
    ['surrounding whitespace', ` ${good}\n`],
    ['standard base64 characters', good.replaceAll('-', '+').replaceAll('_', '/')],
    ['five parts', `${good}.a.b`],
    ['alg none, signature kept', token(key, {header: {alg: 'none', typ: 'secevent+jwt'}})],
    ['alg none, empty signature', `${b64(JSON.stringify({alg: 'none', typ: 'secevent+jwt'}))}.${p}.`],
    ['alg NONE', `${b64(JSON.stringify({alg: 'NONE', typ: 'secevent+jwt'}))}.${p}.`],
    ['header alg changed, signature kept', `${b64(JSON.stringify({alg: alg === 'ES256' ? 'ES384' : 'ES256', kid: 'k1', typ: 'secevent+jwt'}))}.${p}.${s}`],
    ['HS256 MACed with the public key bytes', publicKeyMac(key)],
    ['unknown kid', token(key, {header: {alg, kid: 'nope', typ: 'secevent+jwt'}})],
    ['no kid', token(key, {header: {alg, typ: 'secevent+jwt'}})],
    ['header not UTF-8', token(key, {header: Buffer.concat([Buffer.from(`{"alg":"${alg}","typ":"secevent+jwt","x":"`), Buffer.from([0xff, 0xfe]), Buffer.from('"}')])})],
    ['header with a BOM', token(key, {header: Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), Buffer.from(JSON.stringify({alg, typ: 'secevent+jwt'}))])})],
    ['header with whitespace', token(key, {header: Buffer.from(`{ "alg" : "${alg}",\r\n "typ":"secevent+jwt" }\n`)})],
    ['header with __proto__', token(key, {header: Buffer.from(`{"alg":"${alg}","typ":"secevent+jwt","__proto__":{"crit":["x"]}}`)})],
    ['header with nested members', token(key, {header: {alg, jwk: {kty: 'oct'}, typ: 'secevent+jwt'}})],
    ['header with an unknown crit', token(key, {header: {alg, crit: ['b64'], b64: false, typ: 'secevent+jwt'}})],
    ['header typ JWT', token(key, {header: {alg, typ: 'JWT'}})],
    ['payload not UTF-8', token(key, {payload: Buffer.concat([Buffer.from('{"iss":"https://idp.example","iat":1760000000,"jti":"x","events":{"e":{}},"n":"'), Buffer.from([0xc3, 0x28]), Buffer.from('"}')])})],
    ['payload with __proto__', token(key, {payload: Buffer.from(`{"__proto__":{"iss":"x"},"iss":"https://idp.example","iat":${NOW_SEC},"jti":"p","events":{"e":{}}}`)})],
    ['payload with an escaped __proto__', token(key, {payload: Buffer.from(`{"\\u005f_proto__":{"a":1},"iss":"https://idp.example","iat":${NOW_SEC},"jti":"p","events":{"e":{}}}`)})],
    ['payload with escapes', token(key, {payload: Buffer.from(`{"iss":"https://idp\\u002eexample","iat":${NOW_SEC},"jti":"p\\n","events":{"e":{}}}`)})],
    ['payload nested 33 deep', token(key, {payload: Buffer.from(`{"iss":"i","iat":${NOW_SEC},"jti":"p","events":{"e":{}},"d":${'['.repeat(32)}${']'.repeat(32)}}`)})],
    ['payload nested 32 deep', token(key, {payload: Buffer.from(`{"iss":"i","iat":${NOW_SEC},"jti":"p","events":{"e":{}},"d":${'['.repeat(31)}${']'.repeat(31)}}`)})],
    ['payload with 40 brackets, shallow', token(key, {payload: {...claims(), list: Array.from({length: 40}, () => [])}})],
    ['payload an array', token(key, {payload: Buffer.from('[1]')})],
    ['payload not JSON', token(key, {payload: Buffer.from('{"iss":')})],
    ['payload empty', `${h}..${s}`],
    ['claims: no jti', token(key, {payload: claims({jti: undefined})})],
    ['claims: expired', token(key, {payload: claims({exp: NOW_SEC - 3600})})],
    ['claims: iat in the future', token(key, {payload: claims({iat: NOW_SEC + 3600})})],
    ['claims: other issuer', token(key, {payload: claims({iss: 'https://evil.example'})})],
    ['claims: other audience', token(key, {payload: claims({aud: ['https://x.example']})})],
    ['claims: no audience', token(key, {payload: claims({aud: undefined})})],
    ['not a token', 'hello'],
    ['empty', ''],
    ['JWE', 'a.b.c.d.e'],
  ]
  if (alg === 'ES256' || alg === 'ES384') {
    cases.push(
      ['DER-encoded ECDSA signature', token(key, {}, alg, key.signing, 'der')],
      ['high-S ECDSA signature', highS(good, alg)],
      ['signature from the other curve', token(key, {header: {alg, kid: 'k1', typ: 'secevent+jwt'}}, alg === 'ES256' ? 'ES384' : 'ES256', KEYS[alg === 'ES256' ? 'ES384' : 'ES256'].signing)],
    )
  }

  if (alg === 'RS256' || alg === 'PS256') {
    cases.push(
      ['RS256 signature labelled PS256 or the reverse', token(key, {header: {alg, kid: 'k1', typ: 'secevent+jwt'}}, alg === 'RS256' ? 'PS256' : 'RS256')],
      ['signature with a leading zero byte', withSignature(good, Buffer.concat([Buffer.from([0]), Buffer.from(s, 'base64url')]))],
    )
  }

  return cases
}

function publicKeyMac(key: TestKey): string {
  const publicBytes = key.verifying.type === 'secret' ? key.verifying.export() : Buffer.from(key.verifying.export({format: 'pem', type: 'spki'}))
  return token(key, {header: {alg: 'HS256', kid: 'k1', typ: 'secevent+jwt'}}, 'HS256', createSecretKey(publicBytes))
}

function configsFor(alg: Alg, key: TestKey): [string, VerifierOptions][] {
  const base = {now: () => NOW}
  return [
    ['default allow-list, kid k1', {...base, keys: [staticSource(vkey(key, {kid: 'k1'}))]}],
    ['explicit allow-list with HS256, issuer and audience', {...base, algorithms: [alg, 'HS256'], audience: 'https://receiver.example', issuer: 'https://idp.example', keys: [staticSource(vkey(key, {kid: 'k1'}))]}],
    ['wrong key first, then the right one', {...base, keys: [staticSource(vkey(OTHER[alg]), vkey(key))]}],
    ['two sources, key pinned to its alg', {...base, keys: [staticSource(vkey(OTHER[alg], {kid: 'k2'})), staticSource(vkey(key, {alg, kid: 'k1'}))]}],
    ['dynamic source', {...base, keys: [dynamicSource([vkey(key, {kid: 'k1'})])]}],
    ['unsigned allowed, no keys', {...base, allowUnsigned: true}],
    ['no keys, explicit algorithms', {...base, algorithms: [alg]}],
  ]
}

describe('verifier vs the jose reference (every algorithm, every tampered case)', () => {
  for (const alg of ALGS) {
    const key = KEYS[alg]
    for (const [configName, options] of configsFor(alg, key)) {
      it(`${alg}: ${configName}`, async () => {
        const verifiers = pair(options)
        let accepted = 0
        for (const [name, t] of tampered(alg, key)) {
          const verdict = await compare(verifiers, t).catch((error: unknown) => {
            throw new Error(`${alg} / ${configName} / ${name}: ${(error as Error).message}`)
          })
          if ('ok' in verdict) accepted++
        }

        // The comparison is only worth something if both sides accepted some and rejected others.
        expect(accepted).toBeGreaterThan(0)
      })
    }
  }

  it('keys outside the fast path go through jose with jose errors: a 1024-bit RSA key, an rsa-pss key', async () => {
    expect(fastPathCovers(SHORT_RSA.verifying, 'RS256', 'verify')).toBe(false)
    const short = pair({keys: [staticSource(vkey(SHORT_RSA))], now: () => NOW})
    expect(await compare(short, token(SHORT_RSA))).toEqual({
      code: 'ERR_SET_ALG_NOT_ALLOWED',
      message: 'algorithm RS256 cannot be used with the key from test key: RS256 requires key modulusLength to be 2048 bits or larger',
    })
    expect(fastPathCovers(RSA_PSS.verifying, 'PS256', 'verify')).toBe(false)
    const pss = pair({keys: [staticSource(vkey(RSA_PSS))], now: () => NOW})
    for (const [, t] of tampered('PS256', RSA_PSS)) await compare(pss, t)
    // jose (on Node 20) cannot use an rsa-pss KeyObject at all; the verifier says what jose says.
    expect(await compare(pss, token(RSA_PSS))).toEqual({code: 'ERR_SET_SIGNATURE', message: 'the SET signature could not be checked: Unsupported JWK Key Type.'})
  })

  it('a private key or an empty secret offered for verification is left to jose', async () => {
    expect(fastPathCovers(KEYS.ES256.signing, 'ES256', 'verify')).toBe(false)
    const priv = pair({keys: [staticSource({key: KEYS.ES256.signing, source: 'private.pem'})], now: () => NOW})
    const verdict = await compare(priv, token(KEYS.ES256))
    expect(verdict).toMatchObject({code: 'ERR_SET_ALG_NOT_ALLOWED'})
    const empty = createSecretKey(Buffer.alloc(0))
    expect(fastPathCovers(empty, 'HS256', 'verify')).toBe(false)
  })

  it('the fast path covers every key pushpull generates', () => {
    for (const alg of ALGS) {
      expect(fastPathCovers(KEYS[alg].verifying, alg, 'verify')).toBe(true)
      expect(fastPathCovers(KEYS[alg].signing, alg, 'sign')).toBe(true)
    }

    expect(fastPathCovers(KEYS.ES256.verifying, 'ES384', 'verify')).toBe(false)
    expect(fastPathCovers(KEYS.ES256.verifying, 'HS256', 'verify')).toBe(false)
  })
})

describe('HS256 secrets of every length class vs the jose reference (1, 32, 64, 65 and 200 bytes)', () => {
  // The fast path computes the MAC from precomputed pads (a secret longer than the 64-byte block is
  // hashed first); jose's WebCrypto HMAC must agree on every length class.
  for (const length of [1, 32, 64, 65, 200]) {
    const secret = createSecretKey(Buffer.from(Array.from({length}, (_, i) => (i * 197 + length) % 256)))
    const key: TestKey = {alg: 'HS256', signing: secret, verifying: secret}

    it(`${length}-byte secret: every tampered case, and mintSet signs jose's exact bytes`, async () => {
      expect(fastPathCovers(secret, 'HS256', 'verify')).toBe(true)
      for (const [configName, options] of configsFor('HS256', key).slice(0, 3)) {
        const verifiers = pair(options)
        let accepted = 0
        for (const [name, t] of tampered('HS256', key)) {
          const verdict = await compare(verifiers, t).catch((error: unknown) => {
            throw new Error(`${length} bytes / ${configName} / ${name}: ${(error as Error).message}`)
          })
          if ('ok' in verdict) accepted++
        }

        expect(accepted).toBeGreaterThan(0)
      }

      const minted = await mintSet({events: {[EVENT]: {}}, iss: 'https://idp.example', jti: 'fixed'}, {alg: 'HS256', key: secret, kid: 'k1'}, {now: () => NOW})
      const [h, p] = split(minted.token)
      const joseToken = await new CompactSign(Buffer.from(p, 'base64url')).setProtectedHeader(JSON.parse(Buffer.from(h, 'base64url').toString()) as {alg: string}).sign(secret)
      expect(minted.token).toBe(joseToken)
      expect(JSON.parse(Buffer.from(h, 'base64url').toString())).toEqual({alg: 'HS256', kid: 'k1', typ: 'secevent+jwt'})
    })
  }
})

describe('verifier vs the jose reference (random tokens, fast-check)', () => {
  const jsonValue = fc.jsonValue({maxDepth: 3})
  const claimsArb = fc.record({
    aud: fc.option(fc.oneof(fc.constant('https://receiver.example'), fc.array(fc.constantFrom('https://receiver.example', 'https://x.example'), {maxLength: 3})), {nil: undefined}),
    events: fc.dictionary(fc.string({maxLength: 12}), fc.dictionary(fc.string({maxLength: 6}), jsonValue, {maxKeys: 3}), {maxKeys: 2}),
    extra: fc.dictionary(fc.string({maxLength: 10}), jsonValue, {maxKeys: 4}),
    iat: fc.oneof(fc.constant(NOW_SEC), fc.integer({max: NOW_SEC + 200, min: NOW_SEC - 200})),
    iss: fc.oneof(fc.constant('https://idp.example'), fc.string({maxLength: 8})),
    jti: fc.oneof(fc.uuid(), fc.string({maxLength: 4})),
  })
  const mutation = fc.oneof(
    fc.constant({kind: 'none' as const}),
    fc.record({at: fc.nat(), char: fc.constantFrom(...'AZaz09-_.=+/ \n'), kind: fc.constant('replace' as const)}),
    fc.record({at: fc.nat(), kind: fc.constant('delete' as const)}),
    fc.record({at: fc.nat(), char: fc.constantFrom(...'Aa0-_.'), kind: fc.constant('insert' as const)}),
    fc.record({at: fc.integer(), kind: fc.constant('flip' as const)}),
  )

  type Mutation = {kind: 'none'} | {kind: 'replace' | 'insert'; at: number; char: string} | {kind: 'delete'; at: number} | {kind: 'flip'; at: number}

  function mutate(t: string, m: Mutation): string {
    switch (m.kind) {
      case 'none': {
        return t
      }

      case 'flip': {
        return split(t)[2] === '' ? t : flipSignatureByte(t, m.at)
      }

      case 'delete': {
        const at = m.at % Math.max(1, t.length)
        return t.slice(0, at) + t.slice(at + 1)
      }

      default: {
        const at = m.at % (t.length + 1)
        return t.slice(0, at) + m.char + t.slice(m.kind === 'replace' ? at + 1 : at)
      }
    }
  }

  for (const alg of ALGS) {
    it(`${alg}: random valid and mutated SETs get the same verdict`, async () => {
      const key = KEYS[alg]
      const verifiers = pair({audience: 'https://receiver.example', keys: [staticSource(vkey(key, {kid: 'k1'}))], now: () => NOW})
      let accepted = 0
      let rejected = 0
      await fc.assert(
        fc.asyncProperty(claimsArb, mutation, fc.boolean(), async (c, m, otherKey) => {
          const {extra, ...members} = c
          const payload = {...extra, ...members, aud: members.aud}
          const signed = token(key, {payload}, alg, otherKey ? OTHER[alg].signing : key.signing)
          const verdict = await compare(verifiers, mutate(signed, m))
          if ('ok' in verdict) accepted++
          else rejected++
        }),
        {
          // A fixed seed (the suite's), plus one valid SET left untouched, so "some accepted" never
          // depends on what a run happens to draw.
          examples: [
            [
              {aud: 'https://receiver.example', events: {'https://schemas.openid.net/secevent/caep/event-type/session-revoked': {}}, extra: {}, iat: NOW_SEC, iss: 'https://idp.example', jti: '2b1c6d8e-4f0a-4b7e-9d3c-5a6f7e8d9c0b'},
              {kind: 'none'},
              false,
            ],
          ],
          numRuns: alg === 'RS256' || alg === 'PS256' ? 120 : 250,
          seed: 424242,
        },
      )
      expect(accepted).toBeGreaterThan(0)
      expect(rejected).toBeGreaterThan(0)
    })
  }
})

describe('signing vs jose', () => {
  const template = {aud: 'https://receiver.example', events: {[EVENT]: {}}, iss: 'https://idp.example', jti: 'fixed', sub_id: {email: 'ü@example.com', format: 'email'}}

  for (const alg of ALGS) {
    it(`${alg}: jose verifies what mintSet signs; deterministic algorithms give jose's exact bytes`, async () => {
      const key = KEYS[alg]
      const minted = await mintSet(template, {alg, key: key.signing, kid: 'k1'}, {now: () => NOW})
      const {payload, protectedHeader} = await compactVerify(minted.token, key.verifying, {algorithms: [alg]})
      expect(protectedHeader).toEqual({alg, kid: 'k1', typ: 'secevent+jwt'})
      expect(JSON.parse(new TextDecoder().decode(payload))).toEqual(minted.claims)
      await expect(compactVerify(minted.token, OTHER[alg].verifying, {algorithms: [alg]})).rejects.toThrow('signature verification failed')
      const [h, p] = split(minted.token)
      const joseToken = await new CompactSign(Buffer.from(p, 'base64url')).setProtectedHeader(JSON.parse(Buffer.from(h, 'base64url').toString()) as {alg: string}).sign(key.signing)
      if (alg === 'RS256' || alg === 'EdDSA' || alg === 'HS256') expect(minted.token).toBe(joseToken)
      else expect(split(joseToken).slice(0, 2)).toEqual([h, p])
      // And the verifier accepts both.
      const verifier = createVerifier({keys: [staticSource(vkey(key))], now: () => NOW})
      expect((await verifier.verify(minted.token)).verified).toBe(true)
      expect((await verifier.verify(joseToken)).verified).toBe(true)
    })
  }

  it('a key outside the fast path signs through jose with the same errors', async () => {
    const template2 = {events: {[EVENT]: {}}, iss: 'https://idp.example'}
    await expect(mintSet(template2, {alg: 'RS256', key: SHORT_RSA.signing})).rejects.toThrow('signing with RS256 failed: RS256 requires key modulusLength to be 2048 bits or larger')
    try {
      await mintSet(template2, {alg: 'ES256', key: KEYS.ES256.verifying})
      throw new Error('expected a failure')
    } catch (error) {
      expect(isPushpullError(error, 'ERR_KEY_INVALID')).toBe(true)
      expect((error as Error).message).toBe('signing with ES256 failed: KeyObject instances must be of type "private" for the ES256 algorithm')
    }

    await expect(mintSet(template2, {alg: 'PS256', key: RSA_PSS.signing})).rejects.toThrow('signing with PS256 failed: Unsupported JWK Key Type.')
  })
})
