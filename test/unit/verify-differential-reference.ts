/**
 * The jose-based reference verifier for the differential tests: the verifier as it was before the
 * node:crypto fast path (commit f4c334c, src/lib/verify.ts), every signature checked by jose's
 * compactVerify and every token decoded by decodeToken. Kept in the tests, never in src.
 */
import {compactVerify, errors as joseErrors} from 'jose'

import {PushpullError} from '../../src/lib/errors.js'
import {ASYMMETRIC_ALGORITHMS, type KeySource, keyFitsAlgorithm, type VerificationKey} from '../../src/lib/keys.js'
import {audiencesOf, type DecodedSet, decodeToken, DEFAULT_MAX_SET_BYTES, validateClaims} from '../../src/lib/set.js'
import {sanitizeText} from '../../src/lib/text.js'

/** Default clock tolerance: 60 seconds, applied to `exp`, `iat` and `nbf`. */
const DEFAULT_CLOCK_TOLERANCE_SEC = 60

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

const SET_TYPES = new Set(['secevent+jwt', 'application/secevent+jwt'])

function show(value: unknown): string {
  return sanitizeText(typeof value === 'string' ? value : JSON.stringify(value) ?? String(value), 200)
}

function list(values: readonly string[]): string {
  return values.map((v) => `"${v}"`).join(', ')
}

/** Map a jose (or WebCrypto) failure to our codes, keeping it as `cause`. */
function fromJose(error: unknown, alg: string, key: VerificationKey): PushpullError {
  if (error instanceof PushpullError) return error
  if (error instanceof joseErrors.JWSSignatureVerificationFailed) {
    return new PushpullError('ERR_SET_SIGNATURE', `the SET signature does not verify with the key from ${key.source}`, {cause: error})
  }

  if (error instanceof joseErrors.JOSEAlgNotAllowed || error instanceof joseErrors.JOSENotSupported || error instanceof TypeError) {
    return new PushpullError('ERR_SET_ALG_NOT_ALLOWED', `algorithm ${alg} cannot be used with the key from ${key.source}: ${(error as Error).message}`, {cause: error})
  }

  if (error instanceof joseErrors.JWSInvalid) {
    return new PushpullError('ERR_SET_MALFORMED', `the SET is not a valid JWS: ${(error as Error).message}`, {cause: error})
  }

  return new PushpullError('ERR_SET_SIGNATURE', `the SET signature could not be checked: ${(error as Error).message}`, {cause: error})
}

/** Build a verifier. Options are validated here, once. */
export function createReferenceVerifier(options: VerifierOptions = {}): SetVerifier {
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

    for (const name of ['iat', 'nbf'] as const) {
      const value = claims[name]
      if (value !== undefined && value > nowSec + tolerance) {
        throw new PushpullError('ERR_SET_NOT_YET_VALID', `the SET "${name}" ${new Date(value * 1000).toISOString()} is more than ${tolerance} s in the future`, {
          details: {jti: claims.jti},
        })
      }
    }
  }

  async function candidatesFor(alg: string, kid: string | undefined): Promise<VerificationKey[]> {
    const found = (await Promise.all(sources.map(async (s) => s.keysFor(kid)))).flat()
    if (found.length === 0) {
      throw new PushpullError('ERR_SET_KID_UNKNOWN', `no key with kid "${show(kid ?? '')}" in ${sources.map((s) => s.description).join(', ')}`, {
        details: {kid},
      })
    }

    const fitting = found.filter((k) => (k.alg === undefined || k.alg === alg) && keyFitsAlgorithm(k.key, alg))
    if (fitting.length === 0) {
      throw new PushpullError('ERR_SET_ALG_NOT_ALLOWED', `algorithm ${alg} does not fit the configured key${found.length > 1 ? 's' : ''} (${[...new Set(found.map((k) => k.source))].join(', ')})`)
    }

    return fitting
  }

  async function verify(input: string): Promise<VerifiedSet> {
    const decoded = decodeToken(input, {maxBytes})
    const {header, payload, ...rest} = decoded
    checkHeader(header)
    const {alg} = header
    if (alg.toLowerCase() === 'none') {
      if (!options.allowUnsigned) throw new PushpullError('ERR_SET_UNSIGNED', 'the SET is unsigned (alg "none") and unsigned SETs are not allowed')
      if (decoded.signature !== '') throw new PushpullError('ERR_SET_MALFORMED', 'an unsigned SET (alg "none") must have an empty signature')
      const claims = validateClaims(payload)
      checkClaims(claims)
      return {...rest, claims, header, unsigned: true, unverifiedReason: 'unsigned SET (alg "none") accepted by request', verified: false}
    }

    if ((hasKeys || explicitAlgorithms) && !algorithms.includes(alg)) {
      throw new PushpullError('ERR_SET_ALG_NOT_ALLOWED', `algorithm ${show(alg)} is not allowed; allowed: ${algorithms.join(', ')}`)
    }

    const claims = validateClaims(payload)
    if (!hasKeys) {
      checkClaims(claims)
      return {...rest, claims, header, unsigned: false, unverifiedReason: 'no verification key configured', verified: false}
    }

    if (decoded.signature === '') throw new PushpullError('ERR_SET_SIGNATURE', `the SET has alg ${show(alg)} but an empty signature`)
    const kid = typeof header.kid === 'string' ? header.kid : undefined
    const candidates = await candidatesFor(alg, kid)
    let failure: PushpullError | undefined
    for (const key of candidates) {
      try {
        await compactVerify(decoded.token, key.key, {algorithms: [alg]})
        checkClaims(claims)
        const bits = key.key.asymmetricKeyDetails?.modulusLength
        return {...rest, claims, header, key: {alg, bits, kid: key.kid, source: key.source}, unsigned: false, verified: true}
      } catch (error) {
        if (error instanceof PushpullError) throw error
        failure = fromJose(error, alg, key)
      }
    }

    throw failure ?? new PushpullError('ERR_INTERNAL', 'no candidate key was tried')
  }

  return {algorithms, hasKeys, verify}
}
