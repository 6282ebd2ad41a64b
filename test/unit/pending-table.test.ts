import {describe, expect, it} from 'vitest'

import {ageOf} from '../../src/cli/interactive.js'

describe('ages in the pending-acks table', () => {
  it('fit the four-character column', () => {
    expect([375, 1500, 119_000, 7_199_000, 86_400_000, 3 * 86_400_000].map((ms) => ageOf(ms))).toEqual(['<1s', '1s', '119s', '119m', '24h', '3d'])
  })
})
