/**
 * Fuzz properties for compact SETs: decodeToken / decodeSet / extractTokens (src/lib/set.ts) and
 * the verifier (src/lib/verify.ts) with and without keys.
 *
 * Tokens are built by the independent signer in test/helpers/peers/set-token.ts, from claims that
 * are valid and then changed in one place, so the properties reach claim checks, key lookup and
 * signatures. The reference decoder below is written from RFC 7515 / RFC 8417 and protocol.md.
 */
import {strict as assert} from 'node:assert'

import * as fc from 'fast-check'

import {encodeBase64url} from '../../src/lib/base64url.js'
import type {ErrorCode} from '../../src/lib/errors.js'
import {secretVerificationKey, StaticKeySource, unsignedSigner, verificationKeyFromPem, verificationKeysFromJson} from '../../src/lib/keys.js'
import {mintSet, type SetTemplate} from '../../src/lib/mint.js'
import {decodeSet, decodeToken, extractTokens} from '../../src/lib/set.js'
import {createVerifier} from '../../src/lib/verify.js'
import {generatePeerKey, publicJwks, publicPem, signSet} from '../helpers/peers/set-token.js'
import {hostileJsonText, jsonScalarText, objectText, peerKey, peerString, pollutionText, textMutation, tokenLikeString} from './arbitraries.js'
import {type FuzzProperty, fuzzProperty, outcome, outcomeAsync} from './harness.js'
import {textDepth} from './properties-communication.js'

const DECODE_CODES: ErrorCode[] = ['ERR_SET_MALFORMED', 'ERR_SET_TOO_LARGE', 'ERR_SET_ENCRYPTED']
const CLAIM_CODES: ErrorCode[] = [...DECODE_CODES, 'ERR_SET_CLAIMS']
const VERIFY_CODES: ErrorCode[] = [
  ...CLAIM_CODES,
  'ERR_SET_TYP',
  'ERR_SET_CRIT',
  'ERR_SET_UNSIGNED',
  'ERR_SET_ALG_NOT_ALLOWED',
  'ERR_SET_KID_UNKNOWN',
  'ERR_SET_SIGNATURE',
  'ERR_SET_ISSUER',
  'ERR_SET_AUDIENCE',
  'ERR_SET_EXPIRED',
  'ERR_SET_NOT_YET_VALID',
]

const NOW = 1_760_000_000_000
const NOW_SEC = NOW / 1000
const ES_KEY = generatePeerKey('ES256', 'fuzz-es')
const HS_KEY = generatePeerKey('HS256', 'fuzz-hs')
const esSource = new StaticKeySource(verificationKeysFromJson(publicJwks([ES_KEY]), 'fuzz-jwks.json'))
const hsSource = new StaticKeySource([{...secretVerificationKey(HS_KEY.secret as Buffer, '--secret'), kid: 'fuzz-hs'}])
const keyedVerifier = createVerifier({audience: 'https://rp.example', issuer: 'https://op.example', keys: [esSource, hsSource], now: () => NOW})
const keylessVerifier = createVerifier({now: () => NOW})
const unsignedVerifier = createVerifier({allowUnsigned: true, now: () => NOW})

// ---------------------------------------------------------------------------------------------
// Reference decoder

const isObject = (value: unknown): value is Record<string, unknown> => typeof value === 'object' && value !== null && !Array.isArray(value)
const B64URL = /^[A-Za-z0-9_-]*$/

type Ref = {ok: true; header: Record<string, unknown>; payload: Record<string, unknown>} | {ok: false; code: ErrorCode}

function refPart(part: string): Record<string, unknown> | undefined {
  if (part === '' || !B64URL.test(part) || part.length % 4 === 1) return undefined
  const text = Buffer.from(part, 'base64url').toString('utf8')
  let value: unknown
  try {
    value = JSON.parse(text, (key, v: unknown) => (key === '__proto__' ? undefined : v))
  } catch {
    return undefined
  }

  if (!isObject(value) || textDepth(text) > 32) return undefined
  return value
}

function refDecode(input: string, maxBytes = 64 * 1024): Ref {
  if (Buffer.byteLength(input) > maxBytes) return {code: 'ERR_SET_TOO_LARGE', ok: false}
  const parts = input.trim().split('.')
  if (input.trim() === '') return {code: 'ERR_SET_MALFORMED', ok: false}
  if (parts.length === 5) return {code: 'ERR_SET_ENCRYPTED', ok: false}
  if (parts.length !== 3) return {code: 'ERR_SET_MALFORMED', ok: false}
  const header = refPart(parts[0] as string)
  const payload = header === undefined ? undefined : refPart(parts[1] as string)
  const signature = parts[2] as string
  if (header === undefined || payload === undefined) return {code: 'ERR_SET_MALFORMED', ok: false}
  if (typeof header.alg !== 'string' || header.alg === '') return {code: 'ERR_SET_MALFORMED', ok: false}
  if (signature !== '' && (!B64URL.test(signature) || signature.length % 4 === 1)) return {code: 'ERR_SET_MALFORMED', ok: false}
  return {header, ok: true, payload}
}

/** RFC 8417 claim shapes (protocol.md section 1). */
function refClaimsValid(claims: Record<string, unknown>): boolean {
  const get = (name: string): unknown => (Object.hasOwn(claims, name) ? claims[name] : undefined)
  // NumericDates: finite and within the range of a JavaScript Date (±8.64e12 s).
  const finite = (value: unknown): boolean => typeof value === 'number' && Number.isFinite(value) && Math.abs(value) <= 8.64e12
  const iss = get('iss')
  const jti = get('jti')
  const aud = get('aud')
  const events = get('events')
  if (typeof iss !== 'string' || iss === '' || !finite(get('iat')) || typeof jti !== 'string' || jti === '') return false
  if (aud !== undefined && typeof aud !== 'string' && !(Array.isArray(aud) && aud.every((a) => typeof a === 'string'))) return false
  if (!isObject(events) || Object.keys(events).length === 0 || Object.keys(events).some((uri) => !isObject(events[uri]))) return false
  if (get('txn') !== undefined && typeof get('txn') !== 'string') return false
  if (['toe', 'exp', 'nbf'].some((name) => get(name) !== undefined && !finite(get(name)))) return false
  return get('sub_id') === undefined || isObject(get('sub_id'))
}

// ---------------------------------------------------------------------------------------------
// Near-valid claims and tokens

const GOOD_CLAIMS: ReadonlyArray<readonly [string, string]> = [
  ['iss', '"https://op.example"'],
  ['aud', '"https://rp.example"'],
  ['iat', String(NOW_SEC - 5)],
  ['jti', '"fuzz-jti-1"'],
  ['sub_id', '{"format":"email","email":"ana@example.com"}'],
  ['events', '{"https://schemas.openid.net/secevent/caep/event-type/session-revoked":{"event_timestamp":1760000000}}'],
]

const CLAIM_NAMES = ['iss', 'aud', 'iat', 'jti', 'sub_id', 'events', 'txn', 'toe', 'exp', 'nbf', 'sub'] as const

const claimValue: fc.Arbitrary<string> = fc.oneof(
  jsonScalarText,
  hostileJsonText,
  pollutionText,
  fc.constantFrom('{}', '[]', '{"x:y":1}', '{"x:y":[]}', '["a",1]', '["https://rp.example"]', String(NOW_SEC + 3600), String(NOW_SEC - 3600), '"https://evil.example"'),
  fc.constantFrom('8640000000000', '8640000000000.5', '-8640000000001', '9007199254740992', '1e300', '-1e300'),
)

/** Valid claims with one claim removed, replaced or added (or none: stays valid). */
const nearValidClaimsText: fc.Arbitrary<string> = fc
  .tuple(fc.constantFrom('keep', 'remove', 'replace', 'add'), fc.constantFrom(...CLAIM_NAMES), claimValue, fc.array(fc.tuple(peerKey, hostileJsonText), {maxLength: 2}))
  .map(([op, name, value, extra]) => {
    let entries = [...GOOD_CLAIMS]
    if (op === 'remove') entries = entries.filter(([key]) => key !== name)
    if (op === 'replace') entries = entries.map(([key, v]) => [key, key === name ? value : v] as const)
    if (op === 'add') entries.push([name, value])
    return objectText(op === 'keep' ? entries : [...entries, ...extra])
  })

const headerText: fc.Arbitrary<string> = fc.oneof(
  {arbitrary: fc.constant('{"alg":"none","typ":"secevent+jwt"}'), weight: 3},
  {
    arbitrary: fc
      .tuple(
        fc.constantFrom('"none"', '"None"', '"ES256"', '"HS256"', '"RS256"', '""', '1', 'null', '"ES512"'),
        fc.constantFrom('"secevent+jwt"', '"application/secevent+jwt"', '"JWT"', '"at+jwt"', 'null', '1', '["secevent+jwt"]', ''),
        fc.option(fc.constantFrom('["exp"]', '"b64"', '[]', '{}'), {nil: undefined}),
        fc.option(fc.tuple(peerKey, hostileJsonText), {nil: undefined}),
      )
      .map(([alg, typ, crit, extra]) =>
        objectText([['alg', alg], ...(typ === '' ? [] : [['typ', typ] as const]), ...(crit === undefined ? [] : [['crit', crit] as const]), ...(extra === undefined ? [] : [extra])]),
      ),
    weight: 2,
  },
)

/** A token from parts, sometimes with the text of one part or the whole token mutated. */
const nearValidToken: fc.Arbitrary<string> = fc
  .tuple(headerText, nearValidClaimsText, fc.constantFrom('', 'c2ln', 'AAAA', '*'), fc.option(textMutation, {freq: 3, nil: undefined}), fc.nat(3))
  .map(([header, payload, signature, mutate, where]) => {
    const parts = [encodeBase64url(header), encodeBase64url(payload), signature]
    if (mutate === undefined) return parts.join('.')
    if (where === 3) return mutate(parts.join('.'))
    parts[where] = mutate(parts[where] as string)
    return parts.join('.')
  })

const anyToken: fc.Arbitrary<string> = fc.oneof({arbitrary: nearValidToken, weight: 6}, {arbitrary: tokenLikeString, weight: 2}, {arbitrary: peerString(120), weight: 1})

// Signed tokens: valid claims changed in one place, signed by the peer signer.
const signedClaims: fc.Arbitrary<Record<string, unknown>> = nearValidClaimsText.map((text) => {
  const value = JSON.parse(text) as unknown
  return isObject(value) ? value : {}
})

const tamper: fc.Arbitrary<{part: 0 | 1 | 2; byte: number; bit: number} | undefined> = fc.option(
  fc.record({bit: fc.integer({max: 7, min: 0}), byte: fc.nat(), part: fc.constantFrom(0 as const, 1 as const, 2 as const)}),
  {freq: 2, nil: undefined},
)

/** Flip one bit of one decoded part and re-encode: the signature must then fail. */
function flipBit(token: string, change: {part: 0 | 1 | 2; byte: number; bit: number}): string {
  const parts = token.split('.')
  const bytes = Buffer.from(parts[change.part] as string, 'base64url')
  if (bytes.length === 0) return token
  const i = change.byte % bytes.length
  bytes[i] = (bytes[i] as number) ^ (1 << change.bit)
  parts[change.part] = bytes.toString('base64url')
  return parts.join('.')
}

// ---------------------------------------------------------------------------------------------
// Properties

export const setProperties: FuzzProperty[] = [
  fuzzProperty(
    'set: decodeToken agrees with the reference decoder (size, parts, base64url, JSON objects, depth, alg)',
    400,
    fc.property(anyToken, fc.constantFrom(undefined, 64, 200), (token, maxBytes) => {
      const result = outcome('decodeToken', DECODE_CODES, () => decodeToken(token, maxBytes === undefined ? {} : {maxBytes}))
      const expected = refDecode(token, maxBytes)
      if (!expected.ok) {
        assert.ok(!result.ok, `accepted a token the reference refuses (${expected.code})`)
        assert.equal(result.error.code, expected.code, result.error.message)
        return
      }

      assert.ok(result.ok, `refused a token the reference accepts: ${result.ok ? '' : result.error.message}`)
      assert.deepEqual(result.value.header, expected.header)
      assert.deepEqual(result.value.payload, expected.payload)
      assert.equal(result.value.token, token.trim())
    }),
  ),
  fuzzProperty(
    'set: decodeSet accepts exactly the tokens whose claims the strict RFC 8417 shape check accepts',
    400,
    fc.property(nearValidToken, (token) => {
      const result = outcome('decodeSet', CLAIM_CODES, () => decodeSet(token))
      const expected = refDecode(token)
      if (!expected.ok) {
        assert.ok(!result.ok)
        return
      }

      const valid = refClaimsValid(expected.payload)
      assert.equal(result.ok, valid, result.ok ? 'accepted invalid claims' : `refused valid claims: ${result.error.message}`)
      if (!result.ok) assert.equal(result.error.code, 'ERR_SET_CLAIMS')
    }),
  ),
  fuzzProperty(
    'set: round trip (mintSet -> decodeSet -> same claims), unsigned',
    150,
    fc.asyncProperty(
      fc.record({
        aud: fc.option(fc.oneof(fc.webUrl(), fc.array(fc.webUrl(), {maxLength: 3, minLength: 2})), {nil: undefined}),
        events: fc.dictionary(fc.webUrl(), fc.dictionary(fc.string({maxLength: 8, minLength: 1}).filter((k) => k !== '__proto__'), fc.jsonValue({maxDepth: 3}), {maxKeys: 3}), {maxKeys: 2, minKeys: 1}),
        iat: fc.integer({max: 2_000_000_000, min: 0}),
        iss: fc.string({minLength: 1}),
        jti: fc.string({minLength: 1}),
        txn: fc.option(fc.string(), {nil: undefined}),
      }),
      async (template) => {
        const minted = await mintSet(template as SetTemplate, unsignedSigner())
        const result = outcome('decodeSet', [], () => decodeSet(minted.token))
        assert.ok(result.ok)
        assert.deepEqual(result.value.claims, JSON.parse(JSON.stringify(minted.claims)))
        assert.equal(result.value.claims.jti, template.jti)
        assert.deepEqual(result.value.header, {alg: 'none', typ: 'secevent+jwt'})
      },
    ),
  ),
  fuzzProperty(
    'set: extractTokens returns whitespace-separated tokens or the "sets" entries of a JSON document, nothing else',
    300,
    fc.property(
      fc.oneof(
        fc.array(tokenLikeString, {maxLength: 5}).map((tokens) => tokens.join(' \n')),
        fc.tuple(fc.array(fc.tuple(peerKey, fc.oneof(tokenLikeString.map((t) => JSON.stringify(t)), jsonScalarText, pollutionText)), {maxLength: 5}), fc.option(textMutation, {nil: undefined})).map(
          ([entries, mutate]) => {
            const text = `{"sets":${objectText(entries)}}`
            return mutate === undefined ? text : mutate(text)
          },
        ),
        hostileJsonText,
      ),
      (text) => {
        const result = outcome('extractTokens', ['ERR_MESSAGE_INVALID'], () => extractTokens(text))
        if (!result.ok) {
          assert.ok(text.trim().startsWith('{'), 'a plain token list was refused')
          return
        }

        result.value.forEach((entry, index) => assert.equal(entry.index, index))
        if (!text.trim().startsWith('{')) {
          const expected = text.trim() === '' ? [] : text.trim().split(/\s+/)
          assert.deepEqual(
            result.value.map((e) => e.token),
            expected,
          )
        } else {
          for (const entry of result.value) {
            assert.equal(typeof entry.key, 'string')
            if (entry.error !== undefined) assert.equal(entry.error.code, 'ERR_SET_MALFORMED')
            assert.ok(entry.key !== '__proto__', 'a __proto__ key reached the caller')
          }
        }
      },
    ),
  ),
  fuzzProperty(
    'verify: without keys, only documented codes; accepts only what decodeSet, typ, crit, alg and time checks accept',
    300,
    fc.asyncProperty(anyToken, fc.boolean(), async (token, allowUnsigned) => {
      const verifier = allowUnsigned ? unsignedVerifier : keylessVerifier
      const result = await outcomeAsync('verify', VERIFY_CODES, async () => verifier.verify(token))
      if (!result.ok) return
      assert.equal(result.value.verified, false, 'verified without a key')
      const ref = refDecode(token)
      assert.ok(ref.ok, 'accepted a token the reference decoder refuses')
      assert.ok(refClaimsValid(ref.payload), 'accepted invalid claims')
      const typ = ref.header.typ
      assert.ok(typeof typ === 'string' && ['secevent+jwt', 'application/secevent+jwt'].includes(typ.toLowerCase()), 'accepted a wrong typ')
      assert.equal(ref.header.crit, undefined, 'accepted a crit header')
      if (String(ref.header.alg).toLowerCase() === 'none') {
        assert.ok(allowUnsigned, 'accepted alg none without allowUnsigned')
        assert.equal(result.value.unsigned, true)
        assert.ok(/^[A-Za-z0-9_-]*\.[A-Za-z0-9_-]*\.$/.test(token.trim()), 'accepted alg none with a signature')
      }

      const {exp, iat, nbf} = ref.payload as {exp?: number; iat: number; nbf?: number}
      assert.ok(exp === undefined || exp >= NOW_SEC - 60, 'accepted an expired SET')
      assert.ok(iat <= NOW_SEC + 60 && (nbf === undefined || nbf <= NOW_SEC + 60), 'accepted a SET from the future')
    }),
  ),
  fuzzProperty(
    'verify: with keys, verified only for an untampered signature by a configured key over valid claims',
    250,
    fc.asyncProperty(signedClaims, fc.constantFrom('ES256', 'HS256', 'HS256-with-public-pem', 'unknown-kid', 'none'), tamper, async (claims, how, change) => {
      let token: string
      if (how === 'ES256') token = signSet(claims, ES_KEY)
      else if (how === 'HS256') token = signSet(claims, HS_KEY)
      else if (how === 'unknown-kid') token = signSet(claims, {...ES_KEY, kid: 'someone-else'})
      else if (how === 'none') token = `${encodeBase64url('{"alg":"none","typ":"secevent+jwt"}')}.${encodeBase64url(JSON.stringify(claims))}.`
      else token = signSet(claims, {alg: 'HS256', kid: 'fuzz-es', secret: Buffer.from(publicPem(ES_KEY))}) // key confusion
      const sent = change === undefined ? token : flipBit(token, change)
      const result = await outcomeAsync('verify', VERIFY_CODES, async () => keyedVerifier.verify(sent))
      const untampered = sent === token
      // What the receiver sees: `__proto__` members are dropped while parsing.
      claims = JSON.parse(JSON.stringify(claims), (key, value: unknown) => (key === '__proto__' ? undefined : value)) as Record<string, unknown>
      const expectedIssuerAudience = claims.iss === 'https://op.example' && (claims.aud === 'https://rp.example' || (Array.isArray(claims.aud) && claims.aud.includes('https://rp.example')))
      if (result.ok) {
        assert.equal(result.value.verified, true)
        assert.ok(untampered, 'a tampered token verified')
        assert.ok(how === 'ES256' || how === 'HS256', `verified a ${how} token`)
        assert.ok(refClaimsValid(claims), 'verified invalid claims')
        assert.ok(expectedIssuerAudience, 'verified a SET for another issuer or audience')
        return
      }

      if (how === 'none' && untampered) assert.ok(['ERR_SET_UNSIGNED', 'ERR_SET_MALFORMED', 'ERR_SET_SIGNATURE'].includes(result.error.code), result.error.code)
      if (how === 'HS256-with-public-pem' && untampered) assert.ok(!['ERR_SET_ISSUER', 'ERR_SET_AUDIENCE', 'ERR_SET_EXPIRED'].includes(result.error.code))
      if (untampered && (how === 'ES256' || how === 'HS256') && refClaimsValid(claims) && expectedIssuerAudience) {
        assert.ok(['ERR_SET_EXPIRED', 'ERR_SET_NOT_YET_VALID'].includes(result.error.code), `a good signature was refused: ${result.error.code} ${result.error.message}`)
      }
    }),
  ),
  fuzzProperty(
    'verify: a PEM key source and a JWKS source verify the same tokens the same way',
    80,
    fc.asyncProperty(signedClaims, tamper, async (claims, change) => {
      const pemVerifier = createVerifier({keys: [new StaticKeySource([verificationKeyFromPem(publicPem(ES_KEY), 'es.pem')])], now: () => NOW})
      const jwksVerifier = createVerifier({keys: [esSource], now: () => NOW})
      const token = signSet(claims, ES_KEY)
      const sent = change === undefined ? token : flipBit(token, change)
      const a = await outcomeAsync('verify (pem)', VERIFY_CODES, async () => pemVerifier.verify(sent))
      const b = await outcomeAsync('verify (jwks)', VERIFY_CODES, async () => jwksVerifier.verify(sent))
      assert.equal(a.ok, b.ok)
      // A changed kid is unknown to the JWKS but the PEM key has no kid (it matches any token).
      if (!a.ok && !b.ok && b.error.code !== 'ERR_SET_KID_UNKNOWN') assert.equal(a.error.code, b.error.code)
    }),
  ),
]
