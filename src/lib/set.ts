/**
 * Decoding Security Event Tokens (RFC 8417) WITHOUT verifying them, and checking the shape of
 * their claims. Verification lives in verify.ts; this module never touches a key.
 */
import {decodeBase64url} from './base64url.js'
import {PushpullError} from './errors.js'
import {DEFAULT_MAX_DEPTH, maxNestingDepth} from './json.js'
import {sanitizeText} from './text.js'

/** Default per-SET size limit (protocol.md section 4.5): 64 KiB. */
export const DEFAULT_MAX_SET_BYTES = 64 * 1024

/** The JOSE header of a SET. Only `alg` is guaranteed by `decodeToken`. */
export interface SetHeader {
  alg: string
  typ?: string
  kid?: string
  crit?: unknown
  [member: string]: unknown
}

/** RFC 9493 subject identifier (as it appears in a SET; checked by subject.ts). */
export type SetSubject = {format?: string} & Record<string, unknown>

/** The claims of a SET after `validateClaims`. Unknown claims are kept. */
export interface SetClaims {
  iss: string
  iat: number
  jti: string
  aud?: string | string[]
  events: Record<string, Record<string, unknown>>
  txn?: string
  toe?: number
  sub_id?: SetSubject
  exp?: number
  nbf?: number
  [claim: string]: unknown
}

/** A compact JWS split and parsed, claims not yet checked. */
export interface DecodedToken {
  /** The token exactly as verified (surrounding whitespace removed). */
  token: string
  header: SetHeader
  payload: Record<string, unknown>
  /** The base64url signature part ('' for an unsigned SET). */
  signature: string
  /** `<header>.<payload>`, the bytes the signature covers. */
  signingInput: string
}

/** A decoded SET whose claims have the required shape. */
export interface DecodedSet extends Omit<DecodedToken, 'payload'> {
  claims: SetClaims
}

export interface DecodeOptions {
  /** Largest token accepted, in bytes; checked before any parsing. Default 64 KiB. */
  maxBytes?: number
  /**
   * Deepest JSON nesting accepted in the header and in the payload (the top-level object is depth
   * 1). Default 32. Checked by a linear scan before parsing, so code that walks the claims later
   * (subject display, lint, `--json`) never meets a structure deep enough to exhaust the stack.
   */
  maxDepth?: number
}

/**
 * JSON.parse that never lets a peer key reach a prototype: `__proto__` members are dropped
 * (JSON.parse itself defines them as own properties, but later spreads or assigns could not).
 */
export function parseJsonSafely(text: string): unknown {
  return JSON.parse(text, (key, value: unknown) => (key === '__proto__' ? undefined : value))
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value)
}

function parsePart(part: string, name: 'header' | 'payload', maxDepth: number): Record<string, unknown> {
  const bytes = decodeBase64url(part)
  if (bytes === undefined || part === '') {
    throw new PushpullError('ERR_SET_MALFORMED', `the SET ${name} is not valid base64url`)
  }

  const text = bytes.toString('utf8')
  if (maxNestingDepth(text, maxDepth) > maxDepth) {
    throw new PushpullError('ERR_SET_MALFORMED', `the SET ${name} is nested deeper than the limit of ${maxDepth}`, {details: {limit: maxDepth}})
  }

  let value: unknown
  try {
    // JSON.parse tolerates whitespace and newlines around and inside the JSON (RFC 8935's example
    // header ends with a newline).
    value = parseJsonSafely(text)
  } catch (error) {
    throw new PushpullError('ERR_SET_MALFORMED', `the SET ${name} is not JSON`, {cause: error})
  }

  if (!isPlainObject(value)) {
    throw new PushpullError('ERR_SET_MALFORMED', `the SET ${name} is not a JSON object`)
  }

  return value
}

/**
 * Split and parse a compact SET without verifying it. Refuses tokens over `maxBytes` before any
 * parsing, 5-part JWEs (ERR_SET_ENCRYPTED), and anything that is not a 3-part JWS whose header and
 * payload are base64url JSON objects (ERR_SET_MALFORMED naming the part).
 */
export function decodeToken(input: string, options: DecodeOptions = {}): DecodedToken {
  const maxBytes = options.maxBytes ?? DEFAULT_MAX_SET_BYTES
  const maxDepth = options.maxDepth ?? DEFAULT_MAX_DEPTH
  if (!Number.isSafeInteger(maxDepth) || maxDepth < 1) {
    throw new PushpullError('ERR_CONFIG', `maxDepth must be a positive integer, got ${String(maxDepth)}`)
  }

  if (typeof input !== 'string') throw new PushpullError('ERR_SET_MALFORMED', 'the SET is not a string')
  if (Buffer.byteLength(input) > maxBytes) {
    throw new PushpullError('ERR_SET_TOO_LARGE', `the SET is larger than the ${maxBytes}-byte limit`, {
      details: {limit: maxBytes},
    })
  }

  const token = input.trim()
  if (token === '') throw new PushpullError('ERR_SET_MALFORMED', 'the SET is empty')
  const parts = token.split('.')
  if (parts.length === 5) {
    throw new PushpullError('ERR_SET_ENCRYPTED', 'the SET is encrypted (a 5-part JWE); encrypted SETs need a decryption key')
  }

  if (parts.length !== 3) {
    throw new PushpullError('ERR_SET_MALFORMED', `the SET is not a compact JWS: expected 3 dot-separated parts, found ${parts.length}`)
  }

  const [headerPart, payloadPart, signature] = parts as [string, string, string]
  const header = parsePart(headerPart, 'header', maxDepth)
  const payload = parsePart(payloadPart, 'payload', maxDepth)
  if (typeof header.alg !== 'string' || header.alg === '') {
    throw new PushpullError('ERR_SET_MALFORMED', 'the SET header has no "alg" string')
  }

  if (signature !== '' && decodeBase64url(signature) === undefined) {
    throw new PushpullError('ERR_SET_MALFORMED', 'the SET signature is not valid base64url')
  }

  return {header: header as SetHeader, payload, signature, signingInput: `${headerPart}.${payloadPart}`, token}
}

/**
 * Largest NumericDate magnitude accepted, in seconds: the range of a JavaScript Date (±8.64e15
 * ms). Beyond it `new Date(value * 1000)` is invalid and formatting it throws a RangeError.
 */
export const MAX_NUMERIC_DATE = 8.64e12

function claimsError(message: string): PushpullError {
  return new PushpullError('ERR_SET_CLAIMS', message)
}

/**
 * Check the claim shapes RFC 8417 requires and return the claims typed. Throws ERR_SET_CLAIMS.
 * NumericDates (`iat`, `toe`, `exp`, `nbf`) must be finite and within ±MAX_NUMERIC_DATE seconds.
 */
export function validateClaims(payload: Record<string, unknown>): SetClaims {
  const {iss, iat, jti, aud, events, txn, toe, sub_id: subId, exp, nbf} = payload
  if (typeof iss !== 'string' || iss === '') throw claimsError('the SET has no "iss" string')
  if (typeof iat !== 'number' || !Number.isFinite(iat)) throw claimsError('the SET has no numeric "iat"')
  if (Math.abs(iat) > MAX_NUMERIC_DATE) throw claimsError(`the SET "iat" is outside the representable range of dates (±${MAX_NUMERIC_DATE} s)`)
  if (jti === undefined) throw claimsError('the SET has no "jti"')
  if (typeof jti !== 'string') throw claimsError('the SET "jti" is not a string')
  if (jti === '') throw claimsError('the SET "jti" is empty')
  if (aud !== undefined) {
    const ok = typeof aud === 'string' || (Array.isArray(aud) && aud.every((a) => typeof a === 'string'))
    if (!ok) throw claimsError('the SET "aud" is neither a string nor an array of strings')
  }

  if (events === undefined) throw claimsError('the SET has no "events" claim')
  if (!isPlainObject(events)) throw claimsError('the SET "events" claim is not a JSON object')
  const uris = Object.keys(events)
  if (uris.length === 0) throw claimsError('the SET "events" claim is empty; a SET carries at least one event')
  for (const uri of uris) {
    if (!isPlainObject(events[uri])) throw claimsError(`the SET event ${JSON.stringify(sanitizeText(uri, 200))} is not a JSON object`)
  }

  if (txn !== undefined && typeof txn !== 'string') throw claimsError('the SET "txn" is not a string')
  for (const [name, value] of [['toe', toe], ['exp', exp], ['nbf', nbf]] as const) {
    if (value !== undefined && (typeof value !== 'number' || !Number.isFinite(value))) {
      throw claimsError(`the SET "${name}" is not a number`)
    }

    if (value !== undefined && Math.abs(value) > MAX_NUMERIC_DATE) {
      throw claimsError(`the SET "${name}" is outside the representable range of dates (±${MAX_NUMERIC_DATE} s)`)
    }
  }

  if (subId !== undefined && !isPlainObject(subId)) throw claimsError('the SET "sub_id" is not a JSON object')
  return payload as SetClaims
}

/** `decodeToken` + `validateClaims`. */
export function decodeSet(token: string, options: DecodeOptions = {}): DecodedSet {
  const {payload, ...rest} = decodeToken(token, options)
  return {...rest, claims: validateClaims(payload)}
}

/** One token found in a text: from a token list, or from a JSON document's `sets` map. */
export interface TokenEntry {
  /** Position in the input, from 0. */
  index: number
  /** The token ('' when the `sets` value was not a string: see `error`). */
  token: string
  /** The `sets` map key (must equal the SET's `jti`); undefined for plain token lists. */
  key?: string
  /** Set when the entry cannot be a token at all (a `sets` value that is not a string). */
  error?: PushpullError
}

/**
 * Every token in `text`: either whitespace/newline-separated compact tokens, or a JSON document
 * (Communication Object, RFC 8936 poll response, multi-SET push body) whose `sets` values are tokens.
 */
export function extractTokens(text: string): TokenEntry[] {
  const trimmed = text.trim()
  if (trimmed === '') return []
  if (!trimmed.startsWith('{')) {
    return trimmed.split(/\s+/).map((token, index) => ({index, token}))
  }

  let document: unknown
  try {
    document = parseJsonSafely(trimmed)
  } catch (error) {
    throw new PushpullError('ERR_MESSAGE_INVALID', 'the input starts with "{" but is not valid JSON', {cause: error})
  }

  if (!isPlainObject(document)) throw new PushpullError('ERR_MESSAGE_INVALID', 'the JSON input is not an object')
  const {sets} = document
  if (sets === undefined) {
    throw new PushpullError('ERR_MESSAGE_INVALID', 'the JSON input has no "sets" member (expected a Communication Object or poll response)')
  }

  if (!isPlainObject(sets)) throw new PushpullError('ERR_MESSAGE_INVALID', 'the "sets" member is not a JSON object')
  return Object.entries(sets).map(([key, value], index) =>
    typeof value === 'string'
      ? {index, key, token: value}
      : {error: new PushpullError('ERR_SET_MALFORMED', `the "sets" value under ${JSON.stringify(sanitizeText(key, 80))} is not a string`), index, key, token: ''},
  )
}

/** The SET's audiences as an array (empty when `aud` is absent). */
export function audiencesOf(claims: {aud?: unknown}): string[] {
  if (typeof claims.aud === 'string') return [claims.aud]
  if (Array.isArray(claims.aud)) return claims.aud.filter((a): a is string => typeof a === 'string')
  return []
}
