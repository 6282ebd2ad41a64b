/**
 * Token-bucket rate limits for hostile peers: one bucket per key (a remote address for HTTP
 * requests, a peer identity for WebSocket messages). A bucket holds at most `burst` tokens and
 * refills at `perSecond`; each request or message takes one. The key table is bounded
 * (`maxKeys`): when full, buckets that have refilled completely (idle peers) are dropped first,
 * then the oldest, so a peer cycling through addresses cannot grow memory.
 *
 * The clock is injected (`now()`, ms) so tests never sleep.
 */
import {PushpullError} from './errors.js'

/** HTTP requests per second per remote address (listen). */
export const DEFAULT_REQUEST_RATE = 1000
/**
 * WebSocket messages per second per peer (listen --ws). Well above what one session of full
 * messages needs (a session at 50,000 SETs/s in messages of 100 sends 500 a second), so a fast
 * legitimate peer is never cut off, while a flood of tiny messages still is.
 */
export const DEFAULT_MESSAGE_RATE = 2000
/** Keys tracked at most by one limiter. */
export const DEFAULT_MAX_RATE_KEYS = 10_000

export interface RateLimit {
  /** Sustained rate, tokens per second. */
  perSecond: number
  /** Bucket size (the burst allowed after a quiet period). Default 2 x perSecond. */
  burst?: number
}

export interface RateLimiterOptions extends RateLimit {
  now?: () => number
  /** Keys tracked at most. Default 10 000. */
  maxKeys?: number
}

interface Bucket {
  tokens: number
  at: number
}

/** Check a rate flag/option: a positive finite number. */
export function checkRate(name: string, value: number): number {
  if (typeof value !== 'number' || !Number.isFinite(value) || value <= 0) {
    throw new PushpullError('ERR_CONFIG', `${name} must be a positive number, got ${String(value)}`)
  }

  return value
}

export class RateLimiter {
  readonly perSecond: number
  readonly burst: number
  private readonly now: () => number
  private readonly maxKeys: number
  private readonly buckets = new Map<string, Bucket>()

  constructor(options: RateLimiterOptions) {
    this.perSecond = checkRate('perSecond', options.perSecond)
    this.burst = checkRate('burst', options.burst ?? Math.max(1, 2 * this.perSecond))
    this.now = options.now ?? Date.now
    this.maxKeys = options.maxKeys ?? DEFAULT_MAX_RATE_KEYS
    if (!Number.isSafeInteger(this.maxKeys) || this.maxKeys < 1) {
      throw new PushpullError('ERR_CONFIG', `maxKeys must be an integer >= 1, got ${String(options.maxKeys)}`)
    }
  }

  /** Take one token for `key`: true when allowed, false when over the rate. */
  take(key: string): boolean {
    const now = this.now()
    let bucket = this.buckets.get(key)
    if (bucket === undefined) {
      this.makeRoom(now)
      bucket = {at: now, tokens: this.burst}
    } else {
      // Re-insert so Map order stays "least recently used first".
      this.buckets.delete(key)
      bucket.tokens = Math.min(this.burst, bucket.tokens + (Math.max(0, now - bucket.at) * this.perSecond) / 1000)
      bucket.at = now
    }

    this.buckets.set(key, bucket)
    if (bucket.tokens < 1) return false
    bucket.tokens -= 1
    return true
  }

  /** Milliseconds until `key` may take a token again (0 when it may now). */
  retryAfterMs(key: string): number {
    const bucket = this.buckets.get(key)
    if (bucket === undefined) return 0
    const tokens = Math.min(this.burst, bucket.tokens + (Math.max(0, this.now() - bucket.at) * this.perSecond) / 1000)
    return tokens >= 1 ? 0 : Math.ceil(((1 - tokens) * 1000) / this.perSecond)
  }

  /** Keys tracked right now. */
  get size(): number {
    return this.buckets.size
  }

  forget(key: string): void {
    this.buckets.delete(key)
  }

  private makeRoom(now: number): void {
    if (this.buckets.size < this.maxKeys) return
    for (const [key, bucket] of this.buckets) {
      if (bucket.tokens + ((now - bucket.at) * this.perSecond) / 1000 >= this.burst) this.buckets.delete(key)
    }

    while (this.buckets.size >= this.maxKeys) {
      const oldest = this.buckets.keys().next()
      if (oldest.done === true) break
      this.buckets.delete(oldest.value)
    }
  }
}
