import {describe, expect, it} from 'vitest'

import {shouldBoundHeapGrowth} from '../../src/cli/heap.js'

describe('shouldBoundHeapGrowth', () => {
  it('bounds heap growth when the user chose no V8 heap settings', () => {
    expect(shouldBoundHeapGrowth([], undefined)).toBe(true)
    expect(shouldBoundHeapGrowth(['--enable-source-maps'], '--no-warnings')).toBe(true)
  })

  it('keeps what the user chose in node arguments or NODE_OPTIONS, in either spelling', () => {
    expect(shouldBoundHeapGrowth(['--max-old-space-size=512'], undefined)).toBe(false)
    expect(shouldBoundHeapGrowth([], '--heap-growing-percent=50')).toBe(false)
    expect(shouldBoundHeapGrowth([], '--no-warnings --max_semi_space_size=4')).toBe(false)
    expect(shouldBoundHeapGrowth(['--max-heap-size', '256'], undefined)).toBe(false)
  })
})
