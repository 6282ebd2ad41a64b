/**
 * A tiny, independent SET signer and decoder for the spec peers (node:crypto only).
 *
 * Written from RFC 7515 (compact JWS), RFC 7518 (ES256 = ECDSA P-256 SHA-256 with the raw
 * r||s signature; HS256 = HMAC SHA-256) and RFC 8417 (a SET is a JWT with `typ: secevent+jwt`).
 * It deliberately shares no code with src/, so tests of the pushpull library are not circular.
 */
import {createHmac, createPrivateKey, createPublicKey, generateKeyPairSync, randomBytes, randomUUID, sign, timingSafeEqual, verify, type JsonWebKey, type KeyObject} from 'node:crypto'

export type SetAlg = 'ES256' | 'HS256'

/** A signing key for the peers. `secret` for HS256; `privateKey`/`publicKey` for ES256. */
export interface PeerSigningKey {
  alg: SetAlg
  kid: string
  privateKey?: KeyObject
  publicKey?: KeyObject
  secret?: Buffer
}

export interface SignOptions {
  /** Header `typ`; default `secevent+jwt`. `null` leaves `typ` out. */
  typ?: string | null
  /** Extra protected-header members (for example a bogus `crit`). */
  header?: Record<string, unknown>
}

export interface DecodedSet {
  header: Record<string, unknown>
  claims: Record<string, unknown>
  signingInput: string
  signature: Buffer
}

/** JSON.parse that drops `__proto__` keys, so peer-supplied keys can never reach a prototype. */
export function parseJsonSafe(text: string): unknown {
  return JSON.parse(text, (key, value: unknown) => (key === '__proto__' ? undefined : value))
}

export function base64urlEncode(data: Buffer | string): string {
  return (typeof data === 'string' ? Buffer.from(data, 'utf8') : data).toString('base64url')
}

const BASE64URL = /^[A-Za-z0-9_-]*$/

export function base64urlDecode(text: string): Buffer {
  if (!BASE64URL.test(text) || text.length % 4 === 1) throw new Error('not base64url')
  return Buffer.from(text, 'base64url')
}

/** Generate a fresh ES256 (P-256) or HS256 (32-byte secret) key. */
export function generatePeerKey(alg: SetAlg = 'ES256', kid = `peer-${randomUUID().slice(0, 8)}`): PeerSigningKey {
  if (alg === 'HS256') return {alg, kid, secret: randomBytes(32)}
  const {privateKey, publicKey} = generateKeyPairSync('ec', {namedCurve: 'P-256'})
  return {alg, kid, privateKey, publicKey}
}

/** The public JWKS (RFC 7517) for ES256 keys; HS256 keys are left out (they are secrets). */
export function publicJwks(keys: PeerSigningKey[]): {keys: Record<string, unknown>[]} {
  return {
    keys: keys
      .filter((key) => key.alg === 'ES256' && key.publicKey)
      .map((key) => ({...(key.publicKey as KeyObject).export({format: 'jwk'}), alg: 'ES256', kid: key.kid, use: 'sig'})),
  }
}

/** The private JWK of an ES256 key (for handing to code under test as a signing key). */
export function privateJwk(key: PeerSigningKey): Record<string, unknown> {
  if (!key.privateKey) throw new Error('not an asymmetric key')
  return {...key.privateKey.export({format: 'jwk'}), alg: 'ES256', kid: key.kid}
}

/** The ES256 private key as PKCS#8 PEM. */
export function privatePem(key: PeerSigningKey): string {
  if (!key.privateKey) throw new Error('not an asymmetric key')
  return key.privateKey.export({format: 'pem', type: 'pkcs8'}).toString()
}

/** The ES256 public key as SPKI PEM. */
export function publicPem(key: PeerSigningKey): string {
  if (!key.publicKey) throw new Error('not an asymmetric key')
  return key.publicKey.export({format: 'pem', type: 'spki'}).toString()
}

/** Import an ES256 key from a private JWK or PEM (for SETs minted by the code under test). */
export function importEs256(privateKeyPemOrJwk: string | Record<string, unknown>, kid = 'imported'): PeerSigningKey {
  const privateKey = typeof privateKeyPemOrJwk === 'string'
    ? createPrivateKey(privateKeyPemOrJwk)
    : createPrivateKey({format: 'jwk', key: privateKeyPemOrJwk as JsonWebKey})
  return {alg: 'ES256', kid, privateKey, publicKey: createPublicKey(privateKey)}
}

function signBytes(input: string, key: PeerSigningKey): Buffer {
  if (key.alg === 'HS256') {
    if (!key.secret) throw new Error('HS256 key without a secret')
    return createHmac('sha256', key.secret).update(input).digest()
  }

  if (!key.privateKey) throw new Error('ES256 key without a private key')
  return sign('sha256', Buffer.from(input), {dsaEncoding: 'ieee-p1363', key: key.privateKey})
}

/** Sign `claims` as a compact JWS SET. */
export function signSet(claims: Record<string, unknown>, key: PeerSigningKey, options: SignOptions = {}): string {
  const header: Record<string, unknown> = {alg: key.alg, kid: key.kid, ...options.header}
  const typ = options.typ === undefined ? 'secevent+jwt' : options.typ
  if (typ !== null) header.typ = typ
  const input = `${base64urlEncode(JSON.stringify(header))}.${base64urlEncode(JSON.stringify(claims))}`
  return `${input}.${base64urlEncode(signBytes(input, key))}`
}

/** An unsigned (`alg: none`) SET, for refusal tests. */
export function unsignedSet(claims: Record<string, unknown>): string {
  return `${base64urlEncode(JSON.stringify({alg: 'none', typ: 'secevent+jwt'}))}.${base64urlEncode(JSON.stringify(claims))}.`
}

let counter = 0

export interface SetClaimsInput {
  iss?: string
  aud?: string | string[]
  jti?: string
  /** Seconds since the epoch; default now. */
  iat?: number
  events?: Record<string, Record<string, unknown>>
  sub_id?: Record<string, unknown>
  [member: string]: unknown
}

/** SSF-shaped claims (one CAEP session-revoked event, an email subject) with overridable members. */
export function makeSetClaims(input: SetClaimsInput = {}): Record<string, unknown> {
  counter += 1
  return {
    iss: 'https://peer.example',
    aud: 'https://receiver.example',
    iat: Math.floor(Date.now() / 1000),
    jti: `peer-${process.pid}-${counter}-${randomUUID().slice(0, 8)}`,
    sub_id: {format: 'email', email: 'user@example.com'},
    events: {'https://schemas.openid.net/secevent/caep/event-type/session-revoked': {event_timestamp: Math.floor(Date.now() / 1000)}},
    ...input,
  }
}

/** Mint `count` signed SETs, returned as `{jti, token}` pairs ready for `queue()`. `input.jti` is a prefix. */
export function mintSets(count: number, key: PeerSigningKey, input: SetClaimsInput = {}): {jti: string; token: string}[] {
  const out: {jti: string; token: string}[] = []
  for (let i = 0; i < count; i++) {
    const {jti: prefix, ...rest} = input
    const claims = makeSetClaims(prefix === undefined ? rest : {...rest, jti: `${prefix}-${i}`})
    out.push({jti: String(claims.jti), token: signSet(claims, key)})
  }

  return out
}

/** Decode a compact JWS without verifying it. Throws a plain Error when it is not one. */
export function decodeSetUnverified(token: string): DecodedSet {
  const parts = token.split('.')
  if (parts.length === 5) throw new Error('encrypted (JWE) token')
  if (parts.length !== 3) throw new Error('not a compact JWS')
  const [h, p, s] = parts as [string, string, string]
  const header = parseJsonSafe(base64urlDecode(h).toString('utf8'))
  const claims = parseJsonSafe(base64urlDecode(p).toString('utf8'))
  if (!isPlainObject(header)) throw new Error('header is not a JSON object')
  if (!isPlainObject(claims)) throw new Error('payload is not a JSON object')
  return {claims, header, signature: base64urlDecode(s), signingInput: `${h}.${p}`}
}

/** Verify the signature of a compact JWS SET with one of `keys` (matched by `alg`, and `kid` when present). */
export function verifySetSignature(token: string, keys: PeerSigningKey[]): boolean {
  let decoded: DecodedSet
  try {
    decoded = decodeSetUnverified(token)
  } catch {
    return false
  }

  const {alg, kid} = decoded.header
  for (const key of keys) {
    if (key.alg !== alg) continue
    if (typeof kid === 'string' && kid !== key.kid) continue
    if (key.alg === 'HS256' && key.secret) {
      const expected = createHmac('sha256', key.secret).update(decoded.signingInput).digest()
      if (expected.length === decoded.signature.length && timingSafeEqual(expected, decoded.signature)) return true
    } else if (key.alg === 'ES256' && key.publicKey) {
      if (decoded.signature.length !== 64) continue
      if (verify('sha256', Buffer.from(decoded.signingInput), {dsaEncoding: 'ieee-p1363', key: key.publicKey}, decoded.signature)) return true
    }
  }

  return false
}

export function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value)
}
