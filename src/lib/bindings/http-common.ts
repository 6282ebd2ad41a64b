/**
 * HTTP plumbing the client bindings share: response status handling, the peer's `{err,
 * description}` error body, and request previews without credentials.
 */
import type {SetErr} from '../communication.js'
import {PushpullError} from '../errors.js'
import {isJsonObject, ownMember, parseJsonBounded} from '../json.js'
import {sanitizeText} from '../text.js'
import type {HttpClient, HttpResponse} from '../transport/http.js'
import {redactUrl} from '../transport/http.js'
import type {RequestPreview} from './types.js'

/** Largest error body we look into for `{err, description}`. */
const MAX_ERROR_BODY = 64 * 1024

/** The ledger peer id of a client-side peer: origin + path (no credentials, query or fragment). */
export function peerIdOf(url: string | URL): string {
  return redactUrl(url)
}

/** `{err, description}` from an error response body, when it holds one (sanitised). */
export function errorBodyOf(response: HttpResponse): SetErr | undefined {
  if (response.body.length === 0 || response.body.length > MAX_ERROR_BODY) return undefined
  let value: unknown
  try {
    value = parseJsonBounded(response.body, {maxBytes: MAX_ERROR_BODY})
  } catch {
    return undefined
  }

  if (!isJsonObject(value)) return undefined
  const err = ownMember(value, 'err')
  if (typeof err !== 'string' || err === '') return undefined
  const description = ownMember(value, 'description')
  return {description: typeof description === 'string' ? sanitizeText(description, 500) : '', err: sanitizeText(err, 100)}
}

/** A short, safe excerpt of a response body for messages. */
export function bodyExcerpt(response: HttpResponse, max = 120): string {
  if (response.body.length === 0) return '(empty body)'
  return JSON.stringify(sanitizeText(response.body.subarray(0, max * 4).toString('utf8'), max))
}

/**
 * Throw the error a non-2xx response means for a binding (2xx returns). 401/403 (or an `err` of
 * authentication_failed / access_denied): ERR_CREDENTIALS. 408/425/429/5xx: ERR_PEER_STATUS
 * (retryable; `details.retryAfterMs` when the peer sent Retry-After). 413: ERR_LIMIT_EXCEEDED.
 * 400 with `{err}`: ERR_PEER_REJECTED (the whole request was refused). Anything else: ERR_PEER_STATUS.
 */
export function checkResponse(response: HttpResponse, url: string, what: string): void {
  const {status} = response
  if (status >= 200 && status <= 299) return
  const safeUrl = redactUrl(url)
  const peerErr = errorBodyOf(response)
  const said = peerErr === undefined ? '' : `: ${peerErr.err}${peerErr.description === '' ? '' : ` (${peerErr.description})`}`
  const details: Record<string, unknown> = {status, url: safeUrl}
  if (peerErr !== undefined) {
    details.err = peerErr.err
    details.description = peerErr.description
  }

  if (response.retryAfterMs !== undefined) details.retryAfterMs = response.retryAfterMs
  if (status === 401 || status === 403 || peerErr?.err === 'authentication_failed' || peerErr?.err === 'access_denied') {
    throw new PushpullError(
      'ERR_CREDENTIALS',
      `${safeUrl} refused our credentials (HTTP ${status}${said}); check the bearer token (--token, --token-file or PUSHPULL_TOKEN)`,
      {details},
    )
  }

  if (status === 408 || status === 425 || status === 429 || (status >= 500 && status <= 599)) {
    const wait = response.retryAfterMs === undefined ? '' : `; it asked us to retry after ${Math.ceil(response.retryAfterMs / 1000)} s`
    throw new PushpullError('ERR_PEER_STATUS', `${safeUrl} answered HTTP ${status} to the ${what}${said}${wait}`, {details})
  }

  if (status === 413) {
    throw new PushpullError('ERR_LIMIT_EXCEEDED', `${safeUrl} answered 413: the ${what} is larger than the peer accepts${said}; send fewer SETs per request (--batch)`, {
      details,
    })
  }

  if (status === 400 && peerErr !== undefined) {
    throw new PushpullError('ERR_PEER_REJECTED', `${safeUrl} refused the ${what} (HTTP 400${said})`, {details})
  }

  const hint = status >= 300 && status <= 399 ? ' (redirects are not followed for SET traffic; use the final URL)' : status === 404 || status === 405 ? ' (is this the right endpoint URL?)' : ''
  throw new PushpullError('ERR_PEER_STATUS', `${safeUrl} answered HTTP ${status} to the ${what}${said}${hint}; body ${bodyExcerpt(response)}`, {details})
}

/** Require a JSON response content type loosely: a 2xx body that is not JSON is a protocol error later. */
export function previewOf(url: string, headers: Record<string, string>, body: string, hasToken: boolean): RequestPreview {
  const shown: Record<string, string> = {...headers}
  if (hasToken) shown.authorization = 'Bearer <redacted>'
  return {body, headers: shown, method: 'POST', url: redactUrl(url)}
}

export interface BindingHttpOptions {
  client: HttpClient
  /** The peer endpoint. */
  url: string
  /** A bearer token is configured (only to show `<redacted>` in previews). */
  hasToken?: boolean
}
