/**
 * MemoryLedgerStorage keeps a (nextAt, seq) heap per peer for `dueOutbox` / `nextDueAt` (a scan of
 * every active row per call made long WebSocket sessions quadratic, found by the benchmark). The
 * heap must answer exactly what a full scan answers, after any sequence of changes.
 */
import fc from 'fast-check'
import {describe, expect, it} from 'vitest'

import {OUTBOX_STATES, type OutboxRow, type OutboxState} from '../../src/lib/ledger.js'
import {MemoryLedgerStorage} from '../../src/lib/store.js'

type Op =
  | {kind: 'insert'; peer: number; jti: number; nextAt: number; state: OutboxState}
  | {kind: 'update'; peer: number; jti: number; nextAt: number; state: OutboxState}
  | {kind: 'requeue'; peer: number | undefined; nextAt: number}
  | {kind: 'due'; peer: number; now: number; limit: number}

const time = fc.integer({max: 20, min: 0})
const op: fc.Arbitrary<Op> = fc.oneof(
  fc.record({jti: fc.nat(15), kind: fc.constant('insert' as const), nextAt: time, peer: fc.nat(1), state: fc.constantFrom(...OUTBOX_STATES)}),
  fc.record({jti: fc.nat(15), kind: fc.constant('update' as const), nextAt: time, peer: fc.nat(1), state: fc.constantFrom(...OUTBOX_STATES)}),
  fc.record({kind: fc.constant('requeue' as const), nextAt: time, peer: fc.option(fc.nat(1), {nil: undefined})}),
  fc.record({kind: fc.constant('due' as const), limit: fc.integer({max: 6, min: 1}), now: time, peer: fc.nat(1)}),
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

describe('MemoryLedgerStorage due order (heap) equals a full scan', () => {
  it('random inserts, updates, requeues and reads', () => {
    let reads = 0
    let nonEmpty = 0
    fc.assert(
      fc.property(fc.array(op, {maxLength: 80}), (ops) => {
        const storage = new MemoryLedgerStorage()
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
          } else {
            const peer = `p${o.peer}`
            const due = storage.dueOutbox(peer, o.now, o.limit).map((row) => row.jti)
            expect(due).toEqual(scanDue(rows, peer, o.now, o.limit))
            expect(storage.nextDueAt(peer)).toBe(scanNext(rows, peer))
            reads++
            if (due.length > 0) nonEmpty++
          }
        }

        for (const peer of ['p0', 'p1']) expect(storage.dueOutbox(peer, 100, 100).map((row) => row.jti)).toEqual(scanDue(rows, peer, 100, 100))
      }),
      {numRuns: 300},
    )
    expect(reads).toBeGreaterThan(100)
    expect(nonEmpty).toBeGreaterThan(10)
  })
})
