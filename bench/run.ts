/**
 * `npm run bench` / `npm run bench:quick` (issue 5). Prints one table and writes the same figures
 * to bench/results.json (not committed). Every ratio is measured in this run, side by side.
 */
import {cpus} from 'node:os'
import {writeFileSync} from 'node:fs'
import {dirname, join} from 'node:path'
import {fileURLToPath} from 'node:url'

import {measureColdStart} from './cold-start.js'
import {measureCrypto} from './crypto.js'
import {measureDelivery} from './delivery.js'
import {type BenchConfig, type Row, verdict} from './util.js'

const quick = process.argv.includes('--quick')
const config: BenchConfig = quick ? {quick, roundMs: 150, rounds: 3} : {quick, roundMs: 400, rounds: 5}
const started = Date.now()
const rows: Row[] = []
const figures: Record<string, unknown> = {}

const crypto = await measureCrypto(config)
figures.crypto = crypto.figures
const cold = measureColdStart(config)
figures.coldStart = cold.figures
const delivery = await measureDelivery(config)
figures.delivery = delivery.figures

const notMeasured = 'not measured: needs the WebSocket session (src/lib/session.ts, bindings/ws.ts), not landed when the bench was written'
rows.push(
  ...delivery.rows,
  {figure: '1', note: notMeasured, target: '>= 25x push', value: 'n/a', what: 'pushpull WebSocket (batched), verification off / ES256'},
  ...crypto.rows.filter((r) => r.figure === '2'),
  ...crypto.rows.filter((r) => r.figure === '3'),
  {figure: '4', note: notMeasured, target: '>= 0.8x memory', value: 'n/a', what: 'WebSocket, ledger on disk vs in memory'},
  {figure: '5', note: notMeasured, target: '< 200 MiB', value: 'n/a', what: 'peak RSS, listen --ws, 1,000,000 SETs'},
  {figure: '6', note: notMeasured, value: 'n/a', what: 'latency p50/p99 at 5,000 SETs/s over WebSocket'},
  ...cold.rows,
)

const header = ['fig', 'what', 'value', 'ratio', 'target', 'verdict', 'note']
const table = rows.map((r) => [r.figure, r.what, r.value, r.ratio ?? '', r.target ?? '', verdict(r.met), r.note ?? ''])
const widths = header.map((h, i) => Math.max(h.length, ...table.map((row) => (row[i] ?? '').length)))
const line = (cells: string[]) => cells.map((c, i) => c.padEnd(widths[i] ?? 0)).join('  ').trimEnd()
console.log(`pushpull bench${quick ? ' --quick' : ''}: node ${process.version}, ${cpus().length} cores, medians of ${config.rounds} rounds`)
console.log(line(header))
console.log(line(widths.map((w) => '-'.repeat(w))))
for (const row of table) console.log(line(row))
console.log(`(${((Date.now() - started) / 1000).toFixed(0)} s)`)

const out = join(dirname(fileURLToPath(import.meta.url)), 'results.json')
writeFileSync(out, `${JSON.stringify({config, cores: cpus().length, date: new Date().toISOString(), figures, node: process.version, rows}, null, 2)}\n`)
console.log(`wrote ${out}`)
