/** Run a list of fuzz properties under vitest with the suite's fixed seed. */
import * as fc from 'fast-check'
import {describe, it} from 'vitest'

import {FUZZ_SEED, type FuzzProperty} from './harness.js'

export function describeFuzz(title: string, properties: readonly FuzzProperty[]): void {
  describe(title, () => {
    for (const {name, property, runs} of properties) {
      it(name, async () => {
        await fc.assert(property, {numRuns: runs, seed: FUZZ_SEED})
      })
    }
  })
}
