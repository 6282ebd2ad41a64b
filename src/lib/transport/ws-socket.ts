/**
 * The connection wrapper both WebSocket sides share: message text in, backpressured text out,
 * close codes, heartbeat (ping/pong with zombie detection) and round-trip time.
 *
 * This layer delivers message TEXT. It never parses Communication Objects: the session layer does,
 * and calls `fail(CloseCode.INVALID_PAYLOAD, ...)` when a message is not one.
 */
import {isUtf8} from 'node:buffer'

import WebSocket from 'ws'

import {PushpullError} from '../errors.js'
import {sanitizeText} from '../text.js'

/** The subprotocol both sides must offer and select (protocol.md section 2). */
export const SUBPROTOCOL = 'pushpull'

/** Close codes pushpull sends or reports (RFC 6455 section 7.4.1; protocol.md decision 2). */
export const CloseCode = {
  /** The session ended normally. */
  NORMAL: 1000,
  /** Shutdown (SIGINT, server stopping). */
  GOING_AWAY: 1001,
  /** A frame that breaks RFC 6455 (bad opcode, unmasked client frame ...). */
  PROTOCOL_ERROR: 1002,
  /** No status code was present in the peer's close frame (reported, never sent). */
  NO_STATUS: 1005,
  /** No close frame at all: the connection dropped, was terminated, or was a zombie (reported, never sent). */
  ABNORMAL: 1006,
  /** Invalid UTF-8, invalid JSON, or a message that is not a Communication Object. */
  INVALID_PAYLOAD: 1007,
  /** Authentication or policy failure after the upgrade. */
  POLICY: 1008,
  /** A message over the size limit. */
  TOO_BIG: 1009,
  /** An unexpected condition on our side. */
  INTERNAL: 1011,
} as const

export type CloseCodeValue = (typeof CloseCode)[keyof typeof CloseCode]

export const DEFAULT_MAX_PAYLOAD = 1024 * 1024
export const DEFAULT_HIGH_WATER_MARK = 1024 * 1024
export const DEFAULT_PING_INTERVAL_MS = 30_000
export const DEFAULT_MAX_MISSED_PONGS = 2
export const DEFAULT_CLOSE_TIMEOUT_MS = 5000

/** The longest close reason a close frame can carry, in UTF-8 bytes (RFC 6455 section 5.5). */
export const MAX_CLOSE_REASON_BYTES = 123

/** Reason reported when the heartbeat gives up on a peer. */
export const ZOMBIE_REASON = 'zombie'

/** How a session ended. `code` and `reason` are what we sent when we closed it, else what the peer sent. */
export interface CloseInfo {
  code: number
  /** Sanitised for display (peer text). */
  reason: string
  /** Both close frames were exchanged (or, for a peer-initiated close, one arrived). */
  wasClean: boolean
  /** We started the close (close(), fail(), terminate(), heartbeat, or a frame we refused). */
  initiatedLocally: boolean
}

/** Timer functions the heartbeat uses; inject them to drive the heartbeat from a test. */
export interface HeartbeatTimers {
  setInterval(callback: () => void, ms: number): unknown
  clearInterval(handle: unknown): void
}

const REAL_TIMERS: HeartbeatTimers = {
  setInterval: (callback, ms) => {
    const handle = setInterval(callback, ms)
    handle.unref()
    return handle
  },
  clearInterval: (handle) => clearInterval(handle as ReturnType<typeof setInterval>),
}

/** Options shared by the client and the server connection. */
export interface SocketOptions {
  /** Largest incoming message in bytes; bigger ones close with 1009 (refused by the frame header). Default 1 MiB. */
  maxPayload?: number
  /** Largest outgoing message in bytes; bigger ones reject with ERR_LIMIT_EXCEEDED. Default: maxPayload. */
  maxSendBytes?: number
  /** send() waits for the write to flush while more than this many bytes are queued. Default 1 MiB. */
  highWaterMark?: number
  /** Ping period in ms; 0 turns the heartbeat off. Default 30 000. */
  pingIntervalMs?: number
  /** Unanswered pings after which the peer is a zombie and is terminated. Default 2. */
  maxMissedPongs?: number
  /** How long close() waits for the peer's close frame before dropping the socket. Default 5000 ms. */
  closeTimeoutMs?: number
  /** Clock for the round-trip time, in ms. Default Date.now. */
  now?: () => number
  /** Timer functions for the heartbeat. Default: the global (unref'd) setInterval/clearInterval. */
  timers?: HeartbeatTimers
}

export interface ResolvedSocketOptions {
  maxPayload: number
  maxSendBytes: number
  highWaterMark: number
  pingIntervalMs: number
  maxMissedPongs: number
  closeTimeoutMs: number
  now: () => number
  timers: HeartbeatTimers
}

function checkInteger(name: string, value: number, min: number): number {
  if (!Number.isSafeInteger(value) || value < min) {
    throw new PushpullError('ERR_CONFIG', `${name} must be an integer >= ${min}, got ${String(value)}`, {
      details: {option: name},
    })
  }

  return value
}

/** Validate the shared options up front and fill in the defaults. */
export function resolveSocketOptions(options: SocketOptions = {}): ResolvedSocketOptions {
  const maxPayload = checkInteger('maxPayload', options.maxPayload ?? DEFAULT_MAX_PAYLOAD, 1)
  return {
    maxPayload,
    maxSendBytes: checkInteger('maxSendBytes', options.maxSendBytes ?? maxPayload, 1),
    highWaterMark: checkInteger('highWaterMark', options.highWaterMark ?? DEFAULT_HIGH_WATER_MARK, 0),
    pingIntervalMs: checkInteger('pingIntervalMs', options.pingIntervalMs ?? DEFAULT_PING_INTERVAL_MS, 0),
    maxMissedPongs: checkInteger('maxMissedPongs', options.maxMissedPongs ?? DEFAULT_MAX_MISSED_PONGS, 1),
    closeTimeoutMs: checkInteger('closeTimeoutMs', options.closeTimeoutMs ?? DEFAULT_CLOSE_TIMEOUT_MS, 1),
    now: options.now ?? Date.now,
    timers: options.timers ?? REAL_TIMERS,
  }
}

/** Codes a close frame may carry (RFC 6455 section 7.4; 1005, 1006 and 1015 are never sent). */
export function isSendableCloseCode(code: number): boolean {
  return (
    Number.isInteger(code) &&
    ((code >= 1000 && code <= 1003) || (code >= 1007 && code <= 1014) || (code >= 3000 && code <= 4999))
  )
}

/** Cut a close reason to 123 UTF-8 bytes without splitting a character. */
export function truncateCloseReason(reason: string): string {
  if (Buffer.byteLength(reason) <= MAX_CLOSE_REASON_BYTES) return reason
  let out = ''
  for (const char of reason) {
    if (Buffer.byteLength(out + char) > MAX_CLOSE_REASON_BYTES) break
    out += char
  }

  return out
}

/** ws receiver error codes and the close code ws sends for each. */
function closeCodeOfWsError(code: unknown): number {
  switch (code) {
    case 'WS_ERR_UNSUPPORTED_MESSAGE_LENGTH':
    case 'WS_ERR_UNSUPPORTED_DATA_PAYLOAD_LENGTH':
    case 'WS_ERR_TOO_MANY_BUFFERED_PARTS': {
      return CloseCode.TOO_BIG
    }

    case 'WS_ERR_INVALID_UTF8': {
      return CloseCode.INVALID_PAYLOAD
    }

    default: {
      return CloseCode.PROTOCOL_ERROR
    }
  }
}

/**
 * The error a session layer should report for a close it did not ask for. Returns undefined for
 * a normal close (1000) or a shutdown (1001) that we started ourselves.
 */
export function closeErrorOf(info: CloseInfo): PushpullError | undefined {
  const details = {closeCode: info.code, closeReason: info.reason, initiatedLocally: info.initiatedLocally}
  const who = info.initiatedLocally ? 'we closed the WebSocket session' : 'the peer closed the WebSocket session'
  const why = info.reason === '' ? '' : `: ${info.reason}`
  if (info.initiatedLocally && (info.code === CloseCode.NORMAL || info.code === CloseCode.GOING_AWAY)) return undefined
  switch (info.code) {
    case CloseCode.POLICY: {
      return info.initiatedLocally
        ? new PushpullError('ERR_MESSAGE_INVALID', `${who} for a policy violation (1008)${why}`, {details})
        : new PushpullError('ERR_CREDENTIALS', `${who} for an authentication or policy failure (1008)${why}`, {details})
    }

    case CloseCode.TOO_BIG: {
      return new PushpullError('ERR_LIMIT_EXCEEDED', `${who}: message too big (1009)${why}`, {details})
    }

    case CloseCode.INVALID_PAYLOAD:
    case CloseCode.PROTOCOL_ERROR: {
      return info.initiatedLocally
        ? new PushpullError('ERR_MESSAGE_INVALID', `${who}: invalid message from the peer (${info.code})${why}`, {details})
        : new PushpullError('ERR_PEER_PROTOCOL', `${who}: it found our message invalid (${info.code})${why}`, {details})
    }

    case CloseCode.ABNORMAL: {
      const what = info.reason === ZOMBIE_REASON ? 'the peer stopped answering pings' : 'the connection was lost'
      return new PushpullError('ERR_WS_CLOSED', `WebSocket session ended abnormally (1006): ${what}`, {details})
    }

    default: {
      return new PushpullError('ERR_WS_CLOSED', `${who} (${info.code})${why}`, {details})
    }
  }
}

export interface PushpullSocketEvents {
  /** One message's text: a text frame, or a binary frame holding valid UTF-8. */
  message: (text: string) => void
  /** Fired once, when the connection is gone. */
  close: (info: CloseInfo) => void
  /** A failure worth reporting; a close event follows when the connection ends. */
  error: (error: PushpullError) => void
  /** A pong answered our latest ping. */
  pong: (rttMs: number) => void
}

type Listeners = {[E in keyof PushpullSocketEvents]: Set<PushpullSocketEvents[E]>}

type LocalClose = {kind: 'close' | 'fail' | 'terminate'; code: number; reason: string}

/**
 * One open pushpull WebSocket connection (either side). Construct it through connectWebSocket or
 * attachWebSocketServer, not directly.
 */
export class PushpullSocket {
  /** Resolves once, with how the connection ended. Never rejects. */
  readonly closed: Promise<CloseInfo>
  readonly side: 'client' | 'server'
  readonly remoteAddress: string | undefined

  private readonly ws: WebSocket
  private readonly options: ResolvedSocketOptions
  private readonly listeners: Listeners = {message: new Set(), close: new Set(), error: new Set(), pong: new Set()}
  private readonly inbox: string[] = []
  private resolveClosed!: (info: CloseInfo) => void
  private closeInfoValue: CloseInfo | undefined
  private localClose: LocalClose | undefined
  private heartbeat: unknown
  private outstandingPings = 0
  private lastPingAt: number | undefined
  private rtt: number | undefined
  private sendChain: Promise<void> = Promise.resolve()
  private queuedSends = 0
  private readonly flushWaiters = new Set<(error: PushpullError) => void>()
  private pausedByUser = false
  private flushScheduled = false

  constructor(
    ws: WebSocket,
    options: ResolvedSocketOptions,
    context: {side: 'client' | 'server'; remoteAddress?: string | undefined},
  ) {
    this.ws = ws
    this.options = options
    this.side = context.side
    this.remoteAddress = context.remoteAddress
    this.closed = new Promise<CloseInfo>((resolve) => {
      this.resolveClosed = resolve
    })
    ws.binaryType = 'nodebuffer'
    ws.on('message', (data: WebSocket.RawData, isBinary: boolean) => this.onWsMessage(data, isBinary))
    ws.on('error', (error: Error & {code?: string}) => this.onWsError(error))
    ws.on('pong', () => this.onPong())
    ws.on('close', (code: number, reason: Buffer) => this.onWsClose(code, reason))
    if (ws.readyState !== WebSocket.OPEN) {
      // Already gone (closed between the upgrade and now).
      queueMicrotask(() => this.onWsClose(CloseCode.ABNORMAL, Buffer.alloc(0)))
    } else if (options.pingIntervalMs > 0) {
      this.heartbeat = options.timers.setInterval(() => this.beat(), options.pingIntervalMs)
    }
  }

  /** Always `pushpull`: a connection exists only once both sides agreed on it. */
  get protocol(): string {
    return this.ws.protocol
  }

  /** True while messages can be sent. */
  get isOpen(): boolean {
    return this.ws.readyState === WebSocket.OPEN && this.localClose === undefined
  }

  /** Bytes queued for the peer and not yet handed to the operating system. */
  get bufferedAmount(): number {
    return this.ws.bufferedAmount
  }

  /** Round-trip time of the latest answered ping in ms, undefined before the first pong. */
  get rttMs(): number | undefined {
    return this.rtt
  }

  /** How the connection ended, once it has. */
  get closeInfo(): CloseInfo | undefined {
    return this.closeInfoValue
  }

  /**
   * Listen for an event; returns a function that removes the listener. Messages that arrive
   * before the first `message` listener is added are queued (and reading paused) until then.
   */
  on<E extends keyof PushpullSocketEvents>(event: E, listener: PushpullSocketEvents[E]): () => void {
    const set = this.listeners[event] as Set<PushpullSocketEvents[E]>
    set.add(listener)
    if (event === 'message' && this.inbox.length > 0) this.scheduleInboxFlush()
    if (event === 'close' && this.closeInfoValue !== undefined) {
      const info = this.closeInfoValue
      queueMicrotask(() => (listener as PushpullSocketEvents['close'])(info))
    }

    return () => {
      set.delete(listener)
    }
  }

  /**
   * Send one message as a text frame. Resolves once the message is queued while less than
   * `highWaterMark` bytes are buffered, otherwise once it has been flushed to the operating
   * system, so a peer that does not read cannot grow our memory. Calls are sent in order.
   * Rejects with ERR_WS_CLOSED when the session is closed or ends before a waited-for flush (the
   * message may not have reached the peer), ERR_LIMIT_EXCEEDED when the message is over
   * `maxSendBytes`. Resolution means "handed to the network", never "processed": acks say that.
   */
  send(text: string): Promise<void> {
    const bytes = Buffer.byteLength(text)
    if (bytes > this.options.maxSendBytes) {
      return Promise.reject(
        new PushpullError(
          'ERR_LIMIT_EXCEEDED',
          `message of ${bytes} bytes is over the WebSocket message limit of ${this.options.maxSendBytes} bytes`,
          {details: {bytes, limit: this.options.maxSendBytes}},
        ),
      )
    }

    if (!this.isOpen) return Promise.reject(this.notOpenError())
    // With nothing queued, write now, so a send() issued before close() goes out before the close frame.
    const result = this.queuedSends === 0 ? this.writeMessage(text) : this.sendChain.then(() => this.writeMessage(text))
    this.queuedSends++
    const settled = result.then(
      () => {
        this.queuedSends--
      },
      () => {
        this.queuedSends--
      },
    )
    this.sendChain = settled
    return result
  }

  private async writeMessage(text: string): Promise<void> {
    this.assertOpen()
    const flushed = new Promise<void>((resolve, reject) => {
      const waiter = (error: PushpullError): void => reject(error)
      this.flushWaiters.add(waiter)
      this.ws.send(text, {binary: false}, (error) => {
        this.flushWaiters.delete(waiter)
        // Node reports success for writes cut short by a destroyed socket, so check the state too.
        if (error) reject(this.closedError('the message could not be written', error))
        else if (this.ws.readyState !== WebSocket.OPEN) reject(this.closedError('the message may not have been sent'))
        else resolve()
      })
    })
    if (this.ws.bufferedAmount <= this.options.highWaterMark) {
      // Queued below the mark: do not wait. A late write error surfaces as a close.
      flushed.catch(() => {})
      return
    }

    await flushed
  }

  /** Start a normal close handshake (default 1000). Resolves with how the connection ended. */
  close(code: number = CloseCode.NORMAL, reason = ''): Promise<CloseInfo> {
    this.startClose('close', code, reason)
    return this.closed
  }

  /**
   * Close because of a protocol or policy error (1007 invalid payload, 1008 policy, 1009 too big,
   * 1011 internal). No further messages are delivered. Resolves with how the connection ended.
   */
  fail(code: number, reason: string): Promise<CloseInfo> {
    this.startClose('fail', code, reason)
    return this.closed
  }

  /** Drop the connection without a close handshake. Reported as 1006. */
  terminate(reason = 'terminated'): Promise<CloseInfo> {
    if (this.localClose === undefined || this.localClose.kind !== 'terminate') {
      if (this.closeInfoValue === undefined) this.localClose = {kind: 'terminate', code: CloseCode.ABNORMAL, reason}
    }

    this.ws.terminate()
    return this.closed
  }

  /** Stop reading from the peer (inbound backpressure). */
  pause(): void {
    this.pausedByUser = true
    this.ws.pause()
  }

  /** Read from the peer again after pause(). */
  resume(): void {
    this.pausedByUser = false
    if (this.inbox.length === 0 || this.listeners.message.size > 0) this.ws.resume()
  }

  private startClose(kind: 'close' | 'fail', code: number, reason: string): void {
    if (!isSendableCloseCode(code)) {
      throw new PushpullError('ERR_USAGE', `${String(code)} is not a close code that can be sent`, {details: {closeCode: code}})
    }

    if (this.localClose !== undefined || this.closeInfoValue !== undefined) return
    const safeReason = truncateCloseReason(reason)
    this.localClose = {kind, code, reason: safeReason}
    if (kind === 'fail') this.inbox.length = 0
    this.stopHeartbeat()
    if (this.ws.readyState === WebSocket.OPEN) this.ws.close(code, safeReason)
    else if (this.ws.readyState === WebSocket.CONNECTING) this.ws.terminate()
  }

  private notOpenError(): PushpullError {
    return new PushpullError('ERR_WS_CLOSED', 'cannot send: the WebSocket session is closed or closing', {
      details: this.closeInfoValue === undefined ? {} : {closeCode: this.closeInfoValue.code},
    })
  }

  private assertOpen(): void {
    if (!this.isOpen) throw this.notOpenError()
  }

  private closedError(message: string, cause?: unknown): PushpullError {
    return new PushpullError('ERR_WS_CLOSED', `${message}: the WebSocket session closed`, {
      cause,
      details: this.closeInfoValue === undefined ? {} : {closeCode: this.closeInfoValue.code},
    })
  }

  private onWsMessage(data: WebSocket.RawData, isBinary: boolean): void {
    if (this.localClose?.kind === 'fail' || this.localClose?.kind === 'terminate') return
    const buffer = Buffer.isBuffer(data) ? data : Array.isArray(data) ? Buffer.concat(data) : Buffer.from(data)
    if (isBinary && !isUtf8(buffer)) {
      this.emit('error', new PushpullError('ERR_MESSAGE_INVALID', 'binary WebSocket message is not valid UTF-8', {
        details: {closeCode: CloseCode.INVALID_PAYLOAD, bytes: buffer.length},
      }))
      this.startClose('fail', CloseCode.INVALID_PAYLOAD, 'binary message is not valid UTF-8')
      return
    }

    // Any message proves the peer is alive.
    this.outstandingPings = 0
    this.inbox.push(buffer.toString('utf8'))
    if (this.listeners.message.size === 0) {
      this.ws.pause()
      return
    }

    this.flushInbox()
  }

  private scheduleInboxFlush(): void {
    if (this.flushScheduled) return
    this.flushScheduled = true
    queueMicrotask(() => {
      this.flushScheduled = false
      this.flushInbox()
      if (this.inbox.length === 0 && !this.pausedByUser && this.ws.readyState === WebSocket.OPEN) this.ws.resume()
    })
  }

  private flushInbox(): void {
    while (this.inbox.length > 0 && this.listeners.message.size > 0) {
      if (this.localClose?.kind === 'fail' || this.localClose?.kind === 'terminate') {
        this.inbox.length = 0
        return
      }

      const text = this.inbox.shift() as string
      this.emit('message', text)
    }
  }

  private emit<E extends keyof PushpullSocketEvents>(event: E, ...args: Parameters<PushpullSocketEvents[E]>): void {
    for (const listener of [...this.listeners[event]]) {
      try {
        ;(listener as (...a: Parameters<PushpullSocketEvents[E]>) => void)(...args)
      } catch (error) {
        if (event === 'error' || event === 'close') continue
        // A listener bug must not escape into ws's socket handlers; end the session visibly.
        const internal = new PushpullError('ERR_INTERNAL', `a WebSocket ${event} listener threw: ${String(error)}`, {
          cause: error,
        })
        this.emit('error', internal)
        this.startClose('fail', CloseCode.INTERNAL, 'internal error')
      }
    }
  }

  private onWsError(error: Error & {code?: string}): void {
    if (typeof error.code === 'string' && error.code.startsWith('WS_ERR_')) {
      // ws refused an incoming frame and is already closing with the matching code.
      const code = closeCodeOfWsError(error.code)
      if (this.localClose === undefined) this.localClose = {kind: 'fail', code, reason: ''}
      this.stopHeartbeat()
      this.inbox.length = 0
      const pushpullCode = code === CloseCode.TOO_BIG ? 'ERR_LIMIT_EXCEEDED' : 'ERR_MESSAGE_INVALID'
      const what =
        code === CloseCode.TOO_BIG
          ? `incoming WebSocket message is over the limit of ${this.options.maxPayload} bytes`
          : code === CloseCode.INVALID_PAYLOAD
            ? 'incoming WebSocket text message is not valid UTF-8'
            : `invalid WebSocket frame from the peer: ${error.message}`
      this.emit('error', new PushpullError(pushpullCode, what, {cause: error, details: {closeCode: code}}))
      return
    }

    this.emit('error', new PushpullError('ERR_WS_CLOSED', `WebSocket connection error: ${error.message}`, {cause: error}))
  }

  private onPong(): void {
    this.outstandingPings = 0
    if (this.lastPingAt === undefined) return
    this.rtt = Math.max(0, this.options.now() - this.lastPingAt)
    this.emit('pong', this.rtt)
  }

  private beat(): void {
    if (this.ws.readyState !== WebSocket.OPEN) return
    if (this.outstandingPings >= this.options.maxMissedPongs) {
      this.stopHeartbeat()
      if (this.localClose === undefined) this.localClose = {kind: 'terminate', code: CloseCode.ABNORMAL, reason: ZOMBIE_REASON}
      this.ws.terminate()
      return
    }

    this.outstandingPings++
    this.lastPingAt = this.options.now()
    try {
      this.ws.ping()
    } catch {
      // The socket is closing; the close event reports it.
    }
  }

  private stopHeartbeat(): void {
    if (this.heartbeat === undefined) return
    this.options.timers.clearInterval(this.heartbeat)
    this.heartbeat = undefined
  }

  private onWsClose(receivedCode: number, receivedReason: Buffer): void {
    if (this.closeInfoValue !== undefined) return
    this.stopHeartbeat()
    const local = this.localClose
    let info: CloseInfo
    if (local === undefined) {
      info = {
        code: receivedCode,
        reason: sanitizeText(receivedReason.toString('utf8')),
        wasClean: receivedCode !== CloseCode.ABNORMAL,
        initiatedLocally: false,
      }
    } else if (local.kind === 'terminate') {
      info = {code: CloseCode.ABNORMAL, reason: local.reason, wasClean: false, initiatedLocally: true}
    } else {
      info = {
        code: local.code,
        reason: local.reason,
        wasClean: receivedCode !== CloseCode.ABNORMAL,
        initiatedLocally: true,
      }
    }

    this.closeInfoValue = info
    const error = this.closedError('the message was not flushed')
    for (const waiter of this.flushWaiters) waiter(error)
    this.flushWaiters.clear()
    // Deliver what was already received (unless we refused the peer), then report the close.
    if (local?.kind !== 'fail' && local?.kind !== 'terminate') this.flushInbox()
    this.inbox.length = 0
    this.emit('close', info)
    this.resolveClosed(info)
  }
}
