/**
 * The short chaos soak (run `npm run build` first): 2 000 SETs each way between a spawned
 * `listen --ws` and a spawned `stream`, through the fault proxy with frequent cuts, stalls and
 * delays, the listener SIGKILLed once and restarted on its state. Every SET must be stored
 * exactly once by the other side and acked back, with nothing left pending or owed.
 * The full run is `npm run soak` (scripts/soak.ts).
 */
import {describe, expect, it} from 'vitest'

import {runSoak} from '../../scripts/soak.js'

describe('chaos soak (short)', () => {
  it('2 000 SETs each way, one SIGKILL: exactly once, all acked, nothing pending', async () => {
    const lines: string[] = []
    const result = await runSoak({
      chaos: {cutProbability: 0.02, delayMs: {max: 3, min: 0}, refuseProbability: 0.1, stallMs: {max: 200, min: 20}, stallProbability: 0.02},
      count: 2000,
      kills: 1,
      log: (line) => lines.push(line),
      seed: 7,
      timeoutMs: 60_000,
    })
    expect(result.failures, lines.join('\n')).toEqual([])
    expect(result.kills).toBe(1)
    for (const side of [result.a, result.b]) {
      expect(side.outbox).toEqual({acked: 2000})
      expect(side.inboxRows).toBe(2000)
      expect(side.inboxAccepted).toBe(2000)
      expect(side.inboxMissing).toBe(0)
      expect(side.inboxOwed).toBe(0)
      expect(side.reportedTwice).toBe(0)
    }

    // The faults really happened.
    expect(result.proxy.cuts + result.proxy.refused).toBeGreaterThan(0)
    expect(result.ok).toBe(true)
  }, 90_000)
})
