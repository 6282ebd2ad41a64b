/**
 * The long fuzz run: every property of the suite (test/fuzz/properties-*.ts) with many more runs.
 *
 *   npx tsx scripts/fuzz-long.ts [--runs-factor N] [--seed S] [--only TEXT]
 *
 * --runs-factor  multiply each property's suite runs (default 100: about 1.2 million cases)
 * --seed         fast-check seed (default: random, printed so a failure can be replayed)
 * --only         run only the properties whose name contains TEXT
 *
 * Prints one line per property (runs, time, result) and a total; exits 1 when any property fails,
 * after printing its counterexample and the seed/path to replay it.
 */
import {performance} from 'node:perf_hooks'
import {parseArgs} from 'node:util'

import * as fc from 'fast-check'

import type {FuzzProperty} from '../test/fuzz/harness.js'
import {communicationProperties} from '../test/fuzz/properties-communication.js'
import {contentProperties} from '../test/fuzz/properties-content.js'
import {setProperties} from '../test/fuzz/properties-set.js'

const {values} = parseArgs({
  options: {
    only: {type: 'string'},
    'runs-factor': {default: '100', type: 'string'},
    seed: {type: 'string'},
  },
})

const factor = Number(values['runs-factor'])
if (!Number.isSafeInteger(factor) || factor < 1) throw new Error(`--runs-factor must be a positive integer, got ${values['runs-factor']}`)
const seed = values.seed === undefined ? Math.floor(Math.random() * 2 ** 31) : Number(values.seed)
if (!Number.isSafeInteger(seed)) throw new Error(`--seed must be an integer, got ${values.seed}`)

const all: FuzzProperty[] = [...communicationProperties, ...setProperties, ...contentProperties]
const chosen = all.filter((p) => values.only === undefined || p.name.includes(values.only))
console.log(`fuzz-long: ${chosen.length} properties, runs factor ${factor}, seed ${seed}`)

let totalRuns = 0
let failures = 0
const started = performance.now()
for (const {name, property, runs} of chosen) {
  const t0 = performance.now()
  const details = await fc.check(property, {numRuns: runs * factor, seed})
  const ms = performance.now() - t0
  totalRuns += details.numRuns
  const status = details.failed ? 'FAIL' : 'ok'
  console.log(`${status.padEnd(4)} ${String(details.numRuns).padStart(8)} runs ${(ms / 1000).toFixed(1).padStart(7)} s  ${name}`)
  if (details.failed) {
    failures++
    console.log(`     counterexample: ${fc.stringify(details.counterexample)}`)
    console.log(`     replay: --seed ${details.seed} (path ${details.counterexamplePath ?? '?'})`)
    console.log(`     ${String(details.errorInstance).split('\n').slice(0, 4).join('\n     ')}`)
  }
}

console.log(`fuzz-long: ${totalRuns} cases in ${((performance.now() - started) / 1000).toFixed(1)} s, ${chosen.length - failures} properties passed, ${failures} failed (seed ${seed})`)
process.exitCode = failures > 0 ? 1 : 0
