/**
 * The statement-saving hot paths of the ledger (issue 5, figure 4): `applyReport` settles with one
 * conditional UPDATE and only looks a jti up when it was not settled; `recordReceived` inserts
 * first and reads only on a redelivery; the SQLite store's WAL checkpoint threshold is an option.
 * Run against both storages.
 */
import {join} from 'node:path'

import {describe, expect, it} from 'vitest'

import {Ledger, type LedgerStorage} from '../../src/lib/ledger.js'
import {DEFAULT_WAL_AUTOCHECKPOINT_PAGES, MemoryLedgerStorage, openStore} from '../../src/lib/store.js'
import {scratchDirs} from '../helpers/scratch.js'

const PEER = 'wss://peer.example/pushpull'
const T0 = 1_700_000_000_000
const scratchDir = scratchDirs('pushpull-hot-')
const scratch = (): string => scratchDir.dir()

const storages: Array<[string, () => LedgerStorage]> = [
  ['memory', () => new MemoryLedgerStorage()],
  ['sqlite', () => openStore({path: join(scratch(), 'state.db')})],
]

function token(payload: string): string {
  return `eyJhbGciOiJFUzI1NiJ9.${Buffer.from(payload).toString('base64url')}.sig`
}

describe.each(storages)('ledger hot paths (%s)', (_name, make) => {
  it('applyReport: acked, rejected, stale, unknown, and an abandoned SET can still be acked', () => {
    let now = T0
    const ledger = new Ledger({now: () => now, random: () => 0, retry: {ackTimeoutMs: 0, initialMs: 0, maxAttempts: 1}, storage: make()})
    try {
      ledger.enqueue(PEER, ['a', 'b', 'c', 'd'].map((jti) => ({jti, token: `t-${jti}`})))
      expect(ledger.takeDue(PEER, 10).sets.map((s) => s.jti)).toEqual(['a', 'b', 'c', 'd'])
      now += 1
      // maxAttempts 1 and ackTimeout 0: everything in flight is abandoned at the next takeDue.
      expect(ledger.takeDue(PEER, 10).abandoned).toEqual(['a', 'b', 'c', 'd'])
      const first = ledger.applyReport(PEER, {ack: ['a', 'zz'], setErrs: new Map([['b', {description: 'bad', err: 'invalid_key'}]])})
      expect(first).toEqual({acked: ['a'], rejected: ['b'], stale: [], unknown: ['zz']})
      const second = ledger.applyReport(PEER, {ack: ['a', 'b', 'c'], setErrs: new Map([['a', {description: 'late', err: 'invalid_issuer'}]])})
      // 'a' is in both lists: it counts as rejected, and it is already settled, so stale.
      expect(second).toEqual({acked: ['c'], rejected: [], stale: ['b', 'a'], unknown: []})
      const listed = ledger.list({direction: 'out', limit: 10, peer: PEER})
      const byJti = Object.fromEntries(listed.map((entry) => [entry.jti, entry]))
      expect(byJti.a?.state).toBe('acked')
      expect(byJti.b).toMatchObject({description: 'bad', err: 'invalid_key', state: 'rejected'})
      expect(byJti.c?.state).toBe('acked')
      expect(byJti.d?.state).toBe('abandoned')
      // A settled SET keeps its attempts.
      expect(byJti.a?.attempts).toBe(1)
    } finally {
      ledger.close()
    }
  })

  it('recordReceived: new, duplicate (owed again), conflict, and a repeat inside one batch', () => {
    const ledger = new Ledger({now: () => T0, storage: make()})
    try {
      const one = token('{"jti":"j1"}')
      const other = token('{"jti":"j1","x":1}')
      expect(
        ledger.recordReceived(PEER, [
          {iss: 'https://iss', jti: 'j1', token: one, verdict: 'accepted'},
          {iss: 'https://iss', jti: 'j1', token: one, verdict: 'accepted'},
          {iss: 'https://iss', jti: 'j1', token: other, verdict: 'accepted'},
        ]).map((r) => r.status),
      ).toEqual(['new', 'duplicate', 'conflict'])
      expect(ledger.owed(PEER, 10).ack).toEqual(['j1'])
      expect(ledger.markDelivered(PEER, ['j1'])).toBe(1)
      expect(ledger.owed(PEER, 10).ack).toEqual([])
      expect(ledger.recordReceived(PEER, [{iss: 'https://iss', jti: 'j1', token: one, verdict: 'accepted'}])[0]?.status).toBe('duplicate')
      expect(ledger.owed(PEER, 10).ack).toEqual(['j1'])
      // The stored verdict wins over the redelivery's: a rejected SET stays rejected.
      ledger.recordReceived(PEER, [{description: 'no', err: 'invalid_key', iss: 'https://iss', jti: 'j2', token: token('{"jti":"j2"}'), verdict: 'rejected'}])
      ledger.markDelivered(PEER, ['j2'])
      ledger.recordReceived(PEER, [{iss: 'https://iss', jti: 'j2', token: token('{"jti":"j2"}'), verdict: 'accepted'}])
      expect(ledger.owed(PEER, 10).setErrs.get('j2')).toEqual({description: 'no', err: 'invalid_key'})
    } finally {
      ledger.close()
    }
  })
})

describe('SQLite WAL checkpoint threshold', () => {
  it('defaults to DEFAULT_WAL_AUTOCHECKPOINT_PAGES and takes walAutocheckpointPages', () => {
    const dir = scratch()
    const plain = openStore({path: join(dir, 'a.db')})
    const tuned = openStore({path: join(dir, 'b.db'), walAutocheckpointPages: 500})
    try {
      expect(plain.database.pragma('wal_autocheckpoint', {simple: true})).toBe(DEFAULT_WAL_AUTOCHECKPOINT_PAGES)
      expect(tuned.database.pragma('wal_autocheckpoint', {simple: true})).toBe(500)
    } finally {
      plain.close()
      tuned.close()
    }
  })
})
