/**
 * Building and signing SETs. The signer's key is a KeyObject. Keys that crypto-fast.ts covers
 * (every key pushpull generates or reads by default) are signed synchronously with node:crypto,
 * the key prepared once; anything else goes through jose's CompactSign, loaded on first use.
 */

import {encodeBase64url} from './base64url.js'
import {fastEncodedSignerFor} from './crypto-fast.js'
import {PushpullError} from './errors.js'
import type {Signer} from './keys.js'
import {type SetClaims, type SetHeader, validateClaims} from './set.js'
import {uuidV7} from './uuid.js'

/** What a SET is built from. `jti` and `iat` are filled in when absent. */
export interface SetTemplate {
  iss: string
  aud?: string | readonly string[]
  jti?: string
  /** Seconds since the epoch; default now. */
  iat?: number
  txn?: string
  toe?: number
  sub_id?: Record<string, unknown>
  /** Exactly the events of the SET: URI -> payload object. */
  events: Record<string, Record<string, unknown>>
  /** Further claims, copied as they are (they never override the members above). */
  extra?: Record<string, unknown>
}

export interface MintOptions {
  /** Clock in ms. Default Date.now. */
  now?: () => number
  /** jti source. Default a time-ordered UUID version 7 (src/lib/uuid.ts) from `now`. */
  randomUUID?: () => string
}

export interface MintedSet {
  token: string
  header: SetHeader
  claims: SetClaims
}

const encoder = new TextEncoder()

/** The encoded protected header of the last (alg, kid) signed: one signer signs many SETs. */
let lastHeader: {alg: string; kid: string | undefined; encoded: string} | undefined

/**
 * The claims JSON is encoded to base64url through this buffer (no Buffer per SET); it grows to hold
 * the largest SET minted so far, up to `MAX_ENCODE_SCRATCH_BYTES`.
 */
let encodeScratch = Buffer.alloc(0)
const MAX_ENCODE_SCRATCH_BYTES = 256 * 1024

function encodeClaims(json: string): string {
  // UTF-8 takes at most 3 bytes per UTF-16 unit.
  const most = json.length * 3
  if (most > encodeScratch.length) {
    if (most > MAX_ENCODE_SCRATCH_BYTES) return encodeBase64url(json)
    encodeScratch = Buffer.alloc(Math.max(most, 4096))
  }

  return encodeScratch.toString('base64url', 0, encodeScratch.write(json, 0, 'utf8'))
}

function encodedHeader(header: SetHeader): string {
  const {alg, kid} = header
  if (lastHeader?.alg === alg && lastHeader.kid === kid) return lastHeader.encoded
  const encoded = encodeBase64url(JSON.stringify(header))
  lastHeader = {alg, encoded, kid}
  return encoded
}

/** Build the claims of a SET from a template (no signing). Throws ERR_USAGE naming what is wrong. */
export function buildClaims(template: SetTemplate, options: MintOptions = {}): SetClaims {
  const now = options.now ?? Date.now
  const uuid = options.randomUUID ?? (() => uuidV7(now()))
  const claims: Record<string, unknown> = {...template.extra}
  claims.iss = template.iss
  claims.iat = template.iat ?? Math.floor(now() / 1000)
  claims.jti = template.jti ?? uuid()
  if (template.aud !== undefined) {
    const aud = typeof template.aud === 'string' ? template.aud : [...template.aud]
    claims.aud = Array.isArray(aud) && aud.length === 1 ? aud[0] : aud
  }

  if (template.txn !== undefined) claims.txn = template.txn
  if (template.toe !== undefined) claims.toe = template.toe
  if (template.sub_id !== undefined) claims.sub_id = template.sub_id
  claims.events = template.events
  try {
    return validateClaims(claims)
  } catch (error) {
    throw new PushpullError('ERR_USAGE', `cannot mint this SET: ${(error as Error).message}`, {cause: error})
  }
}

/**
 * Build and sign one SET: header `{typ: "secevent+jwt", alg, kid}`. Unsigned (`alg: none`, empty
 * signature) only with a signer made by `unsignedSigner()`.
 */
export async function mintSet(template: SetTemplate, signer: Signer, options: MintOptions = {}): Promise<MintedSet> {
  const claims = buildClaims(template, options)
  const header: SetHeader = signer.kid === undefined ? {alg: signer.alg, typ: 'secevent+jwt'} : {alg: signer.alg, typ: 'secevent+jwt', kid: signer.kid}
  const json = JSON.stringify(claims)
  if (signer.alg === 'none') {
    return {claims, header, token: `${encodeBase64url(JSON.stringify(header))}.${encodeBase64url(json)}.`}
  }

  if (signer.key === undefined) throw new PushpullError('ERR_KEY_INVALID', `the ${signer.alg} signer has no key`)
  const fast = fastEncodedSignerFor(signer.key, signer.alg)
  if (fast) {
    const signingInput = `${encodedHeader(header)}.${encodeClaims(json)}`
    try {
      return {claims, header, token: `${signingInput}.${fast(signingInput)}`}
    } catch (error) {
      throw new PushpullError('ERR_KEY_INVALID', `signing with ${signer.alg} failed: ${(error as Error).message}`, {cause: error})
    }
  }

  try {
    const {CompactSign} = await import('jose')
    const token = await new CompactSign(encoder.encode(json)).setProtectedHeader(header as {alg: string; typ: string; kid?: string}).sign(signer.key)
    return {claims, header, token}
  } catch (error) {
    throw new PushpullError('ERR_KEY_INVALID', `signing with ${signer.alg} failed: ${(error as Error).message}`, {cause: error})
  }
}
