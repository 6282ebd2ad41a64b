import fc from 'fast-check'
import {describe, expect, it} from 'vitest'

import {PushpullError} from '../../src/lib/errors.js'
import {backoffDelay as ledgerBackoffDelay} from '../../src/lib/ledger.js'
import {
  backoffDelay,
  classifyError,
  classifyResponse,
  DEFAULT_BACKOFF,
  DEFAULT_RETRY_AFTER_CAP_MS,
  parseRetryAfter,
  retryDelay,
  type RetryClass,
} from '../../src/lib/retry.js'

const NOW = Date.parse('2025-06-01T12:00:00Z')

describe('parseRetryAfter', () => {
  it('reads delta-seconds', () => {
    expect(parseRetryAfter('0', NOW)).toBe(0)
    expect(parseRetryAfter('7', NOW)).toBe(7000)
    expect(parseRetryAfter(' 120 ', NOW)).toBe(120_000)
  })

  it('reads an IMF-fixdate relative to the injected clock', () => {
    expect(parseRetryAfter('Sun, 01 Jun 2025 12:00:30 GMT', NOW)).toBe(30_000)
  })

  it('reads the obsolete RFC 850 and asctime date forms', () => {
    expect(parseRetryAfter('Sunday, 01-Jun-25 12:01:00 GMT', NOW)).toBe(60_000)
    expect(parseRetryAfter('Sun Jun  1 12:00:05 2025', NOW)).toBe(5000)
  })

  it('treats a date in the past as "now"', () => {
    expect(parseRetryAfter('Sun, 01 Jun 2025 11:00:00 GMT', NOW)).toBe(0)
  })

  it('caps both forms, with the documented default cap', () => {
    expect(DEFAULT_RETRY_AFTER_CAP_MS).toBe(300_000)
    expect(parseRetryAfter('86400', NOW)).toBe(300_000)
    expect(parseRetryAfter('99999999999999999999999999', NOW)).toBe(300_000)
    expect(parseRetryAfter('Mon, 02 Jun 2025 12:00:00 GMT', NOW)).toBe(300_000)
    expect(parseRetryAfter('60', NOW, {capMs: 10_000})).toBe(10_000)
    expect(parseRetryAfter('5', NOW, {capMs: 10_000})).toBe(5000)
  })

  it('returns undefined for missing or garbage values', () => {
    for (const value of [undefined, '', '   ', '-5', '1.5', '5s', 'soon', '0x10', '1e3', 'Sun, 01 Jun 2025', 'Tue, 99 Foo 2025 99:99:99 GMT']) {
      expect(parseRetryAfter(value, NOW), String(value)).toBeUndefined()
    }
  })

  it('uses the first of repeated header values', () => {
    expect(parseRetryAfter(['3', '9'], NOW)).toBe(3000)
  })

  it('never returns a negative or uncapped wait (property)', () => {
    fc.assert(
      fc.property(fc.string(), fc.integer({max: 1_000_000, min: 1}), (value, capMs) => {
        const ms = parseRetryAfter(value, NOW, {capMs})
        return ms === undefined || (ms >= 0 && ms <= capMs)
      }),
    )
  })
})

describe('classifyResponse', () => {
  const table: Array<[number, string | undefined, RetryClass]> = [
    [200, undefined, 'ok'],
    [202, undefined, 'ok'],
    [204, undefined, 'ok'],
    [301, undefined, 'reject'],
    [302, undefined, 'reject'],
    [307, undefined, 'reject'],
    [400, 'invalid_request', 'reject'],
    [400, 'invalid_issuer', 'reject'],
    [400, 'invalid_audience', 'reject'],
    [400, 'invalid_key', 'reject'],
    [400, 'something_new', 'reject'],
    [400, undefined, 'reject'],
    [400, 'authentication_failed', 'credentials'],
    [400, 'access_denied', 'credentials'],
    [401, undefined, 'credentials'],
    [403, undefined, 'credentials'],
    [404, undefined, 'reject'],
    [405, undefined, 'reject'],
    [408, undefined, 'retry'],
    [413, undefined, 'reject'],
    [415, undefined, 'reject'],
    [429, undefined, 'retry'],
    [500, undefined, 'retry'],
    [502, undefined, 'retry'],
    [503, undefined, 'retry'],
    [504, undefined, 'retry'],
  ]
  it.each(table)('%i with err %s -> %s', (status, err, expected) => {
    expect(classifyResponse(status, err)).toBe(expected)
  })
})

describe('classifyError', () => {
  it('retries transport failures and stops on credentials and permanent ones', () => {
    expect(classifyError(new PushpullError('ERR_CONNECT', 'refused'))).toBe('retry')
    expect(classifyError(new PushpullError('ERR_TIMEOUT', 'slow'))).toBe('retry')
    expect(classifyError(new PushpullError('ERR_WS_CLOSED', 'closed'))).toBe('retry')
    expect(classifyError(new PushpullError('ERR_PEER_STATUS', '503', {details: {status: 503}}))).toBe('retry')
    expect(classifyError(new PushpullError('ERR_PEER_STATUS', '302', {details: {status: 302}}))).toBe('reject')
    expect(classifyError(new PushpullError('ERR_CREDENTIALS', 'no'))).toBe('credentials')
    expect(classifyError(new PushpullError('ERR_TLS', 'self-signed'))).toBe('reject')
    expect(classifyError(new PushpullError('ERR_RESPONSE_TOO_LARGE', 'big'))).toBe('reject')
    expect(classifyError(new PushpullError('ERR_ABORTED', 'ctrl-c'))).toBe('reject')
    expect(classifyError(new Error('plain'))).toBe('reject')
  })
})

describe('backoffDelay', () => {
  const policy = {capMs: 10_000, factor: 2, initialMs: 100}

  it('grows the ceiling exponentially up to the cap (random just under 1)', () => {
    const top = (): number => 0.999_999
    expect([0, 1, 2, 3, 4, 7, 50, 5000].map((attempt) => backoffDelay(attempt, policy, top))).toEqual([99, 199, 399, 799, 1599, 9999, 9999, 9999])
  })

  it('is full jitter: random 0 waits 0, random 0.5 waits half the ceiling', () => {
    expect(backoffDelay(3, policy, () => 0)).toBe(0)
    expect(backoffDelay(3, policy, () => 0.5)).toBe(400)
  })

  it('treats a negative attempt as attempt 0', () => {
    expect(backoffDelay(-3, policy, () => 0.5)).toBe(50)
  })

  it('is the ledger\'s implementation (one backoff for every binding)', () => {
    expect(backoffDelay).toBe(ledgerBackoffDelay)
    expect(DEFAULT_BACKOFF).toEqual({capMs: 60_000, factor: 2, initialMs: 1000})
  })

  it('stays within [0, cap) for any attempt and random (property)', () => {
    fc.assert(
      fc.property(fc.integer({max: 10_000, min: 0}), fc.double({max: 1, maxExcluded: true, min: 0, noNaN: true}), (attempt, r) => {
        const ms = backoffDelay(attempt, policy, () => r)
        return Number.isInteger(ms) && ms >= 0 && ms < policy.capMs
      }),
    )
  })
})

describe('retryDelay', () => {
  const policy = {capMs: 10_000, factor: 2, initialMs: 1000}

  it('waits at least what Retry-After asked, plus up to one initial interval of jitter', () => {
    expect(retryDelay(5, 30_000, policy, () => 0)).toBe(30_000)
    expect(retryDelay(5, 30_000, policy, () => 0.5)).toBe(30_500)
  })

  it('falls back to backoff without Retry-After', () => {
    expect(retryDelay(2, undefined, policy, () => 0.5)).toBe(2000)
  })
})
