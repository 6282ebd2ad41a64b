import fc from 'fast-check'
import {describe, expect, it} from 'vitest'

import {maxNestingDepth, parseJsonBounded} from '../../src/lib/json.js'
import {FUZZ_SEED} from '../fuzz/harness.js'
import {failure} from '../helpers/errors.js'


describe('parseJsonBounded', () => {
  it('parses strings and buffers within the limits', () => {
    expect(parseJsonBounded('{"a":[1,{"b":"x"}]}', {maxBytes: 100})).toEqual({a: [1, {b: 'x'}]})
    expect(parseJsonBounded(Buffer.from('{"é":"ü"}'), {maxBytes: 100})).toEqual({é: 'ü'})
  })

  it('checks the size in UTF-8 bytes before parsing', () => {
    const error = failure(() => parseJsonBounded('"éé"', {maxBytes: 5}))
    expect(error.code).toBe('ERR_LIMIT_EXCEEDED')
    expect(error.message).toBe('JSON body is 6 bytes, over the 5-byte limit')
    expect(error.details).toMatchObject({size: 6, limit: 5})
    // Not JSON at all, but too large: the size wins (nothing is decoded).
    expect(failure(() => parseJsonBounded(Buffer.alloc(11, 0xff), {maxBytes: 10})).code).toBe('ERR_LIMIT_EXCEEDED')
  })

  it('rejects invalid UTF-8', () => {
    const error = failure(() => parseJsonBounded(Buffer.from([0x22, 0xc3, 0x28, 0x22]), {maxBytes: 100}))
    expect(error.code).toBe('ERR_MESSAGE_INVALID')
    expect(error.message).toBe('JSON body is not valid UTF-8')
  })

  it('rejects text that is not JSON, with the parser reason', () => {
    for (const text of ['{"a":', '', 'nope', "{'a':1}"]) {
      const error = failure(() => parseJsonBounded(text, {maxBytes: 100}))
      expect(error.code).toBe('ERR_MESSAGE_INVALID')
      expect(error.message).toMatch(/^body is not valid JSON: /)
    }
  })

  it('rejects nesting over maxDepth and accepts exactly maxDepth', () => {
    expect(parseJsonBounded('[[[1]]]', {maxBytes: 100, maxDepth: 3})).toEqual([[[1]]])
    const error = failure(() => parseJsonBounded('[[[[1]]]]', {maxBytes: 100, maxDepth: 3}))
    expect(error.code).toBe('ERR_MESSAGE_INVALID')
    expect(error.message).toBe('JSON nesting is deeper than the limit of 3')
    expect(error.details).toMatchObject({limit: 3})
  })

  it('accepts many brackets side by side when none nests past the limit', () => {
    const flat = `[${Array.from({length: 50}, () => '[{"a":[1]}]').join(',')}]`
    expect(maxNestingDepth(flat)).toBe(4)
    expect((parseJsonBounded(flat, {maxBytes: 10_000, maxDepth: 4}) as unknown[]).length).toBe(50)
    expect(failure(() => parseJsonBounded(flat, {maxBytes: 10_000, maxDepth: 3})).message).toBe('JSON nesting is deeper than the limit of 3')
  })

  it('gives the depth verdict of the full scan for any mix of brackets, strings and escapes', () => {
    const piece = fc.constantFrom('[', ']', '{', '}', '"', '\\', 'a', ',', ':')
    fc.assert(
      fc.property(fc.array(piece, {maxLength: 60}), fc.integer({max: 8, min: 1}), (pieces, limit) => {
        const text = pieces.join('')
        let verdict: string
        try {
          parseJsonBounded(text, {maxBytes: 1000, maxDepth: limit})
          verdict = 'parsed'
        } catch (error) {
          verdict = (error as Error).message === `JSON nesting is deeper than the limit of ${limit}` ? 'too deep' : 'other'
        }

        expect(verdict === 'too deep').toBe(maxNestingDepth(text) > limit)
      }),
      {numRuns: 500, seed: FUZZ_SEED},
    )
  })

  it('does not count brackets inside strings, including escaped quotes', () => {
    expect(parseJsonBounded('{"a":"[[[[[[\\"[[[[{{{{"}', {maxBytes: 100, maxDepth: 1})).toEqual({a: '[[[[[["[[[[{{{{'})
    expect(maxNestingDepth('["\\\\",[["x"]]]')).toBe(3)
  })

  it('rejects a megabyte of opening brackets without exhausting the stack', () => {
    const deep = '['.repeat(1024 * 1024 - 2) + '1'
    const error = failure(() => parseJsonBounded(deep, {maxBytes: 1024 * 1024}))
    expect(error.code).toBe('ERR_MESSAGE_INVALID')
    expect(error.message).toBe('JSON nesting is deeper than the limit of 32')
    // Same with balanced nesting that would be valid JSON.
    const balanced = '['.repeat(100_000) + ']'.repeat(100_000)
    expect(failure(() => parseJsonBounded(balanced, {maxBytes: 1024 * 1024})).code).toBe('ERR_MESSAGE_INVALID')
  })

  it('keeps __proto__ an own property and never touches Object.prototype', () => {
    const value = parseJsonBounded('{"__proto__":{"polluted":true},"constructor":{"prototype":{"polluted":true}}}', {maxBytes: 200}) as Record<string, unknown>
    expect(Object.hasOwn(value, '__proto__')).toBe(true)
    expect(Object.getPrototypeOf(value)).toBe(Object.prototype)
    expect(({} as Record<string, unknown>).polluted).toBeUndefined()
    expect((value as {polluted?: unknown}).polluted).toBeUndefined()
  })

  it('refuses nonsensical limits', () => {
    const error = failure(() => parseJsonBounded('{}', {maxBytes: 0}))
    expect(error.code).toBe('ERR_CONFIG')
    expect(error.message).toBe('maxBytes must be a positive integer, got 0')
  })
})
