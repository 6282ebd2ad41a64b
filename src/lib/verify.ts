/**
 * Verifying SETs. Build a verifier once (keys + options) and call `verify(token)` per SET.
 *
 * Order of checks (cheap and key-free first): size, structure (ERR_SET_MALFORMED / ERR_SET_ENCRYPTED),
 * `typ`, `crit`, `alg: none`, algorithm allow-list, claim shapes, key lookup (`kid`), signature,
 * then issuer, audience and times.
 *
 * Signatures are checked with node:crypto directly (crypto-fast.ts: keys prepared once, no
 * WebCrypto job per SET) for every key that path covers, and with jose's compactVerify for the
 * rest. Both give the same verdicts and the same errors; test/unit/verify-differential*.test.ts
 * holds the proof against jose.
 */
import {isUtf8} from 'node:buffer'
import type {KeyObject} from 'node:crypto'

import type * as JoseModule from 'jose'

import {fastEncodedVerifierFor, fastVerifierFor} from './crypto-fast.js'
import {isPushpullError, PushpullError} from './errors.js'
import {DEFAULT_MAX_DEPTH, maxNestingDepth} from './json.js'
import {ASYMMETRIC_ALGORITHMS, type KeySource, keyFitsAlgorithm, StaticKeySource, type VerificationKey} from './keys.js'
import {audiencesOf, type DecodedSet, type DecodedToken, decodeToken, DEFAULT_MAX_SET_BYTES, type SetHeader, validateClaims} from './set.js'
import {sanitizeText} from './text.js'

/** Default clock tolerance: 60 seconds, applied to `exp`, `iat` and `nbf`. */
export const DEFAULT_CLOCK_TOLERANCE_SEC = 60

export interface VerifierOptions {
  /** Where keys come from. None: the verifier decodes and checks everything but the signature (`verified: false`). */
  keys?: readonly KeySource[]
  /**
   * Allowed `alg` values. Default: RS256, PS256, ES256, ES384, EdDSA, plus HS256 when a key source
   * holds a secret. Without keys, `alg` is only checked when this is given.
   */
  algorithms?: readonly string[]
  /** Expected issuer(s); `iss` must be one of them. */
  issuer?: string | readonly string[]
  /** Expected audience(s); `aud` must contain one of them (a missing `aud` fails). */
  audience?: string | readonly string[]
  /** Seconds of clock skew allowed for `exp`, `iat`, `nbf`. Default 60. */
  clockToleranceSec?: number
  /** Accept `alg: none` (returned with `verified: false, unsigned: true`). Default false. */
  allowUnsigned?: boolean
  /** Largest token in bytes, checked before any parsing or crypto. Default 64 KiB. */
  maxBytes?: number
  /** Clock in ms. Default Date.now. */
  now?: () => number
  /**
   * Where fast-path signature checks run (a worker-thread pool, src/lib/verify-pool.ts). Default:
   * in this thread. Only the signature check moves; every other check and every error stays here.
   */
  signatures?: SignatureOffload
}

/**
 * Checks a signature for a (key, alg) pair that `fastVerifierFor` covers, somewhere else: resolves
 * true or false exactly as the fast verifier returns; rejects with the primitive's error when it
 * threw (a signature mismatch, as in this thread), or with ERR_INTERNAL when the check could not
 * run at all (that error is passed on as it is).
 */
export interface SignatureOffload {
  check(key: KeyObject, alg: string, signingInput: string, signature: Buffer): Promise<boolean>
}

export interface VerifiedSet extends DecodedSet {
  /** True only when a configured key verified the signature. */
  verified: boolean
  /** True for an accepted `alg: none` SET. */
  unsigned: boolean
  /** Why `verified` is false ('no verification key configured', 'unsigned SET allowed'). */
  unverifiedReason?: string
  /** The key that verified the SET. */
  key?: {kid?: string; source: string; alg: string; bits?: number}
}

export interface SetVerifier {
  verify(token: string): Promise<VerifiedSet>
  /** True when keys are configured (so `verified` can be true). */
  readonly hasKeys: boolean
  /** The effective algorithm allow-list. */
  readonly algorithms: readonly string[]
}

/** Claims that must not lie in the future, checked in this order. */
const NOT_BEFORE_CLAIMS = ['iat', 'nbf'] as const
const SET_TYPES = new Set(['secevent+jwt', 'application/secevent+jwt'])
const BASE64URL = /^[A-Za-z0-9_-]*$/
/** Distinct protected headers remembered per verifier (a stream repeats one or a few). */
const HEADER_CACHE_SIZE = 64
/** Distinct (alg, kid) key lookups remembered per verifier when every key source is static. */
const CANDIDATE_CACHE_SIZE = 256

interface CachedHeader {
  header: Readonly<SetHeader>
  /** jose decodes the header with a fatal UTF-8 decoder; a header that is not UTF-8 fails there. */
  utf8: boolean
  /**
   * Set once this header has passed the header checks of this verifier (`typ`, `crit`, not
   * `alg: none`, `alg` allowed): they depend on nothing else, so they are not repeated.
   */
  passed?: boolean
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value)
}

const BRACKETS = ['{', '['] as const

/** True when `text` nests no deeper than the default limit (few brackets at all: no scan needed). */
function shallow(text: string): boolean {
  let brackets = 0
  for (const bracket of BRACKETS) {
    for (let at = text.indexOf(bracket); at >= 0; at = text.indexOf(bracket, at + 1)) {
      if (++brackets > DEFAULT_MAX_DEPTH) return maxNestingDepth(text, DEFAULT_MAX_DEPTH) <= DEFAULT_MAX_DEPTH
    }
  }

  return true
}

function isFlat(header: Record<string, unknown>): boolean {
  return Object.values(header).every((v) => v === null || typeof v !== 'object')
}

function show(value: unknown): string {
  return sanitizeText(typeof value === 'string' ? value : JSON.stringify(value) ?? String(value), 200)
}

function list(values: readonly string[]): string {
  return values.map((v) => `"${v}"`).join(', ')
}

type Jose = typeof JoseModule
let joseModule: Promise<Jose> | undefined
/** jose is loaded on first use: the fast path covers every key pushpull makes or loads by default. */
async function loadJose(): Promise<Jose> {
  joseModule ??= import('jose')
  return joseModule
}

function signatureMismatch(key: VerificationKey, cause?: unknown): PushpullError {
  return new PushpullError('ERR_SET_SIGNATURE', `the SET signature does not verify with the key from ${key.source}`, {cause})
}

/** What jose answers for a protected header that is not strict UTF-8 (its TextDecoder is fatal). */
function headerNotUtf8(): PushpullError {
  return new PushpullError('ERR_SET_MALFORMED', 'the SET is not a valid JWS: JWS Protected Header is invalid')
}

/** Map a jose (or WebCrypto) failure to our codes, keeping it as `cause`. */
function fromJose(joseErrors: Jose['errors'], error: unknown, alg: string, key: VerificationKey): PushpullError {
  if (error instanceof PushpullError) return error
  if (error instanceof joseErrors.JWSSignatureVerificationFailed) return signatureMismatch(key, error)

  if (error instanceof joseErrors.JOSEAlgNotAllowed || error instanceof joseErrors.JOSENotSupported || error instanceof TypeError) {
    return new PushpullError('ERR_SET_ALG_NOT_ALLOWED', `algorithm ${alg} cannot be used with the key from ${key.source}: ${(error as Error).message}`, {cause: error})
  }

  if (error instanceof joseErrors.JWSInvalid) {
    return new PushpullError('ERR_SET_MALFORMED', `the SET is not a valid JWS: ${(error as Error).message}`, {cause: error})
  }

  return new PushpullError('ERR_SET_SIGNATURE', `the SET signature could not be checked: ${(error as Error).message}`, {cause: error})
}

/** Build a verifier. Options are validated here, once. */
export function createVerifier(options: VerifierOptions = {}): SetVerifier {
  const sources = options.keys ?? []
  const hasKeys = sources.length > 0
  const explicitAlgorithms = options.algorithms !== undefined
  const algorithms: readonly string[] =
    options.algorithms ?? [...ASYMMETRIC_ALGORITHMS, ...(sources.some((s) => s.hasSecret) ? ['HS256'] : [])]
  if (explicitAlgorithms && algorithms.length === 0) throw new PushpullError('ERR_CONFIG', 'the algorithm allow-list is empty')
  if (algorithms.includes('none')) {
    throw new PushpullError('ERR_CONFIG', '"none" cannot be in the algorithm allow-list; allow unsigned SETs explicitly instead')
  }

  const issuers = options.issuer === undefined ? [] : typeof options.issuer === 'string' ? [options.issuer] : [...options.issuer]
  const audiences = options.audience === undefined ? [] : typeof options.audience === 'string' ? [options.audience] : [...options.audience]
  const tolerance = options.clockToleranceSec ?? DEFAULT_CLOCK_TOLERANCE_SEC
  if (!Number.isFinite(tolerance) || tolerance < 0) throw new PushpullError('ERR_CONFIG', 'the clock tolerance must be a non-negative number of seconds')
  const maxBytes = options.maxBytes ?? DEFAULT_MAX_SET_BYTES
  if (!Number.isInteger(maxBytes) || maxBytes <= 0) throw new PushpullError('ERR_CONFIG', 'the SET size limit must be a positive integer')
  const now = options.now ?? Date.now
  const offload = options.signatures

  function checkHeader(header: Record<string, unknown>): void {
    const {typ, crit} = header
    if (typ === undefined) throw new PushpullError('ERR_SET_TYP', 'the SET header has no "typ"; expected "secevent+jwt"')
    if (typeof typ !== 'string' || !SET_TYPES.has(typ.toLowerCase())) {
      throw new PushpullError('ERR_SET_TYP', `the SET header "typ" is "${show(typ)}", not "secevent+jwt"`)
    }

    if (crit !== undefined) {
      // No extension is understood, so any critical one is refused (RFC 7515 section 4.1.11).
      const names = Array.isArray(crit) ? crit.map(show).join(', ') : show(crit)
      throw new PushpullError('ERR_SET_CRIT', `the SET header marks parameters critical that pushpull does not understand: ${names}`)
    }
  }

  function checkClaims(claims: DecodedSet['claims']): void {
    if (issuers.length > 0 && !issuers.includes(claims.iss)) {
      throw new PushpullError('ERR_SET_ISSUER', `the SET issuer "${show(claims.iss)}" is not the expected ${list(issuers)}`, {details: {jti: claims.jti}})
    }

    if (audiences.length > 0) {
      const aud = audiencesOf(claims)
      if (aud.length === 0) {
        throw new PushpullError('ERR_SET_AUDIENCE', `the SET has no "aud"; expected ${list(audiences)}`, {details: {jti: claims.jti}})
      }

      if (!aud.some((a) => audiences.includes(a))) {
        throw new PushpullError('ERR_SET_AUDIENCE', `the SET audience ${show(aud.join(', '))} does not include the expected ${list(audiences)}`, {
          details: {jti: claims.jti},
        })
      }
    }

    const nowSec = now() / 1000
    if (claims.exp !== undefined && claims.exp < nowSec - tolerance) {
      throw new PushpullError('ERR_SET_EXPIRED', `the SET expired at ${new Date(claims.exp * 1000).toISOString()}`, {details: {jti: claims.jti}})
    }

    for (const name of NOT_BEFORE_CLAIMS) {
      const value = claims[name]
      if (value !== undefined && value > nowSec + tolerance) {
        throw new PushpullError('ERR_SET_NOT_YET_VALID', `the SET "${name}" ${new Date(value * 1000).toISOString()} is more than ${tolerance} s in the future`, {
          details: {jti: claims.jti},
        })
      }
    }
  }

  async function keysFor(kid: string | undefined): Promise<readonly VerificationKey[]> {
    // One source (the usual case) costs one await, not a Promise.all.
    if (sources.length === 1) return (sources[0] as KeySource).keysFor(kid)
    return (await Promise.all(sources.map(async (s) => s.keysFor(kid)))).flat()
  }

  // Decoding. `decodeQuick` gives exactly `decodeToken`'s result for a well-formed token whose
  // protected header was seen before, skipping the header parse and the prototype-safe JSON.parse
  // reviver (it hands anything containing "__proto__" or a backslash-u escape to `decodeToken`). Anything
  // unusual goes to `decodeToken`, so every error is decodeToken's own.
  const headers = new Map<string, CachedHeader>()

  function decodeAndRemember(input: string): DecodedToken {
    const decoded = decodeToken(input, {maxBytes})
    const headerPart = decoded.signingInput.slice(0, decoded.signingInput.indexOf('.'))
    if (!headers.has(headerPart) && isFlat(decoded.header)) {
      if (headers.size >= HEADER_CACHE_SIZE) headers.clear()
      headers.set(headerPart, {header: {...decoded.header}, utf8: isUtf8(Buffer.from(headerPart, 'base64url'))})
    }

    return decoded
  }

  // The header part seen last, compared in place: a stream repeats one header, and comparing it
  // costs less than hashing a fresh slice for the map lookup. Same entry as `headers` would give.
  let lastHeaderPart = ''
  let lastHeader: CachedHeader | undefined
  /** The remembered header `decodeQuick` just used (undefined: it took the full path). Read right after the call. */
  let quickHeader: CachedHeader | undefined

  function rememberedHeader(text: string, dot: number): CachedHeader | undefined {
    const headerPart = text.slice(0, dot)
    if (headerPart === lastHeaderPart) return lastHeader
    const found = headers.get(headerPart)
    if (found !== undefined) {
      lastHeaderPart = headerPart
      lastHeader = found
    }

    return found
  }

  let scratch = Buffer.alloc(0)

  function decodeQuick(input: string): DecodedToken {
    quickHeader = undefined
    if (typeof input !== 'string' || input.length > maxBytes) return decodeAndRemember(input)
    const dot1 = input.indexOf('.')
    const dot2 = dot1 < 0 ? -1 : input.indexOf('.', dot1 + 1)
    if (dot2 < 0 || input.includes('.', dot2 + 1)) return decodeAndRemember(input)
    const cached = rememberedHeader(input, dot1)
    const payloadPart = input.slice(dot1 + 1, dot2)
    const signature = input.slice(dot2 + 1)
    if (
      cached === undefined ||
      payloadPart === '' ||
      signature.length % 4 === 1 ||
      !BASE64URL.test(signature)
    ) {
      return decodeAndRemember(input)
    }

    // Re-encoding the decoded payload gives back the part only when the part is canonical
    // base64url (so it passes decodeToken's check too); anything else takes the full path.
    // Cheaper than a pattern test over the whole part.
    // Decoded into a buffer this verifier keeps (decodeQuick never awaits, so calls cannot overlap).
    const room = Math.ceil((payloadPart.length * 3) / 4)
    if (scratch.length < room) scratch = Buffer.allocUnsafe(Math.max(room, scratch.length * 2))
    const length = scratch.write(payloadPart, 0, 'base64url')
    if (scratch.toString('base64url', 0, length) !== payloadPart) return decodeAndRemember(input)
    const text = scratch.toString('utf8', 0, length)
    if (text.includes('__proto__') || text.includes('\\u') || !shallow(text)) return decodeAndRemember(input)
    let payload: unknown
    try {
      payload = JSON.parse(text)
    } catch {
      return decodeAndRemember(input)
    }

    if (!isPlainObject(payload)) return decodeAndRemember(input)
    quickHeader = cached
    return {header: {...cached.header}, payload, signature, signingInput: input.slice(0, dot2), token: input}
  }

  function headerIsUtf8(signingInput: string): boolean {
    const dot = signingInput.indexOf('.')
    return rememberedHeader(signingInput, dot)?.utf8 ?? isUtf8(Buffer.from(signingInput.slice(0, dot), 'base64url'))
  }

  // Static key sources never change, so (alg, kid) -> fitting keys is remembered (failures are not).
  const staticKeys = sources.every((s) => s instanceof StaticKeySource)
  // alg -> kid -> keys: nested, so a lookup hashes the header's own strings, never a new one.
  const candidateCache = new Map<string, Map<string | undefined, readonly VerificationKey[]>>()
  let candidateCount = 0

  function cachedCandidates(alg: string, kid: string | undefined): readonly VerificationKey[] | undefined {
    return candidateCache.get(alg)?.get(kid)
  }

  async function candidatesFor(alg: string, kid: string | undefined): Promise<readonly VerificationKey[]> {
    if (!staticKeys) return lookUpCandidates(alg, kid)
    const found = await lookUpCandidates(alg, kid)
    if (candidateCount >= CANDIDATE_CACHE_SIZE) {
      candidateCache.clear()
      candidateCount = 0
    }

    let byKid = candidateCache.get(alg)
    if (byKid === undefined) {
      byKid = new Map()
      candidateCache.set(alg, byKid)
    }

    if (!byKid.has(kid)) candidateCount++
    byKid.set(kid, found)
    return found
  }

  async function lookUpCandidates(alg: string, kid: string | undefined): Promise<readonly VerificationKey[]> {
    const found = await keysFor(kid)
    if (found.length === 0) {
      throw new PushpullError('ERR_SET_KID_UNKNOWN', `no key with kid "${show(kid ?? '')}" in ${sources.map((s) => s.description).join(', ')}`, {
        details: {kid},
      })
    }

    // The usual case: one key that fits, returned as it is.
    if (found.length === 1 && (found[0]?.alg === undefined || found[0].alg === alg) && keyFitsAlgorithm((found[0] as VerificationKey).key, alg)) return found
    const fitting = found.filter((k) => (k.alg === undefined || k.alg === alg) && keyFitsAlgorithm(k.key, alg))
    if (fitting.length === 0) {
      throw new PushpullError('ERR_SET_ALG_NOT_ALLOWED', `algorithm ${alg} does not fit the configured key${found.length > 1 ? 's' : ''} (${[...new Set(found.map((k) => k.source))].join(', ')})`)
    }

    return fitting
  }

  /** An `alg: none` SET: accepted only when unsigned SETs are allowed and the signature is empty. */
  function acceptUnsigned(decoded: DecodedToken): VerifiedSet {
    if (!options.allowUnsigned) throw new PushpullError('ERR_SET_UNSIGNED', 'the SET is unsigned (alg "none") and unsigned SETs are not allowed')
    if (decoded.signature !== '') throw new PushpullError('ERR_SET_MALFORMED', 'an unsigned SET (alg "none") must have an empty signature')
    const claims = validateClaims(decoded.payload)
    checkClaims(claims)
    const {header, signature, signingInput, token} = decoded
    return {claims, header, signature, signingInput, token, unsigned: true, unverifiedReason: 'unsigned SET (alg "none") accepted by request', verified: false}
  }

  async function verify(input: string): Promise<VerifiedSet> {
    const decoded = decodeQuick(input)
    const cachedHeader = quickHeader
    const {header, payload} = decoded
    const {alg} = header
    if (cachedHeader?.passed !== true) {
      checkHeader(header)
      if (alg.toLowerCase() === 'none') return acceptUnsigned(decoded)
      if ((hasKeys || explicitAlgorithms) && !algorithms.includes(alg)) {
        throw new PushpullError('ERR_SET_ALG_NOT_ALLOWED', `algorithm ${show(alg)} is not allowed; allowed: ${algorithms.join(', ')}`)
      }

      if (cachedHeader !== undefined) cachedHeader.passed = true
    }

    const claims = validateClaims(payload)
    if (!hasKeys) {
      checkClaims(claims)
      const {signature, signingInput, token} = decoded
      return {claims, header, signature, signingInput, token, unsigned: false, unverifiedReason: 'no verification key configured', verified: false}
    }

    if (decoded.signature === '') throw new PushpullError('ERR_SET_SIGNATURE', `the SET has alg ${show(alg)} but an empty signature`)
    const kid = typeof header.kid === 'string' ? header.kid : undefined
    // No await on the hot path: a remembered lookup is used synchronously.
    const candidates = cachedCandidates(alg, kid) ?? (await candidatesFor(alg, kid))
    let failure: PushpullError | undefined
    let signature: Buffer | undefined
    let headerUtf8 = cachedHeader?.utf8
    for (const key of candidates) {
      // In this thread the check takes the signature part as it is (no decoding when it matches);
      // a pool takes the decoded bytes. Both cover exactly the keys `fastPathCovers` does.
      const local = offload === undefined ? fastEncodedVerifierFor(key.key, alg) : undefined
      if (local !== undefined || (offload !== undefined && fastVerifierFor(key.key, alg) !== undefined)) {
        // jose decodes the protected header with a fatal UTF-8 decoder before anything else.
        headerUtf8 ??= headerIsUtf8(decoded.signingInput)
        if (!headerUtf8) {
          failure = headerNotUtf8()
          continue
        }

        let ok = false
        try {
          if (local === undefined) {
            signature ??= Buffer.from(decoded.signature, 'base64url')
            ok = await (offload as SignatureOffload).check(key.key, alg, decoded.signingInput, signature)
          } else {
            ok = local(decoded.signingInput, decoded.signature)
          }
        } catch (error) {
          // The offload itself failed (a worker died): not a verdict about this SET.
          if (isPushpullError(error, 'ERR_INTERNAL')) throw error
          // WebCrypto throwing inside verify is a verification failure for jose too.
          failure = signatureMismatch(key, error)
          continue
        }

        if (!ok) {
          failure = signatureMismatch(key)
          continue
        }
      } else {
        const jose = await loadJose()
        try {
          await jose.compactVerify(decoded.token, key.key, {algorithms: [alg]})
        } catch (error) {
          failure = fromJose(jose.errors, error, alg, key)
          continue
        }
      }

      checkClaims(claims)
      const bits = key.key.asymmetricKeyDetails?.modulusLength
      const {signature: signaturePart, signingInput, token} = decoded
      return {claims, header, key: {alg, bits, kid: key.kid, source: key.source}, signature: signaturePart, signingInput, token, unsigned: false, verified: true}
    }

    throw failure ?? new PushpullError('ERR_INTERNAL', 'no candidate key was tried')
  }

  return {algorithms, hasKeys, verify}
}
