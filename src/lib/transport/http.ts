/**
 * The HTTP client every SET binding uses, on undici.
 *
 * One `Agent` per client (per run) with explicit connect, header and body timeouts; a response
 * size limit enforced while reading; redirects never followed (a 3xx comes back as-is and the
 * binding treats it as ERR_PEER_STATUS); TLS with the default CAs plus an optional CA file, or
 * `insecure`; a bearer token that only ever travels in the `Authorization` header. Every failure is
 * a PushpullError whose `details.url` carries neither credentials nor a query string.
 */
import {readFileSync} from 'node:fs'
import * as tls from 'node:tls'

import {Agent, type Dispatcher} from 'undici'

import {PushpullError} from '../errors.js'
import {DEFAULT_RETRY_AFTER_CAP_MS, parseRetryAfter} from '../retry.js'

export const DEFAULT_CONNECT_TIMEOUT_MS = 10_000
export const DEFAULT_HEADERS_TIMEOUT_MS = 10_000
export const DEFAULT_BODY_TIMEOUT_MS = 30_000
/** 1 MiB, the protocol.md section 4 limit for one HTTP body. */
export const DEFAULT_MAX_RESPONSE_BYTES = 1024 * 1024

export interface HttpClientOptions {
  /** TCP connect plus TLS handshake, in ms. Default 10 000. */
  connectTimeoutMs?: number
  /** From sending the request to receiving the complete response headers, in ms. Default 10 000. */
  headersTimeoutMs?: number
  /** Longest silence between two body chunks, in ms. Default 30 000. */
  bodyTimeoutMs?: number
  /** Largest response body read; one byte more fails with ERR_RESPONSE_TOO_LARGE. Default 1 MiB. */
  maxResponseBytes?: number
  /** A PEM file of extra trusted CAs, read once when the client is created (added to the defaults). */
  caFile?: string
  /** PEM text of extra trusted CAs (same as `caFile`, for callers that already hold it; wins over `caFile`). */
  ca?: string | Buffer
  /** Do not verify the server certificate. The CLI warns loudly; never a silent default. */
  insecure?: boolean
  /** Bearer token sent as `Authorization: Bearer <token>` on every request; never logged. */
  token?: string
  /** Extra request headers sent on every request. */
  headers?: Readonly<Record<string, string>>
  /** `User-Agent`. Default `pushpull/<package version>`. */
  userAgent?: string
  /** Use this dispatcher instead of creating an Agent (tests, proxies). `close()` leaves it open. */
  dispatcher?: Dispatcher
  /** Largest Retry-After honoured, in ms. Default 300 000. */
  retryAfterCapMs?: number
  /** Clock for Retry-After dates, ms since the epoch. Default Date.now. */
  now?: () => number
}

export type HttpMethod = 'DELETE' | 'GET' | 'HEAD' | 'PATCH' | 'POST' | 'PUT'

export interface HttpRequest {
  url: string | URL
  method?: HttpMethod
  headers?: Readonly<Record<string, string>>
  body?: string | Uint8Array
  signal?: AbortSignal
}

export interface HttpResponse {
  status: number
  /** Lower-case names; repeated headers joined with ", " (`set-cookie` with "\n"). */
  headers: Record<string, string>
  body: Buffer
  /** The server's Retry-After, in ms and capped, when it sent a valid one. */
  retryAfterMs?: number
}

/** Query parameters that carry credentials: we never send a URL holding one. */
const CREDENTIAL_PARAMS = new Set(['access_token', 'token', 'id_token', 'refresh_token', 'api_key', 'apikey', 'client_secret'])

/** Header names the client owns or that would let a value be smuggled past it. */
const RESERVED_HEADERS = new Set(['authorization', 'connection', 'content-length', 'host', 'transfer-encoding', 'upgrade'])

const TOKEN_CHARS = /^[\u0021-\u007E]+$/
const HEADER_NAME = /^[!#$%&'*+\-.^\w`|~]+$/
// eslint-disable-next-line no-control-regex
const HEADER_VALUE_BAD = /[\u0000-\u0008\u000A-\u001F\u007F]/

let packageVersion: string | undefined

/** This package's version, for the default User-Agent. */
export function pushpullVersion(): string {
  if (packageVersion !== undefined) return packageVersion
  try {
    // src/lib/transport/http.ts and dist/lib/transport/http.js both sit three levels below package.json.
    const pkg = JSON.parse(readFileSync(new URL('../../../package.json', import.meta.url), 'utf8')) as {version?: unknown}
    packageVersion = typeof pkg.version === 'string' ? pkg.version : '0.0.0'
  } catch {
    packageVersion = '0.0.0'
  }

  return packageVersion
}

/** `url` without credentials, query or fragment: safe for messages, logs and `details`. */
export function redactUrl(url: string | URL): string {
  try {
    const parsed = typeof url === 'string' ? new URL(url) : new URL(url.href)
    return `${parsed.protocol}//${parsed.host}${parsed.pathname}`
  } catch {
    return '(invalid URL)'
  }
}

/**
 * Parse and check a peer URL: http(s) only, no user:password, no credential-like query parameter
 * (tokens go in the Authorization header, never in URLs).
 */
export function checkPeerUrl(url: string | URL): URL {
  let parsed: URL
  try {
    parsed = typeof url === 'string' ? new URL(url) : new URL(url.href)
  } catch (error) {
    throw new PushpullError('ERR_USAGE', 'the peer URL is not a valid absolute URL', {cause: error})
  }

  const safe = redactUrl(parsed)
  if (parsed.protocol !== 'http:' && parsed.protocol !== 'https:') {
    throw new PushpullError('ERR_USAGE', `${safe}: only http:// and https:// URLs are supported here`, {details: {url: safe}})
  }

  if (parsed.username !== '' || parsed.password !== '') {
    throw new PushpullError('ERR_USAGE', `${safe}: the URL carries credentials (user:password@); pass a bearer token with --token or --token-file instead`, {
      details: {url: safe},
    })
  }

  for (const name of parsed.searchParams.keys()) {
    if (CREDENTIAL_PARAMS.has(name.toLowerCase())) {
      throw new PushpullError('ERR_USAGE', `${safe}: the query parameter "${name}" looks like a credential; tokens are never sent in URLs, use --token or --token-file`, {
        details: {url: safe},
      })
    }
  }

  return parsed
}

function positiveInt(name: string, value: number | undefined, fallback: number): number {
  if (value === undefined) return fallback
  if (!Number.isSafeInteger(value) || value <= 0) {
    throw new PushpullError('ERR_CONFIG', `${name} must be a positive integer, got ${String(value)}`)
  }

  return value
}

function checkHeaders(headers: Readonly<Record<string, string>>, allowReserved: boolean): void {
  for (const [name, value] of Object.entries(headers)) {
    if (!HEADER_NAME.test(name)) throw new PushpullError('ERR_USAGE', `"${name}" is not a valid HTTP header name`)
    if (!allowReserved && RESERVED_HEADERS.has(name.toLowerCase())) {
      const hint = name.toLowerCase() === 'authorization' ? '; use --token or --token-file for bearer tokens' : ''
      throw new PushpullError('ERR_USAGE', `the ${name} header is set by pushpull itself and cannot be overridden${hint}`)
    }

    if (typeof value !== 'string' || HEADER_VALUE_BAD.test(value)) {
      throw new PushpullError('ERR_USAGE', `the value of header ${name} contains control characters`)
    }
  }
}

const CONNECT_CODES = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ECONNABORTED',
  'ENOTFOUND',
  'EAI_AGAIN',
  'EAI_FAIL',
  'EHOSTUNREACH',
  'EHOSTDOWN',
  'ENETUNREACH',
  'ENETDOWN',
  'EPIPE',
  'EADDRNOTAVAIL',
  'UND_ERR_SOCKET',
  'UND_ERR_CLOSED',
  'UND_ERR_DESTROYED',
])
const TIMEOUT_CODES: Readonly<Record<string, string>> = {
  ETIMEDOUT: 'connect timeout',
  UND_ERR_BODY_TIMEOUT: 'timed out waiting for the response body',
  UND_ERR_CONNECT_TIMEOUT: 'timed out connecting',
  UND_ERR_HEADERS_TIMEOUT: 'timed out waiting for the response headers',
}
const TLS_CODE = /CERT|SELF_SIGNED|UNABLE_TO_(?:GET|VERIFY|DECRYPT|DECODE)|^ERR_SSL_|^ERR_TLS_|^ERR_OSSL_|HOSTNAME_MISMATCH/

function errorCodeOf(error: unknown): string | undefined {
  let current: unknown = error
  for (let depth = 0; depth < 5 && current !== null && typeof current === 'object'; depth++) {
    const {code} = current as {code?: unknown}
    if (typeof code === 'string') return code
    current = (current as {cause?: unknown}).cause
  }

  return undefined
}

/** Map whatever undici or node threw into the library's error codes. */
export function mapHttpError(error: unknown, url: string, signal?: AbortSignal): PushpullError {
  const details = {url}
  if (signal?.aborted) {
    return new PushpullError('ERR_ABORTED', `request to ${url} was aborted`, {cause: error, details})
  }

  if (error instanceof PushpullError) return error

  const code = errorCodeOf(error)
  const reason = error instanceof Error ? error.message : String(error)
  if (code === 'UND_ERR_ABORTED' || code === 'ABORT_ERR' || (error as {name?: unknown} | null)?.name === 'AbortError') {
    return new PushpullError('ERR_ABORTED', `request to ${url} was aborted`, {cause: error, details})
  }

  if (code !== undefined && code in TIMEOUT_CODES) {
    return new PushpullError('ERR_TIMEOUT', `${url}: ${TIMEOUT_CODES[code]}`, {cause: error, details: {...details, reason: code}})
  }

  if (code !== undefined && TLS_CODE.test(code)) {
    return new PushpullError('ERR_TLS', `${url}: TLS failed: ${reason} (${code}); use --cacert FILE to trust a private CA`, {
      cause: error,
      details: {...details, reason: code},
    })
  }

  if (code === 'UND_ERR_RES_EXCEEDED_MAX_SIZE') {
    return new PushpullError('ERR_RESPONSE_TOO_LARGE', `${url}: the response is larger than the limit`, {cause: error, details})
  }

  if (code === 'UND_ERR_HEADERS_OVERFLOW') {
    return new PushpullError('ERR_RESPONSE_TOO_LARGE', `${url}: the response headers are larger than the limit`, {cause: error, details})
  }

  if (code !== undefined && (code.startsWith('HPE_') || code === 'UND_ERR_RES_CONTENT_LENGTH_MISMATCH')) {
    return new PushpullError('ERR_PEER_PROTOCOL', `${url}: malformed HTTP response: ${reason}`, {cause: error, details: {...details, reason: code}})
  }

  if (code === 'UND_ERR_INVALID_ARG' || code === 'UND_ERR_NOT_SUPPORTED') {
    return new PushpullError('ERR_USAGE', `${url}: invalid request: ${reason}`, {cause: error, details})
  }

  const what = code !== undefined && CONNECT_CODES.has(code) ? reason : `${reason}${code === undefined ? '' : ` (${code})`}`
  return new PushpullError('ERR_CONNECT', `${url}: connection failed: ${what}`, {cause: error, details: {...details, reason: code}})
}

/**
 * The trust store an explicit `ca` would otherwise replace: node's default set (bundled Mozilla CAs
 * plus NODE_EXTRA_CA_CERTS) where node can list it (22.15+), else the bundled CAs.
 */
function defaultCaCertificates(): readonly string[] {
  const list = (tls as {getCACertificates?: (type: string) => string[]}).getCACertificates
  return typeof list === 'function' ? list('default') : tls.rootCertificates
}

/** A record without a prototype, so a peer's or user's key can never reach Object.prototype. */
function nullRecord(): Record<string, string> {
  return Object.create(null) as Record<string, string>
}

function flattenHeaders(raw: Record<string, string | string[] | undefined>): Record<string, string> {
  const out = nullRecord()
  for (const [name, value] of Object.entries(raw)) {
    if (value === undefined) continue
    const key = name.toLowerCase()
    out[key] = Array.isArray(value) ? value.join(key === 'set-cookie' ? '\n' : ', ') : value
  }

  return out
}

export type HttpAgentOptions = Pick<HttpClientOptions, 'bodyTimeoutMs' | 'ca' | 'caFile' | 'connectTimeoutMs' | 'headersTimeoutMs' | 'insecure'>

/**
 * The undici Agent an HttpClient would create: timeouts, the default CAs plus `caFile` / `ca`, or
 * `insecure`. For other fetchers that must trust the same peers (a JWKS URL under `--cacert`).
 * The caller owns it: `close()` it when done. Throws ERR_CONFIG for an unreadable or non-PEM CA file.
 */
export function createHttpAgent(options: HttpAgentOptions = {}): Agent {
  let extraCa: string | Buffer | undefined = options.ca
  if (options.caFile !== undefined && options.ca === undefined) {
    try {
      extraCa = readFileSync(options.caFile)
    } catch (error) {
      throw new PushpullError('ERR_CONFIG', `cannot read the CA file ${options.caFile}: ${(error as Error).message}`, {cause: error})
    }

    if (!extraCa.toString('latin1').includes('-----BEGIN CERTIFICATE-----')) {
      throw new PushpullError('ERR_CONFIG', `the CA file ${options.caFile} holds no PEM certificate`)
    }
  }

  return new Agent({
    bodyTimeout: positiveInt('bodyTimeoutMs', options.bodyTimeoutMs, DEFAULT_BODY_TIMEOUT_MS),
    connect: {
      // Node's `ca` replaces the default trust store, so keep the defaults next to the extra CA.
      ...(extraCa === undefined ? {} : {ca: [...defaultCaCertificates(), extraCa.toString()]}),
      rejectUnauthorized: options.insecure !== true,
      timeout: positiveInt('connectTimeoutMs', options.connectTimeoutMs, DEFAULT_CONNECT_TIMEOUT_MS),
    },
    headersTimeout: positiveInt('headersTimeoutMs', options.headersTimeoutMs, DEFAULT_HEADERS_TIMEOUT_MS),
  })
}

/**
 * The HTTP client. Create one per run (it owns a connection pool) and `close()` it in `finally`.
 */
export class HttpClient {
  readonly maxResponseBytes: number
  private readonly dispatcher: Dispatcher
  private readonly ownsDispatcher: boolean
  private readonly headersTimeoutMs: number
  private readonly bodyTimeoutMs: number
  private readonly baseHeaders: Record<string, string>
  private readonly authorization: string | undefined
  private readonly retryAfterCapMs: number
  private readonly now: () => number

  constructor(options: HttpClientOptions = {}) {
    const connectTimeoutMs = positiveInt('connectTimeoutMs', options.connectTimeoutMs, DEFAULT_CONNECT_TIMEOUT_MS)
    this.headersTimeoutMs = positiveInt('headersTimeoutMs', options.headersTimeoutMs, DEFAULT_HEADERS_TIMEOUT_MS)
    this.bodyTimeoutMs = positiveInt('bodyTimeoutMs', options.bodyTimeoutMs, DEFAULT_BODY_TIMEOUT_MS)
    this.maxResponseBytes = positiveInt('maxResponseBytes', options.maxResponseBytes, DEFAULT_MAX_RESPONSE_BYTES)
    this.retryAfterCapMs = options.retryAfterCapMs ?? DEFAULT_RETRY_AFTER_CAP_MS
    this.now = options.now ?? Date.now

    if (options.token !== undefined && (options.token === '' || !TOKEN_CHARS.test(options.token))) {
      // Never echo the value.
      throw new PushpullError('ERR_USAGE', 'the bearer token is empty or contains spaces or control characters')
    }

    this.authorization = options.token === undefined ? undefined : `Bearer ${options.token}`
    const extra = options.headers ?? {}
    checkHeaders(extra, false)
    this.baseHeaders = nullRecord()
    this.baseHeaders['user-agent'] = options.userAgent ?? `pushpull/${pushpullVersion()}`
    for (const [name, value] of Object.entries(extra)) this.baseHeaders[name.toLowerCase()] = value

    if (options.dispatcher === undefined) {
      this.dispatcher = createHttpAgent({...options, bodyTimeoutMs: this.bodyTimeoutMs, connectTimeoutMs, headersTimeoutMs: this.headersTimeoutMs})
      this.ownsDispatcher = true
    } else {
      this.dispatcher = options.dispatcher
      this.ownsDispatcher = false
    }
  }

  /**
   * Send one request and read the whole response (up to `maxResponseBytes`). Any status is
   * returned, 3xx included: redirects are never followed. Throws PushpullError: ERR_USAGE (bad URL
   * or header), ERR_CONNECT, ERR_TIMEOUT, ERR_TLS, ERR_RESPONSE_TOO_LARGE, ERR_PEER_PROTOCOL,
   * ERR_ABORTED.
   */
  async request(request: HttpRequest): Promise<HttpResponse> {
    const url = checkPeerUrl(request.url)
    const safeUrl = redactUrl(url)
    const {signal} = request
    if (signal?.aborted) {
      throw new PushpullError('ERR_ABORTED', `request to ${safeUrl} was aborted`, {cause: signal.reason, details: {url: safeUrl}})
    }

    const headers = nullRecord()
    Object.assign(headers, this.baseHeaders)
    if (request.headers !== undefined) {
      checkHeaders(request.headers, false)
      for (const [name, value] of Object.entries(request.headers)) headers[name.toLowerCase()] = value
    }

    if (this.authorization !== undefined) headers.authorization = this.authorization

    let response: Dispatcher.ResponseData
    try {
      response = await this.dispatcher.request({
        body: request.body,
        bodyTimeout: this.bodyTimeoutMs,
        headers,
        headersTimeout: this.headersTimeoutMs,
        method: request.method ?? 'GET',
        origin: url.origin,
        path: `${url.pathname}${url.search}`,
        signal,
      })
    } catch (error) {
      throw mapHttpError(error, safeUrl, signal)
    }

    const status = response.statusCode
    const responseHeaders = flattenHeaders(response.headers)
    const body = await this.readBody(response.body, responseHeaders, safeUrl, status, signal)
    const retryAfterMs = parseRetryAfter(responseHeaders['retry-after'], this.now(), {capMs: this.retryAfterCapMs})
    return retryAfterMs === undefined ? {body, headers: responseHeaders, status} : {body, headers: responseHeaders, retryAfterMs, status}
  }

  private async readBody(
    body: Dispatcher.ResponseData['body'],
    headers: Record<string, string>,
    url: string,
    status: number,
    signal: AbortSignal | undefined,
  ): Promise<Buffer> {
    const limit = this.maxResponseBytes
    const tooLarge = (): PushpullError =>
      new PushpullError('ERR_RESPONSE_TOO_LARGE', `${url}: the response body is larger than ${limit} bytes (HTTP ${status}); raise --max-response-bytes if this is expected`, {
        details: {limit, status, url},
      })

    const declared = headers['content-length']
    if (declared !== undefined && /^\d+$/.test(declared) && Number(declared) > limit) {
      // Stop here: destroying the body closes the connection without reading it.
      body.on('error', () => {})
      body.destroy()
      throw tooLarge()
    }

    const chunks: Buffer[] = []
    let size = 0
    try {
      for await (const chunk of body) {
        const buffer = chunk as Buffer
        size += buffer.length
        if (size > limit) {
          body.destroy()
          throw tooLarge()
        }

        chunks.push(buffer)
      }
    } catch (error) {
      if (error instanceof PushpullError) throw error
      const mapped = mapHttpError(error, url, signal)
      throw new PushpullError(mapped.code, mapped.message, {cause: mapped.cause, details: {...mapped.details, status}})
    }

    return Buffer.concat(chunks, size)
  }

  /** Close the connection pool (waits for requests in flight). An injected dispatcher is left open. */
  async close(): Promise<void> {
    if (this.ownsDispatcher) await this.dispatcher.close()
  }

  /** Close the connection pool now, failing requests in flight. */
  async destroy(): Promise<void> {
    if (this.ownsDispatcher) await this.dispatcher.destroy()
  }
}

export function createHttpClient(options: HttpClientOptions = {}): HttpClient {
  return new HttpClient(options)
}
