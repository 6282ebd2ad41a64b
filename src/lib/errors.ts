/**
 * The library's one error class and its closed set of codes.
 *
 * Every failure the library can report has a stable `code` from `ErrorCode`. The CLI maps codes to
 * exit codes in one table (src/cli/exit-codes.ts); receivers map SET failures to the protocol's
 * `err` values with `setErrCodeOf`. Messages are for people and may change; codes may not.
 */

export const ERROR_CODES = [
  // Usage and configuration (the user can fix these without touching the peer).
  'ERR_USAGE', // a flag, argument or option is missing, malformed or contradictory
  'ERR_CONFIG', // a configuration value is out of range or inconsistent
  'ERR_KEY_INVALID', // a key file, JWK, JWKS or secret cannot be read or used
  'ERR_CREDENTIALS', // the peer refused our credentials (401/403, WebSocket 1008 on auth)
  'ERR_STATE_CORRUPT', // the state database is unreadable or not ours
  'ERR_STATE_LOCKED', // another process holds the state database
  'ERR_STATE_IO', // the state database could not be written (disk full, read-only)

  // Transport (the network or the peer's reachability).
  'ERR_CONNECT', // connection refused, DNS failure, reset before a response
  'ERR_TIMEOUT', // connect, header, body or handshake timeout
  'ERR_TLS', // certificate or TLS handshake failure
  'ERR_RESPONSE_TOO_LARGE', // a response body over the configured limit
  'ERR_WS_HANDSHAKE', // the WebSocket upgrade was refused or did not select `pushpull`
  'ERR_WS_CLOSED', // the WebSocket session closed before the work was done
  'ERR_JWKS_FETCH', // a JWKS URL could not be fetched or parsed (transient for receivers)

  // Peer and protocol.
  'ERR_PEER_STATUS', // an HTTP status the binding does not allow (5xx, unexpected 3xx/4xx)
  'ERR_PEER_REJECTED', // the peer answered with an `err` (400 or setErrs)
  'ERR_PEER_PROTOCOL', // the peer's response is not what the binding specifies (bad JSON, wrong shape)
  'ERR_MESSAGE_INVALID', // an incoming Communication Object, poll request or frame is malformed
  'ERR_LIMIT_EXCEEDED', // a body, message, SET count or nesting depth over its limit
  'ERR_RETRIES_EXHAUSTED', // gave up after the retry cap; unacked SETs stay in the outbox

  // The SET itself (decode, validation, verification).
  'ERR_SET_MALFORMED', // not a compact JWS, bad base64url, header or payload not a JSON object
  'ERR_SET_TOO_LARGE', // token over the per-SET limit; rejected before any crypto
  'ERR_SET_ENCRYPTED', // a 5-part JWE and no decryption key configured
  'ERR_SET_UNSIGNED', // `alg: none` and unsigned SETs were not allowed
  'ERR_SET_ALG_NOT_ALLOWED', // the header `alg` is not in the allow-list or does not fit the key
  'ERR_SET_KID_UNKNOWN', // no key in the JWKS matches the header `kid`
  'ERR_SET_SIGNATURE', // the signature does not verify
  'ERR_SET_TYP', // header `typ` missing or not `secevent+jwt`
  'ERR_SET_CRIT', // a `crit` header parameter we do not understand
  'ERR_SET_CLAIMS', // required claim missing or of the wrong type (`iss`, `iat`, `jti`, `events`)
  'ERR_SET_ISSUER', // `iss` differs from the expected issuer
  'ERR_SET_AUDIENCE', // `aud` missing or does not contain the expected audience
  'ERR_SET_EXPIRED', // `exp` in the past
  'ERR_SET_NOT_YET_VALID', // `iat` or `nbf` too far in the future
  'ERR_SET_CONFLICT', // same (`iss`, `jti`) already received with a different payload
  'ERR_SET_LINT', // profile findings made fatal by --strict
  'ERR_EVENT_INVALID', // unknown event type, or a payload that does not fit its type
  'ERR_SUBJECT_INVALID', // a subject identifier that does not fit its format
  'ERR_SET_STATE', // an SSF verification SET whose `state` is not the one requested (err `invalid_state`)

  // Process.
  'ERR_ABORTED', // interrupted by SIGINT/SIGTERM or an AbortSignal
  'ERR_INTERNAL', // a bug: an invariant the code relies on did not hold
] as const

export type ErrorCode = (typeof ERROR_CODES)[number]

/** The `err` values a SET receiver may send (RFC 8935 section 2.4, SSF adds `invalid_state`). */
export const SET_ERR_CODES = [
  'invalid_request',
  'invalid_key',
  'invalid_issuer',
  'invalid_audience',
  'authentication_failed',
  'access_denied',
  'invalid_state',
] as const

export type SetErrCode = (typeof SET_ERR_CODES)[number]

export interface PushpullErrorOptions {
  cause?: unknown
  /** Structured facts for `--json` and for callers: HTTP status, close code, peer `err`, jti ... */
  details?: Readonly<Record<string, unknown>>
}

export class PushpullError extends Error {
  override readonly name = 'PushpullError'
  readonly code: ErrorCode
  readonly details: Readonly<Record<string, unknown>>

  constructor(code: ErrorCode, message: string, options: PushpullErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : {cause: options.cause})
    this.code = code
    this.details = options.details ?? {}
  }
}

export function isPushpullError(value: unknown, code?: ErrorCode): value is PushpullError {
  return value instanceof PushpullError && (code === undefined || value.code === code)
}

/** Codes that mean "try again later": the SET must be neither acked nor rejected. */
const TRANSIENT: ReadonlySet<ErrorCode> = new Set<ErrorCode>([
  'ERR_CONNECT',
  'ERR_TIMEOUT',
  'ERR_JWKS_FETCH',
  'ERR_PEER_STATUS',
  'ERR_WS_CLOSED',
  'ERR_STATE_IO',
])

export function isTransient(error: unknown): boolean {
  return error instanceof PushpullError && TRANSIENT.has(error.code)
}

/**
 * The protocol `err` a receiver answers for a SET that failed with `error`.
 * Returns undefined for transient failures: those SETs get no ack and no setErr.
 */
export function setErrCodeOf(error: unknown): SetErrCode | undefined {
  if (!(error instanceof PushpullError)) return 'invalid_request'
  if (TRANSIENT.has(error.code)) return undefined
  switch (error.code) {
    case 'ERR_SET_UNSIGNED':
    case 'ERR_SET_ALG_NOT_ALLOWED':
    case 'ERR_SET_KID_UNKNOWN':
    case 'ERR_SET_SIGNATURE':
    case 'ERR_KEY_INVALID': {
      return 'invalid_key'
    }

    case 'ERR_SET_ISSUER': {
      return 'invalid_issuer'
    }

    case 'ERR_SET_AUDIENCE': {
      return 'invalid_audience'
    }

    case 'ERR_SET_STATE': {
      return 'invalid_state'
    }

    default: {
      return 'invalid_request'
    }
  }
}

/** Wrap anything thrown by a dependency so callers only ever see PushpullError. */
export function toPushpullError(error: unknown, fallback: ErrorCode = 'ERR_INTERNAL'): PushpullError {
  if (error instanceof PushpullError) return error
  const message = error instanceof Error ? error.message : String(error)
  return new PushpullError(fallback, message, {cause: error})
}
