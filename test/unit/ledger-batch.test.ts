/**
 * The batch storage calls (issue 5, figure 4): `updateOutboxMany`, `settleOutboxMany`,
 * `clearOwedMany` and `markHandedOffMany` are optional in `LedgerStorage`; the ledger falls back to
 * the per-row calls when a storage lacks them. Both storages implement them, and a whole ledger
 * session gives the same answers and leaves the same rows with the batch calls as without them.
 */

import {describe, expect, it} from 'vitest'

import {Ledger, type LedgerStorage, type OutboxRow} from '../../src/lib/ledger.js'
import {MemoryLedgerStorage, openStore} from '../../src/lib/store.js'
import {scratchDirs} from '../helpers/scratch.js'

const PEER = 'wss://peer.example/pushpull'
const OTHER = 'https://other.example/events'
const T0 = 1_700_000_000_000
const BATCH_METHODS = ['updateOutboxMany', 'settleOutboxMany', 'clearOwedMany', 'markHandedOffMany'] as const

const scratch = scratchDirs('pushpull-batch-')
const sqlitePath = (): string => scratch.statePath()

const storages: Array<[string, () => LedgerStorage]> = [
  ['memory', () => new MemoryLedgerStorage()],
  ['sqlite', () => openStore({path: sqlitePath()})],
]

/** The storage without its batch methods: the ledger must use the per-row calls. */
function perRowOnly(storage: LedgerStorage): LedgerStorage {
  const hidden = new Set<string>(BATCH_METHODS)
  return new Proxy(storage, {
    get(target, property) {
      if (typeof property === 'string' && hidden.has(property)) return undefined
      const value: unknown = Reflect.get(target, property, target)
      return typeof value === 'function' ? (value as (...args: unknown[]) => unknown).bind(target) : value
    },
  })
}

/** The storage with a count of calls per batch method. */
function counting(storage: LedgerStorage, calls: Map<string, number>): LedgerStorage {
  return new Proxy(storage, {
    get(target, property) {
      const value: unknown = Reflect.get(target, property, target)
      if (typeof value !== 'function') return value
      const fn = (value as (...args: unknown[]) => unknown).bind(target)
      if (typeof property !== 'string' || !(BATCH_METHODS as readonly string[]).includes(property)) return fn
      return (...args: unknown[]) => {
        calls.set(property, (calls.get(property) ?? 0) + 1)
        return fn(...args)
      }
    },
  })
}

function token(payload: object): string {
  return `eyJhbGciOiJFUzI1NiJ9.${Buffer.from(JSON.stringify(payload)).toString('base64url')}.sig`
}

/**
 * A session touching every batch path: duplicates, unknown and stale jtis, a jti both acked and
 * rejected, SETs due again after their deadline (deadlines in several 1024 ms buckets), abandoned
 * SETs, two issuers of one jti, undecided SETs, replay. Returns every answer in order.
 */
function session(storage: LedgerStorage): unknown[] {
  let now = T0
  let draw = 0
  // Jitter that differs per SET, so deadlines spread over several seconds.
  const random = (): number => [0.9, 0.1, 0.5, 0.7, 0.3][draw++ % 5] ?? 0
  const ledger = new Ledger({now: () => now, random, retry: {ackTimeoutMs: 0, capMs: 4000, factor: 2, initialMs: 3000, maxAttempts: 2}, storage})
  const out: unknown[] = []
  try {
    out.push(ledger.enqueue(PEER, ['a', 'b', 'c', 'd', 'e', 'f', 'g'].map((jti) => ({event: 'ev', jti, subject: 'sub', token: `t-${jti}`}))))
    out.push(ledger.enqueue(OTHER, [{jti: 'a', token: 'other-a'}]))
    out.push(ledger.takeDue(PEER, 3))
    now += 1
    out.push(ledger.applyReport(PEER, {ack: ['a', 'a', 'zz', 'd', 'c'], setErrs: new Map([['b', {description: 'bad key', err: 'invalid_key'}], ['c', {description: 'late', err: 'invalid_issuer'}]])}))
    // e, f, g are pending; nothing in flight is left: the next takes the pending ones.
    out.push(ledger.takeDue(PEER, 2))
    out.push(ledger.nextDueAt(PEER))
    now += 2500
    // e (deadline + 2700) is due again, f (+ 300) too; g is still pending.
    out.push(ledger.takeDue(PEER, 10))
    out.push(ledger.nextDueAt(PEER))
    out.push(ledger.markFailed(PEER, ['f', 'nope']))
    out.push(ledger.requeueInFlight(PEER))
    now += 10_000
    // Every SET that was sent twice is abandoned now.
    out.push(ledger.takeDue(PEER, 10))
    out.push(ledger.takeDue(PEER, 10))
    out.push(ledger.markAcked(PEER, ['e', 'f', 'g', 'g']))
    out.push(ledger.markAcked(OTHER, ['a']))

    out.push(
      ledger.recordReceived(PEER, [
        {iss: 'https://one', jti: 'r1', token: token({n: 1}), verdict: 'accepted'},
        {iss: 'https://two', jti: 'r1', token: token({n: 2}), verdict: 'accepted'},
        {description: 'no', err: 'invalid_audience', iss: 'https://one', jti: 'r2', token: token({n: 3}), verdict: 'rejected'},
        {iss: 'https://one', jti: 'r3', token: token({n: 4}), verdict: 'undecided'},
        {iss: 'https://one', jti: 'r4', token: token({n: 5}), verdict: 'accepted'},
      ]),
    )
    out.push(ledger.unhandedOff(10))
    out.push(ledger.markHandedOff(PEER, ['r4', 'r4', 'unknown']))
    out.push(ledger.unhandedOff(10))
    out.push(ledger.owed(PEER, 10))
    out.push(ledger.markDelivered(PEER, ['r1', 'r1', 'r2', 'r3', 'unknown']))
    out.push(ledger.owed(PEER, 10))
    out.push(ledger.decide(PEER, [{jti: 'r3', verdict: 'accepted'}]))
    out.push(ledger.markDelivered(PEER, ['r3', 'r4']))
    out.push(ledger.recordReceived(PEER, [{iss: 'https://one', jti: 'r4', token: token({n: 5}), verdict: 'accepted'}]))
    out.push(ledger.owed(PEER, 10))
    out.push(ledger.stats())
    out.push(ledger.list({direction: 'out', limit: 100}))
    out.push(ledger.list({direction: 'in', limit: 100}))
    return out
  } finally {
    ledger.close()
  }
}

describe.each(storages)('batch storage calls (%s)', (_name, make) => {
  it('a whole session answers the same with the batch calls as with the per-row fallback', () => {
    const calls = new Map<string, number>()
    const batched = session(counting(make(), calls))
    const fallbackStorage = perRowOnly(make())
    expect(fallbackStorage.settleOutboxMany).toBeUndefined()
    expect(fallbackStorage.clearOwedMany).toBeUndefined()
    const perRow = session(fallbackStorage)
    expect(batched).toEqual(perRow)
    // The batch calls were really used (and the fallback run did not count any).
    for (const method of BATCH_METHODS) expect(calls.get(method), method).toBeGreaterThan(0)

    // Spot checks, so that two equally wrong runs cannot pass.
    expect(batched[3]).toEqual({acked: ['a', 'd'], rejected: ['b', 'c'], stale: ['a'], unknown: ['zz']})
    expect((batched[6] as {sets: Array<{jti: string; attempt: number}>}).sets).toEqual([
      {attempt: 1, jti: 'g', token: 't-g'},
      {attempt: 2, jti: 'f', token: 't-f'},
      {attempt: 2, jti: 'e', token: 't-e'},
    ])
    expect(batched[8]).toEqual({abandoned: ['f'], requeued: []})
    expect(batched[10]).toEqual({abandoned: ['e'], sets: [{attempt: 2, jti: 'g', token: 't-g'}]})
    // Abandoned SETs can still be acked; the second g is stale.
    expect(batched[12]).toEqual({acked: ['e', 'f', 'g'], rejected: [], stale: ['g'], unknown: []})
    expect(batched[16]).toBe(1)
    expect(batched[19]).toBe(3)
    expect(batched[20]).toEqual({ack: ['r4'], setErrs: new Map()})
  })

  it('settleOutboxMany settles each unsettled row once and returns the jtis it settled', () => {
    const storage = make()
    try {
      expect(storage.settleOutboxMany).toBeTypeOf('function')
      for (const [jti, state] of [['p', 'pending'], ['i', 'in_flight'], ['x', 'abandoned'], ['k', 'acked']] as const) {
        storage.insertOutbox({attempts: 1, createdAt: 1, jti, nextAt: 5, peer: PEER, state, token: `t-${jti}`, updatedAt: 1})
      }

      const settled = storage.transaction(() => storage.settleOutboxMany!(PEER, ['p', 'i', 'i', 'x', 'k', 'none'], {description: 'why', err: 'invalid_key', state: 'rejected', updatedAt: 9}))
      expect([...settled].sort()).toEqual(['i', 'p', 'x'])
      expect(storage.getOutbox(PEER, 'i')).toMatchObject({attempts: 1, description: 'why', err: 'invalid_key', nextAt: 5, state: 'rejected', updatedAt: 9})
      // An acked row is left alone, and nothing is settled twice.
      expect(storage.getOutbox(PEER, 'k')).toMatchObject({state: 'acked', updatedAt: 1})
      expect(storage.getOutbox(PEER, 'k')?.err).toBeUndefined()
      expect(storage.transaction(() => storage.settleOutboxMany!(PEER, ['p', 'i'], {state: 'acked', updatedAt: 10})).size).toBe(0)
      expect(storage.transaction(() => storage.settleOutboxMany!(PEER, [], {state: 'acked', updatedAt: 10})).size).toBe(0)
    } finally {
      storage.close()
    }
  })

  it('updateOutboxMany changes rows read by dueOutbox in the same transaction and rows it did not read', () => {
    const storage = make()
    try {
      for (const [index, jti] of ['a', 'b', 'c'].entries()) {
        storage.insertOutbox({attempts: 0, createdAt: 1, jti, nextAt: index, peer: PEER, state: 'pending', token: `t-${jti}`, updatedAt: 1})
      }

      storage.insertOutbox({attempts: 0, createdAt: 1, jti: 'a', nextAt: 0, peer: OTHER, state: 'pending', token: 'other', updatedAt: 1})
      storage.transaction(() => {
        const due = storage.dueOutbox(PEER, 1, 10)
        expect(due.map((row: OutboxRow) => row.jti)).toEqual(['a', 'b'])
        // 'a' and 'b' were just read; 'c' was not, and a missing jti changes nothing.
        storage.updateOutboxMany!(PEER, [
          {attempts: 1, jti: 'a', nextAt: 5000, state: 'in_flight', updatedAt: 2},
          {attempts: 1, jti: 'b', nextAt: 100, state: 'in_flight', updatedAt: 2},
          {attempts: 0, description: 'gone', err: 'x', jti: 'c', nextAt: 7, state: 'abandoned', updatedAt: 3},
          {attempts: 1, jti: 'missing', nextAt: 1, state: 'in_flight', updatedAt: 2},
        ])
      })
      expect(storage.getOutbox(PEER, 'a')).toMatchObject({attempts: 1, nextAt: 5000, state: 'in_flight', token: 't-a', updatedAt: 2})
      expect(storage.getOutbox(PEER, 'b')).toMatchObject({nextAt: 100, state: 'in_flight'})
      expect(storage.getOutbox(PEER, 'c')).toMatchObject({description: 'gone', err: 'x', state: 'abandoned', updatedAt: 3})
      expect(storage.getOutbox(PEER, 'missing')).toBeUndefined()
      // The other peer's row with the same jti is untouched.
      expect(storage.getOutbox(OTHER, 'a')).toMatchObject({attempts: 0, state: 'pending', updatedAt: 1})
      // Later due reads see the changes: b (100) before a (5000), across deadline buckets.
      expect(storage.dueOutbox(PEER, 99, 10)).toEqual([])
      expect(storage.dueOutbox(PEER, 6000, 10).map((row) => row.jti)).toEqual(['b', 'a'])
      expect(storage.nextDueAt(PEER)).toBe(100)
      // Outside a transaction nothing is remembered: the update goes by (peer, jti).
      storage.updateOutboxMany!(PEER, [{attempts: 2, jti: 'b', nextAt: 9000, state: 'in_flight', updatedAt: 4}])
      expect(storage.nextDueAt(PEER)).toBe(5000)
    } finally {
      storage.close()
    }
  })

  it('clearOwedMany and markHandedOffMany count the rows they change, over every issuer', () => {
    const storage = make()
    try {
      const row = (iss: string, jti: string, verdict: 'accepted' | 'rejected' | 'undecided', owed: boolean) => ({
        handedOff: false,
        hash: `h-${iss}-${jti}`,
        iss,
        jti,
        owed,
        peer: PEER,
        receivedAt: 1,
        token: `t-${jti}`,
        updatedAt: 1,
        verdict,
      })
      storage.insertInbox(row('one', 'j1', 'accepted', true))
      storage.insertInbox(row('two', 'j1', 'rejected', true))
      storage.insertInbox(row('one', 'j2', 'undecided', false))
      storage.insertInbox(row('one', 'j3', 'accepted', true))
      expect(storage.transaction(() => storage.markHandedOffMany!(PEER, ['j2', 'j2', 'nope']))).toBe(1)
      expect(storage.transaction(() => storage.markHandedOffMany!(PEER, ['j2']))).toBe(0)
      // j2 is undecided: not owed, not cleared. j1 has two issuers: two rows.
      expect(storage.transaction(() => storage.clearOwedMany!(PEER, ['j1', 'j1', 'j2', 'nope'], 5))).toBe(2)
      expect(storage.transaction(() => storage.clearOwedMany!(PEER, ['j1'], 6))).toBe(0)
      expect(storage.getInbox(PEER, 'two', 'j1')).toMatchObject({handedOff: true, owed: false, updatedAt: 5})
      expect(storage.owedInbox(PEER, 10).map((r) => r.jti)).toEqual(['j3'])
      expect(storage.unhandedOffInbox(10).map((r) => r.jti)).toEqual(['j3'])
      expect(storage.transaction(() => storage.clearOwedMany!(PEER, [], 7))).toBe(0)
      expect(storage.transaction(() => storage.markHandedOffMany!(PEER, []))).toBe(0)
    } finally {
      storage.close()
    }
  })
})
