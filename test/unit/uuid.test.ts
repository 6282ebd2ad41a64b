import {describe, expect, it} from 'vitest'

import {uuidV7} from '../../src/lib/uuid.js'

const FORMAT = /^[\da-f]{8}-[\da-f]{4}-7[\da-f]{3}-[89ab][\da-f]{3}-[\da-f]{12}$/

function timestampOf(uuid: string): number {
  return Number.parseInt(uuid.replaceAll('-', '').slice(0, 12), 16)
}

describe('uuidV7', () => {
  it('has the RFC 9562 layout: version 7, variant 10, the time in the first 48 bits', () => {
    for (const ms of [0, 1, 1_760_000_000_123, 2 ** 32, 2 ** 48 - 1]) {
      const id = uuidV7(ms)
      expect(id).toMatch(FORMAT)
      expect(timestampOf(id)).toBe(ms)
    }

    expect(uuidV7(0).startsWith('00000000-0000-7')).toBe(true)
    expect(uuidV7(2 ** 48 - 1).startsWith('ffffffff-ffff-7')).toBe(true)
  })

  it('sorts by time: an identifier of a later millisecond sorts after every earlier one', () => {
    const ids = Array.from({length: 2000}, (_, i) => uuidV7(1_760_000_000_000 + Math.floor(i / 10)))
    for (let i = 10; i < ids.length; i++) {
      const earlier = ids[i - 10] as string
      expect((ids[i] as string) > earlier).toBe(true)
    }
  })

  it('is random after the timestamp: 200,000 identifiers of one millisecond are all distinct and use every nibble', () => {
    const ids = Array.from({length: 200_000}, () => uuidV7(1_760_000_000_000))
    expect(new Set(ids).size).toBe(ids.length)
    // The random tail (last 12 hex digits) takes every value in every position.
    for (let position = 24; position < 36; position++) expect(new Set(ids.map((id) => id[position])).size).toBe(16)
  })

  it('defaults to the current time', () => {
    const before = Date.now()
    const id = uuidV7()
    const after = Date.now()
    expect(timestampOf(id)).toBeGreaterThanOrEqual(before)
    expect(timestampOf(id)).toBeLessThanOrEqual(after)
  })
})
