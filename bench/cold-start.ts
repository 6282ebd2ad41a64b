/**
 * Figure 7: cold start. Wall time of `pushpull decode TOKEN` (the fast path in bin/run.js),
 * the same through oclif (PUSHPULL_NO_FAST_PATH=1) and `pushpull --help`, next to `node -e 0`,
 * each the median of several runs taken in turn. Needs `npm run build`.
 */
import {spawnSync} from 'node:child_process'
import {existsSync, readFileSync} from 'node:fs'
import {dirname, join} from 'node:path'
import {performance} from 'node:perf_hooks'
import {fileURLToPath} from 'node:url'

import {type BenchConfig, fmtMs, fmtRatio, median, type Row} from './util.js'

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..')
const BIN = join(ROOT, 'bin', 'run.js')

function wallMs(args: string[], env: NodeJS.ProcessEnv = {}): number {
  const start = performance.now()
  const result = spawnSync(process.execPath, args, {cwd: ROOT, env: {...process.env, NO_COLOR: '1', ...env}, stdio: 'ignore'})
  const elapsed = performance.now() - start
  if (result.status !== 0) throw new Error(`${args.join(' ')} exited ${result.status}`)
  return elapsed
}

export interface ColdStartFigures {
  nodeMs: number
  decodeMs: number
  decodeOclifMs: number
  helpMs: number
  ratio: number
}

export function measureColdStart(config: BenchConfig): {figures?: ColdStartFigures; rows: Row[]} {
  if (!existsSync(join(ROOT, 'dist', 'commands', 'decode.js')) || !existsSync(join(ROOT, 'oclif.manifest.json'))) {
    return {rows: [{figure: '7', note: 'not measured: run `npm run build` first', value: 'n/a', what: 'cold start'}]}
  }

  const token = readFileSync(join(ROOT, 'test', 'fixtures', 'rfc8935-push-example.jwt'), 'utf8').trim()
  // Clean environment for the CLI: no PUSHPULL_* variable may switch the fast path off.
  const env = Object.fromEntries(Object.entries(process.env).filter(([name]) => !name.startsWith('PUSHPULL_')))
  const samples = {decode: [] as number[], help: [] as number[], node: [] as number[], oclif: [] as number[]}
  const runs = config.quick ? 5 : 11
  wallMs([BIN, '--help']) // warm the file cache
  for (let i = 0; i < runs; i++) {
    samples.node.push(wallMs(['-e', '0'], env))
    samples.decode.push(wallMs([BIN, 'decode', token], {...env, PUSHPULL_NO_FAST_PATH: undefined}))
    samples.oclif.push(wallMs([BIN, 'decode', token], {PUSHPULL_NO_FAST_PATH: '1'}))
    samples.help.push(wallMs([BIN, '--help']))
  }

  const figures: ColdStartFigures = {
    decodeMs: median(samples.decode),
    decodeOclifMs: median(samples.oclif),
    helpMs: median(samples.help),
    nodeMs: median(samples.node),
    ratio: median(samples.decode) / median(samples.node),
  }
  return {
    figures,
    rows: [
      {figure: '7', value: fmtMs(figures.nodeMs), what: 'node -e 0'},
      {figure: '7', met: figures.ratio <= 2, ratio: fmtRatio(figures.ratio), target: '<= 2x node', value: fmtMs(figures.decodeMs), what: 'pushpull decode TOKEN'},
      {figure: '7', note: 'PUSHPULL_NO_FAST_PATH=1', ratio: fmtRatio(figures.decodeOclifMs / figures.nodeMs), value: fmtMs(figures.decodeOclifMs), what: 'decode TOKEN via oclif'},
      {figure: '7', ratio: fmtRatio(figures.helpMs / figures.nodeMs), value: fmtMs(figures.helpMs), what: 'pushpull --help'},
    ],
  }
}
