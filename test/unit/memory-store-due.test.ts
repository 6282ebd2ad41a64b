/**
 * MemoryLedgerStorage keeps a (nextAt, seq) heap per peer for `dueOutbox` / `nextDueAt` (a scan of
 * every active row per call made long WebSocket sessions quadratic, found by the benchmark). The
 * SQLite store reads pending rows and in-flight rows (in 1024 ms deadline buckets) from one index
 * and merges them. Both must answer exactly what a full scan answers, after any sequence of
 * changes, including `updateOutboxMany` right after `dueOutbox` in one transaction (as `takeDue`).
 */

import fc from 'fast-check'
import {describe, expect, it} from 'vitest'

import {type LedgerStorage, OUTBOX_STATES, type OutboxRow, type OutboxState} from '../../src/lib/ledger.js'
import {MemoryLedgerStorage, openStore} from '../../src/lib/store.js'
import {scratchDirs} from '../helpers/scratch.js'

const scratch = scratchDirs('pushpull-due-')
const sqlite = (): LedgerStorage => openStore({path: scratch.statePath()})

type Op =
  | {kind: 'insert'; peer: number; jti: number; nextAt: number; state: OutboxState}
  | {kind: 'update'; peer: number; jti: number; nextAt: number; state: OutboxState}
  | {kind: 'requeue'; peer: number | undefined; nextAt: number}
  | {kind: 'due'; peer: number; now: number; limit: number}
  | {kind: 'take'; peer: number; now: number; limit: number; nextAt: number}

// Times in steps of 257 ms: 20 steps cross several of the SQLite store's 1024 ms buckets.
const time = fc.integer({max: 20, min: 0}).map((step) => step * 257)
const op: fc.Arbitrary<Op> = fc.oneof(
  // Active states twice as likely: most rows are pending or in flight, as in a session.
  fc.record({jti: fc.nat(15), kind: fc.constant('insert' as const), nextAt: time, peer: fc.nat(1), state: fc.constantFrom('pending', 'in_flight', ...OUTBOX_STATES)}),
  fc.record({jti: fc.nat(15), kind: fc.constant('update' as const), nextAt: time, peer: fc.nat(1), state: fc.constantFrom(...OUTBOX_STATES)}),
  fc.record({kind: fc.constant('requeue' as const), nextAt: time, peer: fc.option(fc.nat(1), {nil: undefined})}),
  fc.record({kind: fc.constant('due' as const), limit: fc.integer({max: 6, min: 1}), now: time, peer: fc.nat(1)}),
  fc.record({kind: fc.constant('take' as const), limit: fc.integer({max: 6, min: 1}), nextAt: time, now: time, peer: fc.nat(1)}),
)

/** The reference: every row in insertion order, scanned in full. */
function scanDue(rows: readonly OutboxRow[], peer: string, now: number, limit: number): string[] {
  return rows
    .map((row, seq) => ({row, seq}))
    .filter(({row}) => row.peer === peer && (row.state === 'pending' || row.state === 'in_flight') && row.nextAt <= now)
    .sort((a, b) => a.row.nextAt - b.row.nextAt || a.seq - b.seq)
    .slice(0, limit)
    .map(({row}) => row.jti)
}

function scanNext(rows: readonly OutboxRow[], peer: string): number | undefined {
  const active = rows.filter((row) => row.peer === peer && (row.state === 'pending' || row.state === 'in_flight'))
  return active.length === 0 ? undefined : Math.min(...active.map((row) => row.nextAt))
}

const storages: Array<[string, () => LedgerStorage, number]> = [
  ['memory (heap)', () => new MemoryLedgerStorage(), 300],
  ['sqlite (index buckets)', sqlite, 150],
]

describe.each(storages)('%s due order equals a full scan', (_name, make, numRuns) => {
  it('random inserts, updates, requeues, takes and reads', () => {
    let reads = 0
    let nonEmpty = 0
    let taken = 0
    fc.assert(
      fc.property(fc.array(op, {maxLength: 80}), (ops) => {
        const storage = make()
        try {
          const rows: OutboxRow[] = []
          for (const o of ops) {
            if (o.kind === 'insert') {
              const row: OutboxRow = {attempts: 0, createdAt: 0, jti: `j${o.jti}`, nextAt: o.nextAt, peer: `p${o.peer}`, state: o.state, token: 't', updatedAt: 0}
              const inserted = storage.insertOutbox(row)
              const exists = rows.some((r) => r.peer === row.peer && r.jti === row.jti)
              expect(inserted).toBe(!exists)
              if (inserted) rows.push({...row})
            } else if (o.kind === 'update') {
              storage.updateOutbox(`p${o.peer}`, `j${o.jti}`, {attempts: 1, nextAt: o.nextAt, state: o.state, updatedAt: 1})
              const row = rows.find((r) => r.peer === `p${o.peer}` && r.jti === `j${o.jti}`)
              if (row !== undefined) Object.assign(row, {nextAt: o.nextAt, state: o.state})
            } else if (o.kind === 'requeue') {
              const peer = o.peer === undefined ? undefined : `p${o.peer}`
              const expected = rows.filter((r) => (peer === undefined || r.peer === peer) && r.state === 'in_flight')
              for (const row of expected) Object.assign(row, {nextAt: o.nextAt, state: 'pending'})
              expect(storage.requeueInFlight(peer, o.nextAt, 2)).toBe(expected.length)
            } else if (o.kind === 'take') {
              // What takeDue does: read the due rows and change them in one transaction.
              const peer = `p${o.peer}`
              const expected = scanDue(rows, peer, o.now, o.limit)
              storage.transaction(() => {
                const due = storage.dueOutbox(peer, o.now, o.limit)
                expect(due.map((row) => row.jti)).toEqual(expected)
                storage.updateOutboxMany?.(peer, due.map((row, index) => ({attempts: row.attempts + 1, jti: row.jti, nextAt: o.nextAt + index * 300, state: 'in_flight' as const, updatedAt: 3})))
              })
              for (const [index, jti] of expected.entries()) {
                const row = rows.find((r) => r.peer === peer && r.jti === jti)
                if (row !== undefined) Object.assign(row, {nextAt: o.nextAt + index * 300, state: 'in_flight'})
              }

              taken += expected.length
            } else {
              const peer = `p${o.peer}`
              const due = storage.dueOutbox(peer, o.now, o.limit).map((row) => row.jti)
              expect(due).toEqual(scanDue(rows, peer, o.now, o.limit))
              expect(storage.nextDueAt(peer)).toBe(scanNext(rows, peer))
              reads++
              if (due.length > 0) nonEmpty++
            }
          }

          for (const peer of ['p0', 'p1']) expect(storage.dueOutbox(peer, 100_000, 100).map((row) => row.jti)).toEqual(scanDue(rows, peer, 100_000, 100))
        } finally {
          storage.close()
        }
      }),
      {numRuns},
    )
    expect(reads).toBeGreaterThan(numRuns / 3)
    expect(nonEmpty).toBeGreaterThan(numRuns / 50)
    expect(taken).toBeGreaterThan(numRuns / 50)
  })
})
