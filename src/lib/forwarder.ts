/**
 * The `listen --forward-to URL` relay: every accepted new SET is pushed on to a downstream
 * receiver as an RFC 8935 push (one SET per POST, `Content-Type: application/secevent+jwt`).
 *
 * Best effort and bounded: at most `concurrency` pushes run at once and at most `maxQueue` wait;
 * a SET that finds the queue full is reported (`ok: false`, ERR_LIMIT_EXCEEDED) and not relayed.
 * The relay happens after the SET was stored and acknowledged to its sender, so a downstream
 * failure never makes the upstream peer redeliver; each outcome is reported through `onResult`
 * with the downstream status and a truncated, sanitised body (never credentials).
 */
import {PushpullError, toPushpullError} from './errors.js'
import {sanitizeText} from './text.js'
import {checkPeerUrl, type HttpClient, redactUrl} from './transport/http.js'

export const DEFAULT_FORWARD_CONCURRENCY = 4
export const DEFAULT_FORWARD_MAX_QUEUE = 1000
export const DEFAULT_FORWARD_BODY_PREVIEW = 200

export interface ForwarderOptions {
  /** The downstream RFC 8935 endpoint. */
  url: string
  /** The HTTP client (its token, CA file and timeouts apply). The caller closes it. */
  client: HttpClient
  /** Pushes in flight at once. Default 4. */
  concurrency?: number
  /** SETs waiting to be pushed; more are dropped and reported. Default 1000. */
  maxQueue?: number
  /** Characters of the downstream body kept in a result. Default 200. */
  bodyPreviewChars?: number
  /** Called once per SET with the outcome. */
  onResult: (result: ForwardResult) => void
}

export interface ForwardResult {
  jti: string
  /** The downstream URL without credentials or query. */
  url: string
  /** True for a 202 (or any 2xx) answer. */
  ok: boolean
  status?: number
  /** The downstream body, sanitised and truncated ('' when empty). */
  body?: string
  /** Why the push failed when there is no status (network, timeout, queue full). */
  error?: {code: string; message: string}
}

function positive(name: string, value: number | undefined, fallback: number): number {
  const result = value ?? fallback
  if (!Number.isSafeInteger(result) || result < 1) throw new PushpullError('ERR_CONFIG', `forward ${name} must be a positive integer, got ${String(value)}`)
  return result
}

export class Forwarder {
  readonly url: string
  private readonly target: URL
  private readonly client: HttpClient
  private readonly concurrency: number
  private readonly maxQueue: number
  private readonly preview: number
  private readonly onResult: (result: ForwardResult) => void
  private readonly queue: Array<{jti: string; token: string}> = []
  private readonly controller = new AbortController()
  private running = 0
  private idleWaiters: Array<() => void> = []

  constructor(options: ForwarderOptions) {
    this.target = checkPeerUrl(options.url)
    this.url = redactUrl(this.target)
    this.client = options.client
    this.concurrency = positive('concurrency', options.concurrency, DEFAULT_FORWARD_CONCURRENCY)
    this.maxQueue = positive('maxQueue', options.maxQueue, DEFAULT_FORWARD_MAX_QUEUE)
    this.preview = positive('bodyPreviewChars', options.bodyPreviewChars, DEFAULT_FORWARD_BODY_PREVIEW)
    this.onResult = options.onResult
  }

  /** SETs queued or being pushed. */
  get pending(): number {
    return this.queue.length + this.running
  }

  /** Queue one SET for relay. Returns false (and reports it) when the queue is full. */
  forward(jti: string, token: string): boolean {
    if (this.controller.signal.aborted || this.queue.length >= this.maxQueue) {
      const message = this.controller.signal.aborted
        ? 'the relay is shutting down'
        : `the relay queue is full (${this.maxQueue} SETs waiting); this SET is not forwarded`
      this.onResult({error: {code: this.controller.signal.aborted ? 'ERR_ABORTED' : 'ERR_LIMIT_EXCEEDED', message}, jti, ok: false, url: this.url})
      return false
    }

    this.queue.push({jti, token})
    this.pump()
    return true
  }

  /**
   * Wait until every queued push finished. When `signal` aborts (or after `timeoutMs`), pushes
   * still waiting are reported as not forwarded and those in flight are cancelled.
   */
  async drain(options: {signal?: AbortSignal; timeoutMs?: number} = {}): Promise<void> {
    if (this.pending === 0) return
    const idle = new Promise<void>((resolve) => this.idleWaiters.push(resolve))
    let timer: NodeJS.Timeout | undefined
    const stop = new Promise<void>((resolve) => {
      if (options.timeoutMs !== undefined) timer = setTimeout(resolve, options.timeoutMs)
      if (options.signal !== undefined) {
        if (options.signal.aborted) resolve()
        else options.signal.addEventListener('abort', () => resolve(), {once: true})
      }
    })
    await Promise.race([idle, stop])
    clearTimeout(timer)
    if (this.pending > 0) {
      this.abort()
      await idle
    }
  }

  /** Cancel: drop what waits (reported as not forwarded) and abort pushes in flight. */
  abort(): void {
    this.controller.abort(new PushpullError('ERR_ABORTED', 'the relay was stopped'))
    for (const item of this.queue.splice(0)) {
      this.onResult({error: {code: 'ERR_ABORTED', message: 'the relay was stopped before this SET was forwarded'}, jti: item.jti, ok: false, url: this.url})
    }

    this.settle()
  }

  private pump(): void {
    while (this.running < this.concurrency && this.queue.length > 0) {
      const item = this.queue.shift()!
      this.running++
      void this.push(item.jti, item.token).finally(() => {
        this.running--
        this.pump()
        this.settle()
      })
    }
  }

  private settle(): void {
    if (this.pending > 0) return
    const waiters = this.idleWaiters
    this.idleWaiters = []
    for (const resolve of waiters) resolve()
  }

  private async push(jti: string, token: string): Promise<void> {
    let result: ForwardResult
    try {
      const response = await this.client.request({
        body: token,
        headers: {accept: 'application/json', 'content-type': 'application/secevent+jwt'},
        method: 'POST',
        signal: this.controller.signal,
        url: this.target,
      })
      const body = sanitizeText(response.body.toString('utf8').replaceAll(/\s+/g, ' ').trim(), this.preview)
      result = {body, jti, ok: response.status >= 200 && response.status < 300, status: response.status, url: this.url}
    } catch (error) {
      const failure = toPushpullError(error, 'ERR_CONNECT')
      result = {error: {code: failure.code, message: sanitizeText(failure.message, 300)}, jti, ok: false, url: this.url}
    }

    try {
      this.onResult(result)
    } catch {
      // A reporting failure must not stop the relay.
    }
  }
}
