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
import {measureLink} from './link-figures.js'
import {type BenchConfig, type Row, verdict} from './util.js'
import {measureWs} from './ws-figures.js'

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

const ws = await measureWs(config, {es256: delivery.figures['push+ES256'] ?? Number.NaN, off: delivery.figures.push ?? Number.NaN})
figures.ws = ws.figures
const link = await measureLink(config)
figures.link = link.figures
// One table in figure order (1, 1b, 1c, 2, 3, 4, 4b, 5, 6, 7); rows of one figure keep their order.
const order = ['1', '1b', '1c', '2', '3', '4', '4b', '5', '6', '7']
rows.push(...[...delivery.rows, ...ws.rows, ...link.rows, ...crypto.rows, ...cold.rows].map((row, index) => ({index, row})).sort((a, b) => order.indexOf(a.row.figure) - order.indexOf(b.row.figure) || a.index - b.index).map(({row}) => row))

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
