/**
 * The client side of the pushpull WebSocket binding: one upgrade with subprotocol `pushpull`,
 * bearer token and headers, TLS options, a handshake timeout, and every handshake failure mapped
 * to a PushpullError with the HTTP status where there is one.
 */
import type {ClientRequest, IncomingMessage} from 'node:http'
import {rootCertificates} from 'node:tls'

import WebSocket from 'ws'

import {PushpullError} from '../errors.js'
import {sanitizeText} from '../text.js'
import {PushpullSocket, resolveSocketOptions, type SocketOptions, SUBPROTOCOL} from './ws-socket.js'

export const DEFAULT_HANDSHAKE_TIMEOUT_MS = 10_000
/** Bytes of a refused upgrade's response body kept (sanitised) in the error. */
export const DEFAULT_MAX_ERROR_BODY_BYTES = 512

export interface ConnectOptions extends SocketOptions {
  /** Sent as `Authorization: Bearer <token>` on the upgrade request. Never logged. */
  token?: string
  /** Extra request headers for the upgrade (not Authorization, Host or the WebSocket headers). */
  headers?: Readonly<Record<string, string>>
  /** Extra trusted CA certificates (PEM file contents), trusted next to Node's default CA set. */
  ca?: string | Buffer
  /** Skip certificate verification (the user asked for it explicitly). Default false. */
  insecure?: boolean
  /** Time for connect, TLS and the upgrade together, in ms. Default 10 000. */
  handshakeTimeoutMs?: number
  /** Bytes of a refused upgrade's body kept in the error. Default 512. */
  maxErrorBodyBytes?: number
  /** Aborts the handshake (ERR_ABORTED). It does not close an established connection. */
  signal?: AbortSignal
}

const RESERVED_HEADERS = new Set([
  'authorization',
  'host',
  'connection',
  'upgrade',
  'sec-websocket-key',
  'sec-websocket-version',
  'sec-websocket-protocol',
  'sec-websocket-extensions',
  'content-length',
  'transfer-encoding',
])

const CONNECT_ERRORS = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ENOTFOUND',
  'EAI_AGAIN',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'EHOSTDOWN',
  'ENETDOWN',
  'EPIPE',
  'ECONNABORTED',
  'EADDRNOTAVAIL',
])

const TLS_ERROR = /^(ERR_TLS_|ERR_SSL_|CERT_|UNABLE_TO_|DEPTH_ZERO_SELF_SIGNED_CERT|SELF_SIGNED_CERT|HOSTNAME_MISMATCH|EPROTO$)/

/** Token characters of RFC 6750 `b64token`. */
const B64TOKEN = /^[\w.~+/-]+=*$/

/** A URL for messages: scheme, host and path only (never userinfo or query, which may hold secrets). */
export function displayUrl(url: URL): string {
  return `${url.protocol}//${url.host}${url.pathname}`
}

/** Parse and check a WebSocket URL: ws, wss, or http(s) mapped to ws(s). */
export function toWebSocketUrl(input: string | URL): URL {
  let url: URL
  try {
    url = new URL(input)
  } catch (error) {
    throw new PushpullError('ERR_USAGE', 'not a valid URL for a WebSocket session', {cause: error})
  }

  if (url.protocol === 'http:') url.protocol = 'ws:'
  else if (url.protocol === 'https:') url.protocol = 'wss:'
  if (url.protocol !== 'ws:' && url.protocol !== 'wss:') {
    throw new PushpullError('ERR_USAGE', `a WebSocket URL must start with ws://, wss://, http:// or https://, got ${url.protocol}`)
  }

  if (url.username !== '' || url.password !== '') {
    throw new PushpullError('ERR_USAGE', 'credentials in the URL are not supported; pass a bearer token instead')
  }

  for (const name of url.searchParams.keys()) {
    if (/^(access_token|token|bearer)$/i.test(name)) {
      throw new PushpullError('ERR_USAGE', `tokens are never sent in the query string (found "${name}"); pass a bearer token instead`)
    }
  }

  if (url.hash !== '') url.hash = ''
  return url
}

function checkHeaders(options: ConnectOptions): Record<string, string> {
  const headers: Record<string, string> = {}
  for (const [name, value] of Object.entries(options.headers ?? {})) {
    if (!/^[!#$%&'*+.^`|~\w-]+$/.test(name)) {
      throw new PushpullError('ERR_USAGE', `"${sanitizeText(name, 60)}" is not a valid header name`)
    }

    if (RESERVED_HEADERS.has(name.toLowerCase())) {
      throw new PushpullError('ERR_USAGE', `header ${name} cannot be set by hand on a WebSocket upgrade${name.toLowerCase() === 'authorization' ? '; use the bearer token option' : ''}`)
    }

    if (/[\r\n\0]/.test(value)) {
      throw new PushpullError('ERR_USAGE', `the value of header ${name} contains a line break or NUL`)
    }

    headers[name] = value
  }

  if (options.token !== undefined) {
    if (!B64TOKEN.test(options.token)) {
      throw new PushpullError('ERR_USAGE', 'the bearer token contains characters a token cannot have (RFC 6750 b64token)')
    }

    headers.Authorization = `Bearer ${options.token}`
  }

  return headers
}

function mapConnectError(error: Error & {code?: string}, url: URL, timeoutMs: number): PushpullError {
  const where = displayUrl(url)
  const code = error.code ?? ''
  if (CONNECT_ERRORS.has(code)) {
    return new PushpullError('ERR_CONNECT', `cannot connect to ${where}: ${error.message}`, {cause: error, details: {errno: code}})
  }

  if (TLS_ERROR.test(code) || /certificate|ssl|tls/i.test(error.message)) {
    return new PushpullError('ERR_TLS', `TLS handshake with ${url.host} failed: ${error.message}`, {cause: error, details: {errno: code}})
  }

  if (error.message.startsWith('Server sent no subprotocol') || error.message.startsWith('Server sent an invalid subprotocol')) {
    return new PushpullError('ERR_WS_HANDSHAKE', `server did not accept subprotocol ${SUBPROTOCOL} (${where})`, {cause: error, details: {status: 101}})
  }

  if (error.message.startsWith('Opening handshake has timed out')) {
    return new PushpullError('ERR_TIMEOUT', `WebSocket handshake with ${where} timed out after ${timeoutMs} ms`, {cause: error})
  }

  if (/^(Invalid|Server sent|Server indicated)/.test(error.message)) {
    return new PushpullError('ERR_WS_HANDSHAKE', `invalid WebSocket upgrade response from ${where}: ${error.message}`, {cause: error, details: {status: 101}})
  }

  if (error.message === 'socket hang up') {
    return new PushpullError('ERR_CONNECT', `the connection to ${where} closed before the upgrade completed`, {cause: error, details: {errno: code}})
  }

  return new PushpullError('ERR_CONNECT', `WebSocket connection to ${where} failed: ${error.message}`, {cause: error, details: {errno: code}})
}

function statusError(url: URL, status: number, body: string, retryAfter: string | undefined): PushpullError {
  const where = displayUrl(url)
  const excerpt = sanitizeText(body.trim(), 200)
  const details: Record<string, unknown> = {status}
  if (excerpt !== '') details.body = excerpt
  if (retryAfter !== undefined) details.retryAfter = sanitizeText(retryAfter, 40)
  const suffix = excerpt === '' ? '' : `: ${excerpt}`
  if (status === 401 || status === 403) {
    return new PushpullError(
      'ERR_CREDENTIALS',
      `${where} refused the WebSocket upgrade with ${status}; check the bearer token${suffix}`,
      {details},
    )
  }

  return new PushpullError('ERR_WS_HANDSHAKE', `${where} refused the WebSocket upgrade with HTTP ${status}${suffix}`, {details})
}

/**
 * Open a pushpull WebSocket session. Resolves once the server selected `pushpull`; rejects with
 * ERR_USAGE / ERR_CONFIG (bad options), ERR_CONNECT, ERR_TLS, ERR_TIMEOUT, ERR_CREDENTIALS (401/403),
 * ERR_WS_HANDSHAKE (any other refusal, `details.status`) or ERR_ABORTED.
 */
export async function connectWebSocket(input: string | URL, options: ConnectOptions = {}): Promise<PushpullSocket> {
  const url = toWebSocketUrl(input)
  const socketOptions = resolveSocketOptions(options)
  const headers = checkHeaders(options)
  const timeoutMs = options.handshakeTimeoutMs ?? DEFAULT_HANDSHAKE_TIMEOUT_MS
  if (!Number.isSafeInteger(timeoutMs) || timeoutMs < 1) {
    throw new PushpullError('ERR_CONFIG', `handshakeTimeoutMs must be an integer >= 1, got ${String(timeoutMs)}`)
  }

  const maxErrorBodyBytes = options.maxErrorBodyBytes ?? DEFAULT_MAX_ERROR_BODY_BYTES
  const {signal} = options
  if (signal?.aborted) {
    throw new PushpullError('ERR_ABORTED', `WebSocket connection to ${displayUrl(url)} aborted before it started`, {cause: signal.reason})
  }

  const ws = new WebSocket(url, [SUBPROTOCOL], {
    headers,
    perMessageDeflate: false,
    maxPayload: socketOptions.maxPayload,
    followRedirects: false,
    autoPong: true,
    skipUTF8Validation: false,
    // Node's `ca` replaces the default set; keep the defaults and add the user's CA file.
    ...(options.ca === undefined ? {} : {ca: [...rootCertificates, options.ca]}),
    rejectUnauthorized: options.insecure !== true,
    // ws 8.23 option, missing from @types/ws 8.18.
    ...({closeTimeout: socketOptions.closeTimeoutMs} as object),
  })

  return new Promise<PushpullSocket>((resolve, reject) => {
    let settled = false
    let remoteAddress: string | undefined
    const cleanup = (): void => {
      clearTimeout(timer)
      signal?.removeEventListener('abort', onAbort)
      ws.removeListener('open', onOpen)
      ws.removeListener('upgrade', onUpgrade)
      ws.removeListener('unexpected-response', onUnexpectedResponse)
    }

    const fail = (error: PushpullError): void => {
      if (settled) return
      settled = true
      cleanup()
      // Keep an error listener so a late ws error cannot crash the process.
      ws.on('error', () => {})
      ws.terminate()
      reject(error)
    }

    const onOpen = (): void => {
      if (settled) return
      settled = true
      cleanup()
      ws.removeListener('error', onError)
      resolve(new PushpullSocket(ws, socketOptions, {side: 'client', remoteAddress}))
    }

    const onUpgrade = (res: IncomingMessage): void => {
      remoteAddress = res.socket.remoteAddress
    }

    const onError = (error: Error & {code?: string}): void => fail(mapConnectError(error, url, timeoutMs))

    const onAbort = (): void =>
      fail(new PushpullError('ERR_ABORTED', `WebSocket connection to ${displayUrl(url)} aborted`, {cause: signal?.reason}))

    const onUnexpectedResponse = (request: ClientRequest, res: IncomingMessage): void => {
      const status = res.statusCode ?? 0
      const retryAfter = typeof res.headers['retry-after'] === 'string' ? res.headers['retry-after'] : undefined
      const chunks: Buffer[] = []
      let size = 0
      const finish = (): void => {
        res.removeAllListeners('data')
        res.destroy()
        request.destroy()
        fail(statusError(url, status, Buffer.concat(chunks).toString('utf8'), retryAfter))
      }

      res.on('data', (chunk: Buffer) => {
        const room = maxErrorBodyBytes - size
        if (room > 0) chunks.push(chunk.subarray(0, room))
        size += chunk.length
        if (size >= maxErrorBodyBytes) finish()
      })
      res.on('end', finish)
      res.on('error', finish)
      res.on('close', finish)
    }

    const timer = setTimeout(
      () => fail(new PushpullError('ERR_TIMEOUT', `WebSocket handshake with ${displayUrl(url)} timed out after ${timeoutMs} ms`, {details: {timeoutMs}})),
      timeoutMs,
    )
    ws.on('open', onOpen)
    ws.on('error', onError)
    ws.on('upgrade', onUpgrade)
    ws.on('unexpected-response', onUnexpectedResponse)
    signal?.addEventListener('abort', onAbort, {once: true})
  })
}
