/**
 * The HS256 primitives of crypto-fast.ts: HMAC-SHA256 from precomputed pads with the one-shot
 * `crypto.hash`, and its `createHmac` fallback. Both must give createHmac's MAC for every key length
 * class (shorter than, equal to and longer than the 64-byte SHA-256 block) and every message length
 * class (inside one block, across the padding boundary, past the buffer's first size, past its
 * cap), and the encoded verifier built on either must give jose's verdict on every signature part.
 */
import {createHash, createHmac, createSecretKey} from 'node:crypto'

import fc from 'fast-check'
import {CompactSign, compactVerify} from 'jose'
import {describe, expect, it} from 'vitest'

import {createHmacSha256, createHs256EncodedVerifier, fastEncodedSignerFor, fastEncodedVerifierFor, fastPathCovers, fastSignerFor, fastVerifierFor, MAX_HMAC_SCRATCH_BYTES} from '../../src/lib/crypto-fast.js'

const IMPLEMENTATIONS = [
  ['crypto.hash', {oneShot: true}, 'one-shot-hash'],
  ['createHmac', {oneShot: false}, 'createHmac'],
] as const

/** Key lengths: one byte, a usual secret, one short of, exactly and one past the block, two blocks, longer. */
const KEY_LENGTHS = [1, 32, 63, 64, 65, 128, 200] as const

/** Deterministic key bytes of a given length (different for each length). */
function keyOf(length: number, seed = 0): Buffer {
  return Buffer.from(Array.from({length}, (_, i) => (i * 131 + length * 7 + seed * 29 + 5) % 256))
}

const ascii = (length: number, offset = 0): string => Array.from({length}, (_, i) => String.fromCodePoint(33 + ((i + offset) % 94))).join('')

const MESSAGES: [string, string][] = [
  ['empty', ''],
  ['one character', 'a'],
  ['55 characters (one padded block)', ascii(55)],
  ['56 characters (padding spills into a second block)', ascii(56)],
  ['64 characters (one full block)', ascii(64)],
  ['a typical signing input', `${Buffer.from('{"alg":"HS256","typ":"secevent+jwt","kid":"k1"}').toString('base64url')}.${Buffer.from(JSON.stringify({events: {e: {}}, iat: 1, iss: 'https://idp.example', jti: 'j'})).toString('base64url')}`],
  ['5000 characters (the message buffer grows)', ascii(5000, 3)],
  ['the message buffer cap exactly', ascii(MAX_HMAC_SCRATCH_BYTES, 1)],
  ['one past the message buffer cap (createHmac for that call)', ascii(MAX_HMAC_SCRATCH_BYTES + 1, 2)],
  ['characters beyond latin1 (low byte, as createHmac latin1 does)', 'ā€𝄞x'],
]

function reference(key: Buffer, message: string): Buffer {
  return createHmac('sha256', key).update(message, 'latin1').digest()
}

describe('createHmacSha256', () => {
  for (const [name, options, implementation] of IMPLEMENTATIONS) {
    it(`${name}: the MAC of createHmac for every key and message length class`, () => {
      for (const length of KEY_LENGTHS) {
        const key = keyOf(length)
        const hmac = createHmacSha256(key, options)
        expect(hmac.implementation).toBe(implementation)
        for (const [what, message] of MESSAGES) {
          const expected = reference(key, message)
          expect(hmac.bytes(message).equals(expected), `${length}-byte key, ${what}`).toBe(true)
          expect(hmac.encoded(message), `${length}-byte key, ${what}`).toBe(expected.toString('base64url'))
        }

        // After the long messages, a short one again (the buffer keeps the pad, not stale bytes).
        expect(hmac.encoded('a')).toBe(reference(key, 'a').toString('base64url'))
      }
    })

    it(`${name}: random keys (0 to 200 bytes) and messages give createHmac's MAC (fast-check)`, () => {
      fc.assert(
        fc.property(fc.uint8Array({maxLength: 200, size: 'max'}), fc.string({maxLength: 300, size: 'max', unit: 'binary'}), (keyBytes, message) => {
          const key = Buffer.from(keyBytes)
          expect(createHmacSha256(key, options).encoded(message)).toBe(reference(key, message).toString('base64url'))
        }),
        {numRuns: 300, seed: 424_242},
      )
    })
  }

  it('a longer key is hashed first (RFC 2104): a 65-byte key and its SHA-256 give the same MAC', () => {
    const long = keyOf(65)
    const hashed = createHash('sha256').update(long).digest()
    for (const [name, options] of IMPLEMENTATIONS) {
      expect(createHmacSha256(long, options).encoded('x'), name).toBe(createHmacSha256(hashed, options).encoded('x'))
      expect(createHmacSha256(long, options).encoded('x'), name).toBe(reference(long, 'x').toString('base64url'))
    }

    // A 64-byte key is used as it is (not hashed): its MAC differs from its hash's.
    const block = keyOf(64)
    expect(createHmacSha256(block).encoded('x')).not.toBe(createHmacSha256(createHash('sha256').update(block).digest()).encoded('x'))
  })

  it('keeps its own copy of the secret: changing the caller\'s buffer later changes nothing', () => {
    const key = keyOf(32)
    const expected = reference(key, 'message').toString('base64url')
    const hmac = createHmacSha256(key)
    key.fill(0)
    expect(hmac.encoded('message')).toBe(expected)
  })
})

// --- the encoded HS256 verifier against jose ----------------------------------------------------

const HEADER = {alg: 'HS256', kid: 'k1', typ: 'secevent+jwt'}
const PAYLOAD = new TextEncoder().encode(JSON.stringify({events: {e: {}}, iat: 1_760_000_000, iss: 'https://idp.example', jti: 'j-1'}))

/** Unused low bits of the last character set (the same bytes, a non-canonical text). */
function nonCanonical(part: string): string {
  const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_'
  const last = alphabet.indexOf(part.at(-1) as string)
  // 32 bytes in 43 characters: 2 unused bits.
  return part.slice(0, -1) + alphabet[last | 0b11]
}

function flip(part: string, index: number): string {
  const bytes = Buffer.from(part, 'base64url')
  const at = ((index % bytes.length) + bytes.length) % bytes.length
  bytes[at] = (bytes[at] ?? 0) ^ 0x80
  return bytes.toString('base64url')
}

/** Signature parts (all valid base64url, as the verifier's callers guarantee) for one good token. */
function signatureCases(good: string, otherKeyToken: string): [string, string][] {
  const signature = good.split('.')[2] as string
  const bytes = Buffer.from(signature, 'base64url')
  return [
    ['valid', signature],
    ['non-canonical last character (same bytes)', nonCanonical(signature)],
    ['first byte flipped', flip(signature, 0)],
    ['middle byte flipped', flip(signature, 16)],
    ['last byte flipped', flip(signature, -1)],
    ['one byte short', bytes.subarray(0, -1).toString('base64url')],
    ['one byte appended', Buffer.concat([bytes, Buffer.from([0])]).toString('base64url')],
    ['all zero', Buffer.alloc(32).toString('base64url')],
    ['another key\'s MAC', otherKeyToken.split('.')[2] as string],
    ['two characters', 'AA'],
  ]
}

async function joseAccepts(token: string, key: Buffer): Promise<boolean> {
  try {
    await compactVerify(token, createSecretKey(key), {algorithms: ['HS256']})
    return true
  } catch (error) {
    expect((error as {code?: string}).code).toBe('ERR_JWS_SIGNATURE_VERIFICATION_FAILED')
    return false
  }
}

describe('createHs256EncodedVerifier vs jose (secrets of 1, 32, 64, 65 and 200 bytes, both HMAC implementations)', () => {
  for (const length of [1, 32, 64, 65, 200]) {
    it(`${length}-byte secret`, async () => {
      const key = keyOf(length)
      const good = await new CompactSign(PAYLOAD).setProtectedHeader(HEADER).sign(createSecretKey(key))
      const other = await new CompactSign(PAYLOAD).setProtectedHeader(HEADER).sign(createSecretKey(keyOf(length, 1)))
      const signingInput = good.slice(0, good.lastIndexOf('.'))
      const verifiers = IMPLEMENTATIONS.map(([name, options]) => [name, createHs256EncodedVerifier(key, options)] as const)
      let accepted = 0
      for (const [what, signature] of signatureCases(good, other)) {
        const expected = await joseAccepts(`${signingInput}.${signature}`, key)
        if (expected) accepted++
        for (const [name, verifier] of verifiers) expect(verifier(signingInput, signature), `${name}, ${what}`).toBe(expected)
      }

      // valid and non-canonical-valid accepted, everything else rejected.
      expect(accepted).toBe(2)
      // The cached factories (what verify.ts and mint.ts use) agree too, and sign jose's bytes.
      const secret = createSecretKey(key)
      expect(fastPathCovers(secret, 'HS256', 'verify')).toBe(true)
      expect(fastEncodedVerifierFor(secret, 'HS256')?.(signingInput, good.split('.')[2] as string)).toBe(true)
      expect(fastVerifierFor(secret, 'HS256')?.(signingInput, Buffer.from(good.split('.')[2] as string, 'base64url'))).toBe(true)
      expect(fastVerifierFor(secret, 'HS256')?.(signingInput, Buffer.from(flip(good.split('.')[2] as string, 3), 'base64url'))).toBe(false)
      expect(fastVerifierFor(secret, 'HS256')?.(signingInput, Buffer.alloc(31))).toBe(false)
      expect(fastEncodedSignerFor(secret, 'HS256')?.(signingInput)).toBe(good.split('.')[2])
      expect(fastSignerFor(secret, 'HS256')?.(signingInput).toString('base64url')).toBe(good.split('.')[2])
    })
  }
})
