/**
 * Server-side HTTP plumbing that the `listen` server composes: a node http/https server with
 * bounded timeouts and headers, a bounded body reader, and request guards (method, content type,
 * bearer token, tokens in query strings, Host and Origin) that throw PushpullError carrying the
 * HTTP answer in `details`; `sendHttpError` turns any such error into that answer.
 *
 * Limits (defaults; every one an option):
 * - headers must be complete within `headersTimeoutMs` (10 s) and the whole request within
 *   `requestTimeoutMs` (30 s); node answers 408 and closes the connection. Node checks both every
 *   `connectionsCheckingIntervalMs` (1 s here; node's own default is 30 s).
 * - at most `maxHeaderSize` bytes of headers (16 KiB, node's default; more is answered 431) and
 *   `maxHeadersCount` headers (100; node's default is 2000; extra headers are dropped, not parsed).
 * - bodies: `readBody` with `maxBytes` (the caller passes its limit; protocol.md says 1 MiB).
 * - idle keep-alive connections close after `keepAliveTimeoutMs` (5 s, node's default).
 * - at most `maxConnections` open connections in total (2000) and `maxConnectionsPerAddress` from
 *   one remote address (128; WebSocket sessions count too, as they keep their connection). Over a
 *   cap a new connection is answered 503 / 429 with `Retry-After` (plain HTTP) or reset (TLS)
 *   before a byte of it is parsed, so one peer opening sockets cannot starve the others.
 */
import {createHash, timingSafeEqual} from 'node:crypto'
import {createServer as createPlainServer, type IncomingMessage, type Server, type ServerResponse, STATUS_CODES} from 'node:http'
import {createServer as createTlsServer} from 'node:https'
import type {AddressInfo, Socket} from 'node:net'
import {networkInterfaces} from 'node:os'

import {PushpullError, type SetErrCode} from '../errors.js'

export const DEFAULT_SERVER_HEADERS_TIMEOUT_MS = 10_000
export const DEFAULT_SERVER_REQUEST_TIMEOUT_MS = 30_000
export const DEFAULT_KEEP_ALIVE_TIMEOUT_MS = 5000
export const DEFAULT_MAX_HEADERS_COUNT = 100
export const DEFAULT_MAX_HEADER_SIZE = 16 * 1024
export const DEFAULT_CONNECTIONS_CHECKING_INTERVAL_MS = 1000
export const DEFAULT_MAX_SERVER_CONNECTIONS = 2000
export const DEFAULT_MAX_SERVER_CONNECTIONS_PER_ADDRESS = 128
/** 1 MiB, protocol.md section 4. */
export const DEFAULT_MAX_BODY_BYTES = 1024 * 1024

export interface HttpServerOptions {
  /** Serve https with this certificate chain and key (PEM). */
  tls?: {cert: string | Buffer; key: string | Buffer}
  /** Complete request headers must arrive within this many ms, else 408. Default 10 000. */
  headersTimeoutMs?: number
  /** The complete request (headers and body) must arrive within this many ms, else 408. Default 30 000. */
  requestTimeoutMs?: number
  /** Idle keep-alive connections close after this many ms. Default 5000. */
  keepAliveTimeoutMs?: number
  /** Headers parsed per request; more are dropped. Default 100. */
  maxHeadersCount?: number
  /** Largest request header block in bytes; more is answered 431. Default 16 KiB. */
  maxHeaderSize?: number
  /** How often node checks the two timeouts above, in ms. Default 1000. */
  connectionsCheckingIntervalMs?: number
  /** Open connections in total; more are answered 503 and closed. Default 2000. */
  maxConnections?: number
  /** Open connections from one remote address; more are answered 429 and closed. Default 128. */
  maxConnectionsPerAddress?: number
  /** Called when a connection is refused by a cap (for counters and logs). */
  onConnectionRefused?: (address: string, reason: 'total' | 'per-address') => void
}

export type RequestHandler = (req: IncomingMessage, res: ServerResponse) => Promise<void> | void

function positive(name: string, value: number | undefined, fallback: number): number {
  const result = value ?? fallback
  if (!Number.isSafeInteger(result) || result <= 0) {
    throw new PushpullError('ERR_CONFIG', `${name} must be a positive integer, got ${String(value)}`)
  }

  return result
}

/**
 * A node http (or https, with `tls`) server with the timeouts and header limits set. The handler's
 * thrown or rejected errors are answered with `sendHttpError` (a PushpullError carrying
 * `details.status` gets that status; anything else a 500 without internals). Not yet listening.
 */
export function createHttpServer(options: HttpServerOptions, handler: RequestHandler): Server {
  const headersTimeout = positive('headersTimeoutMs', options.headersTimeoutMs, DEFAULT_SERVER_HEADERS_TIMEOUT_MS)
  const requestTimeout = positive('requestTimeoutMs', options.requestTimeoutMs, DEFAULT_SERVER_REQUEST_TIMEOUT_MS)
  if (headersTimeout > requestTimeout) {
    throw new PushpullError('ERR_CONFIG', `the header timeout (${headersTimeout} ms) cannot be longer than the request timeout (${requestTimeout} ms)`)
  }

  const keepAliveTimeout = positive('keepAliveTimeoutMs', options.keepAliveTimeoutMs, DEFAULT_KEEP_ALIVE_TIMEOUT_MS)
  const maxHeadersCount = positive('maxHeadersCount', options.maxHeadersCount, DEFAULT_MAX_HEADERS_COUNT)
  const maxHeaderSize = positive('maxHeaderSize', options.maxHeaderSize, DEFAULT_MAX_HEADER_SIZE)
  const connectionsCheckingInterval = positive(
    'connectionsCheckingIntervalMs',
    options.connectionsCheckingIntervalMs,
    Math.min(DEFAULT_CONNECTIONS_CHECKING_INTERVAL_MS, Math.max(10, Math.floor(headersTimeout / 4))),
  )

  const listener = (req: IncomingMessage, res: ServerResponse): void => {
    let pending: Promise<void> | void
    try {
      pending = handler(req, res)
    } catch (error) {
      sendHttpError(res, error)
      return
    }

    if (pending !== undefined) {
      pending.catch((error: unknown) => {
        sendHttpError(res, error)
      })
    }
  }

  const common = {
    connectionsCheckingInterval,
    headersTimeout,
    keepAliveTimeout,
    maxHeaderSize,
    requestTimeout,
  }
  const server: Server =
    options.tls === undefined
      ? createPlainServer(common, listener)
      : (createTlsServer({...common, cert: options.tls.cert, key: options.tls.key}, listener) as unknown as Server)
  server.maxHeadersCount = maxHeadersCount
  server.headersTimeout = headersTimeout
  server.requestTimeout = requestTimeout
  server.keepAliveTimeout = keepAliveTimeout
  limitConnections(server, {
    maxConnections: positive('maxConnections', options.maxConnections, DEFAULT_MAX_SERVER_CONNECTIONS),
    maxPerAddress: positive('maxConnectionsPerAddress', options.maxConnectionsPerAddress, DEFAULT_MAX_SERVER_CONNECTIONS_PER_ADDRESS),
    onRefused: options.onConnectionRefused,
    tls: options.tls !== undefined,
  })
  return server
}

/**
 * Count open connections in total and per remote address; refuse new ones over a cap before
 * node parses them. A plain-HTTP refusal gets a short 503/429 answer with `Retry-After`; a TLS
 * one is reset (an answer would need the handshake the cap is there to avoid).
 */
function limitConnections(
  server: Server,
  options: {maxConnections: number; maxPerAddress: number; tls: boolean; onRefused?: (address: string, reason: 'total' | 'per-address') => void},
): void {
  const perAddress = new Map<string, number>()
  let open = 0
  // Before node's own listener, so a refused connection is never parsed.
  server.prependListener('connection', (socket: Socket) => {
    const address = socket.remoteAddress ?? 'unknown'
    const count = perAddress.get(address) ?? 0
    const reason = open >= options.maxConnections ? 'total' : count >= options.maxPerAddress ? 'per-address' : undefined
    if (reason !== undefined) {
      socket.on('error', () => {})
      try {
        options.onRefused?.(address, reason)
      } catch {
        // Counting must not break refusing.
      }

      if (options.tls) {
        socket.destroy()
        return
      }

      const status = reason === 'total' ? 503 : 429
      const body = JSON.stringify({
        description: reason === 'total' ? 'too many connections; try again later' : 'too many connections from this address; try again later',
        err: 'invalid_request',
      })
      socket.end(
        `HTTP/1.1 ${status} ${STATUS_CODES[status] ?? ''}\r\nConnection: close\r\nRetry-After: 5\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`,
      )
      // Never read what it sends; drop it if it does not go away.
      socket.pause()
      setTimeout(() => socket.destroy(), 1000).unref()
      return
    }

    open++
    perAddress.set(address, count + 1)
    socket.once('close', () => {
      open--
      const left = (perAddress.get(address) ?? 1) - 1
      if (left <= 0) perAddress.delete(address)
      else perAddress.set(address, left)
    })
  })
}

/** Start listening; resolves with the bound address (pass port 0 for any free port). */
export async function listenHttpServer(server: Server, port: number, host: string): Promise<AddressInfo> {
  await new Promise<void>((resolve, reject) => {
    const onError = (error: Error): void => {
      server.off('listening', onListening)
      const code = (error as {code?: string}).code
      reject(new PushpullError('ERR_CONFIG', `cannot listen on ${host}:${port}: ${code === 'EADDRINUSE' ? 'the address is already in use' : error.message}`, {cause: error}))
    }

    const onListening = (): void => {
      server.off('error', onError)
      resolve()
    }

    server.once('error', onError)
    server.once('listening', onListening)
    server.listen(port, host)
  })
  return server.address() as AddressInfo
}

/**
 * Stop accepting connections, let requests in flight finish for up to `graceMs`, then cut what is
 * left. Idle keep-alive connections are closed at once.
 */
export async function closeHttpServer(server: Server, graceMs = 5000): Promise<void> {
  if (!server.listening) return
  const closed = new Promise<void>((resolve) => {
    server.close(() => resolve())
  })
  server.closeIdleConnections()
  let timer: NodeJS.Timeout | undefined
  const cut = new Promise<void>((resolve) => {
    timer = setTimeout(() => {
      server.closeAllConnections()
      resolve()
    }, graceMs)
    timer.unref()
  })
  await Promise.race([closed, cut])
  clearTimeout(timer)
  await closed
}

// ---------------------------------------------------------------------------------------------
// Bodies

export interface ReadBodyOptions {
  /** Largest body accepted, in bytes; over it: ERR_LIMIT_EXCEEDED with details.status 413. */
  maxBytes: number
  /** Give up when the body is not complete after this many ms: ERR_TIMEOUT, details.status 408. */
  timeoutMs?: number
}

/**
 * Read a request body into a Buffer, bounded. A declared Content-Length over the limit fails at
 * once without reading a byte; a chunked body fails as soon as it crosses the limit, and reading
 * stops there (memory stays flat). On failure the socket is left paused and the error response
 * (`sendHttpError`) carries `Connection: close`, so the rest of the body is never read.
 */
export async function readBody(req: IncomingMessage, options: ReadBodyOptions): Promise<Buffer> {
  const {maxBytes} = options
  if (!Number.isSafeInteger(maxBytes) || maxBytes < 0) {
    throw new PushpullError('ERR_CONFIG', `maxBytes must be a non-negative integer, got ${String(maxBytes)}`)
  }

  const tooLarge = (): PushpullError =>
    new PushpullError('ERR_LIMIT_EXCEEDED', `the request body is larger than the limit of ${maxBytes} bytes`, {
      details: {limit: maxBytes, status: 413},
    })

  const declared = req.headers['content-length']
  if (declared !== undefined && /^\d+$/.test(declared) && Number(declared) > maxBytes) {
    req.pause()
    throw tooLarge()
  }

  if (req.readableEnded) throw new PushpullError('ERR_INTERNAL', 'readBody was called on a request whose body was already read')

  return new Promise<Buffer>((resolve, reject) => {
    const chunks: Buffer[] = []
    let size = 0
    let timer: NodeJS.Timeout | undefined
    const cleanup = (): void => {
      clearTimeout(timer)
      req.off('data', onData)
      req.off('end', onEnd)
      req.off('error', onError)
      req.off('aborted', onAborted)
      req.off('close', onClose)
    }

    const fail = (error: PushpullError): void => {
      cleanup()
      req.pause()
      reject(error)
    }

    const onData = (chunk: Buffer): void => {
      size += chunk.length
      if (size > maxBytes) {
        chunks.length = 0
        fail(tooLarge())
        return
      }

      chunks.push(chunk)
    }

    const onEnd = (): void => {
      cleanup()
      resolve(Buffer.concat(chunks, size))
    }

    const onError = (error: Error): void => {
      const code = (error as {code?: string}).code
      if (code === 'ERR_HTTP_REQUEST_TIMEOUT') {
        fail(new PushpullError('ERR_TIMEOUT', 'the request body did not arrive in time', {cause: error, details: {status: 408}}))
        return
      }

      fail(new PushpullError('ERR_CONNECT', `the client connection failed while sending the body: ${error.message}`, {cause: error, details: {status: 400}}))
    }

    const onAborted = (): void => {
      fail(new PushpullError('ERR_CONNECT', 'the client closed the connection before sending the whole body', {details: {status: 400}}))
    }

    const onClose = (): void => {
      if (!req.complete) onAborted()
    }

    if (options.timeoutMs !== undefined) {
      timer = setTimeout(() => {
        fail(new PushpullError('ERR_TIMEOUT', `the request body did not arrive within ${options.timeoutMs} ms`, {details: {status: 408}}))
      }, options.timeoutMs)
    }

    req.on('data', onData)
    req.on('end', onEnd)
    req.on('error', onError)
    req.on('aborted', onAborted)
    req.on('close', onClose)
  })
}

// ---------------------------------------------------------------------------------------------
// Responses

function writable(res: ServerResponse): boolean {
  return !res.headersSent && !res.writableEnded && !res.destroyed && res.socket?.destroyed !== true
}

/** Send `value` as JSON with `status`. Does nothing when a response was already started. */
export function sendJson(res: ServerResponse, status: number, value: unknown, headers: Readonly<Record<string, string>> = {}): void {
  if (!writable(res)) return
  const body = Buffer.from(JSON.stringify(value))
  res.writeHead(status, {
    'cache-control': 'no-store',
    'content-length': String(body.length),
    'content-type': 'application/json',
    ...headers,
  })
  res.end(body)
}

/** An RFC 8935 error answer: `{"err","description"}` with `Content-Language: en` (default 400). */
export function sendSetError(res: ServerResponse, status: number, err: SetErrCode, description: string, headers: Readonly<Record<string, string>> = {}): void {
  sendJson(res, status, {description, err}, {'content-language': 'en', ...headers})
}

function defaultErrFor(status: number): SetErrCode {
  if (status === 401) return 'authentication_failed'
  if (status === 403) return 'access_denied'
  return 'invalid_request'
}

/**
 * A JSON error for statuses other than a SET rejection (405, 408, 413, 415, 421 ...): the same
 * `{"err","description"}` shape, so every pushpull error body parses alike. 408 and 413 close the
 * connection (the rest of the request is never read).
 */
export function sendProblem(res: ServerResponse, status: number, description: string, options: {err?: SetErrCode; headers?: Readonly<Record<string, string>>} = {}): void {
  const headers: Record<string, string> = status === 408 || status === 413 ? {connection: 'close'} : {}
  sendSetError(res, status, options.err ?? defaultErrFor(status), description, {...headers, ...options.headers})
}

/**
 * Answer a thrown error. A PushpullError with `details.status` gets that status, its message as the
 * description, `details.err` (else a default for the status) and `details.headers`; anything else
 * is a 500 whose body says nothing about internals.
 */
export function sendHttpError(res: ServerResponse, error: unknown): void {
  if (error instanceof PushpullError && typeof error.details.status === 'number') {
    const {err, headers, status} = error.details as {err?: SetErrCode; headers?: Record<string, string>; status: number}
    sendProblem(res, status, error.message, {err, headers})
    return
  }

  sendProblem(res, 500, 'internal error', {headers: {connection: 'close'}})
}

// ---------------------------------------------------------------------------------------------
// Guards: each returns normally or throws a PushpullError carrying the HTTP answer.

/** 405 with `Allow` unless the method is one of `allowed`. */
export function checkMethod(req: IncomingMessage, allowed: readonly string[]): void {
  const method = req.method ?? ''
  if (allowed.includes(method)) return
  throw new PushpullError('ERR_MESSAGE_INVALID', `method ${method || '(none)'} is not allowed here; use ${allowed.join(' or ')}`, {
    details: {headers: {allow: allowed.join(', ')}, status: 405},
  })
}

/**
 * 415 unless the Content-Type's media type is one of `allowed` (case-insensitive; parameters such
 * as `charset=utf-8` are accepted, a charset other than UTF-8 is not). Returns the matched type
 * from `allowed`, so one endpoint can dispatch on it.
 */
export function checkContentType(req: IncomingMessage, allowed: readonly string[]): string {
  const header = req.headers['content-type'] ?? ''
  const [mediaType = '', ...params] = header.split(';')
  const type = mediaType.trim().toLowerCase()
  const match = allowed.find((candidate) => candidate.toLowerCase() === type)
  const charset = params
    .map((param) => param.trim().toLowerCase())
    .find((param) => param.startsWith('charset='))
    ?.slice('charset='.length)
    .replaceAll('"', '')
  if (match !== undefined && (charset === undefined || charset === 'utf-8' || charset === 'utf8')) return match
  const got = header === '' ? 'no Content-Type' : `Content-Type ${JSON.stringify(header.slice(0, 100))}`
  throw new PushpullError('ERR_MESSAGE_INVALID', `${got} is not accepted here; send ${allowed.join(' or ')} (UTF-8)`, {
    details: {status: 415},
  })
}

function digest(value: string): Buffer {
  return createHash('sha256').update(value, 'utf8').digest()
}

/**
 * 401 with `WWW-Authenticate: Bearer` unless `Authorization: Bearer <expected>`. The comparison is
 * constant-time (over SHA-256 digests, so lengths leak nothing either) and no token appears in the
 * error.
 */
export function checkBearer(req: IncomingMessage, expected: string): void {
  const header = req.headers.authorization
  const match = header === undefined ? null : /^bearer +(\S+) *$/i.exec(header)
  if (match === null) {
    throw new PushpullError('ERR_CREDENTIALS', 'a bearer token is required (Authorization: Bearer ...)', {
      details: {err: 'authentication_failed', headers: {'www-authenticate': 'Bearer realm="pushpull"'}, status: 401},
    })
  }

  const given = match[1] ?? ''
  if (!timingSafeEqual(digest(given), digest(expected))) {
    throw new PushpullError('ERR_CREDENTIALS', 'the bearer token is not valid', {
      details: {err: 'authentication_failed', headers: {'www-authenticate': 'Bearer realm="pushpull", error="invalid_token"'}, status: 401},
    })
  }
}

const QUERY_TOKEN_PARAMS = new Set(['access_token', 'token'])

/** 400 when the query string carries `access_token` or `token` (RFC 6750 section 2.3 is refused). */
export function rejectTokenInQuery(req: IncomingMessage): void {
  const url = req.url ?? '/'
  const query = url.indexOf('?')
  if (query === -1) return
  const params = new URLSearchParams(url.slice(query + 1))
  for (const name of params.keys()) {
    if (QUERY_TOKEN_PARAMS.has(name.toLowerCase())) {
      throw new PushpullError('ERR_MESSAGE_INVALID', `tokens are not accepted in the query string ("${name}" was refused and ignored); send Authorization: Bearer instead`, {
        details: {status: 400},
      })
    }
  }
}

/** The request path without its query string: safe to log (query strings may hold secrets). */
export function requestPath(req: IncomingMessage): string {
  const url = req.url ?? '/'
  const query = url.indexOf('?')
  return query === -1 ? url : url.slice(0, query)
}

export interface HostOriginOptions {
  /** Accepted `Host` values, lower-case `host:port` (see `servedHosts`). */
  allowedHosts: readonly string[]
  /** Accepted `Origin` values (exact, e.g. `https://console.example`). Default: none. */
  allowedOrigins?: readonly string[]
  /** Used when a Host header has no port. Default false (port 80). */
  tls?: boolean
}

/** `host[:port]` lower-cased with the default port filled in; undefined when it is not a host. */
function normalizeHost(value: string, tls: boolean): string | undefined {
  const lower = value.trim().toLowerCase()
  const match = /^(\[[\da-f:.]+\]|[^:[\]\s]+)(?::(\d{1,5}))?$/.exec(lower)
  if (match === null) return undefined
  const name = (match[1] ?? '').replace(/\.$/, '')
  return `${name}:${match[2] ?? (tls ? 443 : 80)}`
}

function formatHost(address: string, port: number): string {
  return address.includes(':') ? `[${address}]:${port}` : `${address}:${port}`
}

const LOOPBACK_NAMES = ['localhost', '127.0.0.1', '[::1]']

/**
 * The `Host` values a server bound to `host:port` answers to: for a loopback bind, `localhost`,
 * `127.0.0.1` and `[::1]` with the port; for a wildcard bind (`0.0.0.0`, `::`), those plus every
 * local interface address; for any other address, that address. `names` adds configured host
 * names without a port (for example the name in a TLS certificate), served on the same port.
 */
export function servedHosts(host: string, port: number, names: readonly string[] = []): string[] {
  const hosts = new Set<string>()
  const bare = host.replace(/^\[|\]$/g, '').toLowerCase()
  const loopback = bare === 'localhost' || bare === '::1' || bare.startsWith('127.')
  const wildcard = bare === '0.0.0.0' || bare === '::' || bare === ''
  if (loopback || wildcard) for (const name of LOOPBACK_NAMES) hosts.add(`${name}:${port}`)
  if (wildcard) {
    for (const addresses of Object.values(networkInterfaces())) {
      for (const info of addresses ?? []) hosts.add(formatHost(info.address.toLowerCase(), port))
    }
  } else {
    hosts.add(formatHost(bare, port))
  }

  for (const name of names) hosts.add(formatHost(name.replace(/^\[|\]$/g, '').toLowerCase(), port))
  return [...hosts]
}

/**
 * Refuse what a web page could make a browser send to a local listener: a `Host` that is not one
 * of `allowedHosts` (DNS rebinding) is answered 421, and any request carrying an `Origin` header
 * (browsers send it; SET peers do not) is answered 403 unless that origin is allowed.
 */
export function checkHostAndOrigin(req: IncomingMessage, options: HostOriginOptions): void {
  const host = req.headers.host
  const tls = options.tls === true
  const allowed = new Set(options.allowedHosts.map((value) => normalizeHost(value, tls)))
  const normalized = host === undefined ? undefined : normalizeHost(host, tls)
  if (normalized === undefined || !allowed.has(normalized)) {
    const shown = host === undefined ? 'no Host header' : `Host ${JSON.stringify(host.slice(0, 100))}`
    throw new PushpullError('ERR_MESSAGE_INVALID', `${shown} is not served here`, {details: {status: 421}})
  }

  const origin = req.headers.origin
  if (origin !== undefined && !(options.allowedOrigins ?? []).includes(origin)) {
    throw new PushpullError('ERR_CREDENTIALS', 'requests from web pages (with an Origin header) are refused', {
      details: {err: 'access_denied', status: 403},
    })
  }
}
