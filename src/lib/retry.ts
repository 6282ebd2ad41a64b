/**
 * Retry decisions for SET senders (protocol.md section 3), as pure functions: no clock, no
 * randomness and no I/O of their own. Callers pass `now` (ms since the epoch) and `random`
 * (a function returning [0, 1)), so every decision is tested without sleeping.
 */
import {isPushpullError} from './errors.js'
import {backoffDelay, DEFAULT_RETRY_POLICY, type RetryPolicy} from './ledger.js'

/** What a sender does after an exchange. */
export type RetryClass =
  /** The peer took the request (2xx). */
  | 'ok'
  /** Transient: network error, timeout, 408, 429 or 5xx. Retry with backoff, honouring Retry-After. */
  | 'retry'
  /** Permanent: the peer refused the content (400 with an `err`, other 4xx, 3xx). Do not retry. */
  | 'reject'
  /** 401/403 (or an `err` about authentication): stop and ask the user to check credentials. */
  | 'credentials'

/** Default cap on a server's Retry-After: 5 minutes. */
export const DEFAULT_RETRY_AFTER_CAP_MS = 300_000

export interface RetryAfterOptions {
  /** Longest wait we accept from a server, in ms. Default 300 000 (5 minutes). */
  capMs?: number
}

const DELTA_SECONDS = /^\d+$/
// IMF-fixdate, obsolete RFC 850 and asctime forms (RFC 9110 section 5.6.7); Date.parse reads all three.
const HTTP_DATE = /^(?:[A-Za-z]{3}, \d{2} [A-Za-z]{3} \d{4} \d{2}:\d{2}:\d{2} GMT|[A-Za-z]+, \d{2}-[A-Za-z]{3}-\d{2} \d{2}:\d{2}:\d{2} GMT|[A-Za-z]{3} [A-Za-z]{3} [ \d]\d \d{2}:\d{2}:\d{2} \d{4})$/

/**
 * The wait a `Retry-After` header asks for, in ms, capped at `capMs`.
 *
 * Accepts delta-seconds (`120`) and HTTP dates (`Wed, 21 Oct 2015 07:28:00 GMT`; a date in the past
 * means 0). Returns undefined for a missing or malformed value (negative, fractional, garbage), so
 * the caller falls back to its own backoff.
 */
export function parseRetryAfter(
  headerValue: string | readonly string[] | undefined,
  now: number,
  options: RetryAfterOptions = {},
): number | undefined {
  const capMs = options.capMs ?? DEFAULT_RETRY_AFTER_CAP_MS
  const raw = Array.isArray(headerValue) ? headerValue[0] : headerValue
  if (typeof raw !== 'string') return undefined
  const value = raw.trim()
  if (value === '') return undefined
  if (DELTA_SECONDS.test(value)) {
    // Long digit strings overflow to Infinity or lose precision; the cap handles both.
    const ms = Number(value) * 1000
    return Math.min(ms, capMs)
  }

  if (!HTTP_DATE.test(value)) return undefined
  const at = Date.parse(value)
  if (Number.isNaN(at)) return undefined
  return Math.min(Math.max(0, at - now), capMs)
}

const CREDENTIAL_ERRS: ReadonlySet<string> = new Set(['authentication_failed', 'access_denied'])

/**
 * How a sender treats an HTTP response `status`, given the peer's `err` when it sent one.
 *
 * - 2xx: ok.
 * - 401, 403, or any status with `err` `authentication_failed` / `access_denied`: credentials.
 * - 408, 425, 429, 5xx: retry (honour Retry-After).
 * - 400 with `invalid_request` / `invalid_issuer` / `invalid_audience` / `invalid_key` /
 *   `invalid_state`, an unknown `err` or none, and every other status (3xx is never followed,
 *   404, 405, 413, 415 ...): reject.
 */
export function classifyResponse(status: number, errCode?: string): RetryClass {
  if (status >= 200 && status <= 299) return 'ok'
  if (status === 401 || status === 403) return 'credentials'
  if (errCode !== undefined && CREDENTIAL_ERRS.has(errCode)) return 'credentials'
  if (status === 408 || status === 425 || status === 429 || (status >= 500 && status <= 599)) return 'retry'
  // 400 with invalid_request / invalid_issuer / invalid_audience / invalid_key (resending the same
  // SET cannot help), unknown errs, 3xx and every other status.
  return 'reject'
}

/**
 * How a sender treats a failure that produced no response: transport errors that may heal
 * (connect, timeout, a 5xx surfaced as ERR_PEER_STATUS, a closed WebSocket) retry; refused
 * credentials stop; everything else (TLS, oversize response, protocol errors, abort) does not retry.
 */
export function classifyError(error: unknown): RetryClass {
  if (!isPushpullError(error)) return 'reject'
  switch (error.code) {
    case 'ERR_CONNECT':
    case 'ERR_TIMEOUT':
    case 'ERR_WS_CLOSED':
    case 'ERR_PEER_STATUS': {
      const status = error.details.status
      return typeof status === 'number' ? classifyResponse(status) : 'retry'
    }

    case 'ERR_CREDENTIALS': {
      return 'credentials'
    }

    default: {
      return 'reject'
    }
  }
}

/** The backoff half of the ledger's retry policy. */
export type BackoffPolicy = Pick<RetryPolicy, 'capMs' | 'factor' | 'initialMs'>

/** Defaults: initialMs 1000, factor 2, capMs 60 000 (the ledger's DEFAULT_RETRY_POLICY). */
export const DEFAULT_BACKOFF: Readonly<BackoffPolicy> = {
  capMs: DEFAULT_RETRY_POLICY.capMs,
  factor: DEFAULT_RETRY_POLICY.factor,
  initialMs: DEFAULT_RETRY_POLICY.initialMs,
}

/**
 * Exponential backoff with full jitter lives in the ledger (one implementation for every binding):
 * a uniform wait in [0, min(capMs, initialMs * factor^attempt)), `attempt` counting from 0.
 */
export {backoffDelay} from './ledger.js'

/**
 * The wait before retry number `attempt`: what the server asked for in Retry-After (already capped
 * by `parseRetryAfter`) plus up to one `initialMs` of jitter, so clients told the same thing do not
 * return in lockstep; without Retry-After, `backoffDelay`.
 */
export function retryDelay(
  attempt: number,
  retryAfterMs: number | undefined,
  policy: Readonly<BackoffPolicy> = DEFAULT_BACKOFF,
  random: () => number = Math.random,
): number {
  if (retryAfterMs === undefined) return backoffDelay(attempt, policy, random)
  return retryAfterMs + Math.floor(random() * policy.initialMs)
}
