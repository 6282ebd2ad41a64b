/**
 * Hand-off tracking in the inbox: rows stored but never handed off (printed and flushed) are
 * listed by `unhandedOff` until `markDelivered` or `markHandedOff`, in both storages; a state file
 * from before the `handed_off` column keeps its rows handed off; `replayUnhandedOff` prints them.
 */

import Database from 'better-sqlite3'
import {describe, expect, it} from 'vitest'

import {formatRecord, replayUnhandedOff, type SetRecord} from '../../src/cli/listen-output.js'
import {Ledger, type LedgerStorage} from '../../src/lib/ledger.js'
import {MemoryLedgerStorage, openStore, SCHEMA_VERSION} from '../../src/lib/store.js'
import {generatePeerKey, makeSetClaims, signSet} from '../helpers/peers/index.js'
import {failure} from '../helpers/errors.js'
import {scratchDirs} from '../helpers/scratch.js'

const PEER = 'token:tx'
const scratch = scratchDirs('pp-replay-')
const tempPath = (): string => scratch.statePath()

const key = generatePeerKey('ES256', 'k1')
const tokens = new Map<string, string>()
/** One signed SET per jti (memoised: ES256 signatures differ on every signing). */
function token(jti: string): string {
  let value = tokens.get(jti)
  if (value === undefined) {
    value = signSet(makeSetClaims({jti}), key)
    tokens.set(jti, value)
  }

  return value
}

const storages: Array<[string, () => LedgerStorage]> = [
  ['memory', () => new MemoryLedgerStorage()],
  ['sqlite', () => openStore({path: tempPath()})],
]

describe.each(storages)('inbox hand-off (%s)', (_name, makeStorage) => {
  it('new accepted and undecided rows are not handed off until delivered or marked; rejected rows need no replay', () => {
    const ledger = new Ledger({now: () => 1000, storage: makeStorage()})
    try {
      ledger.recordReceived(PEER, [
        {iss: 'https://tx.example', jti: 'a1', token: token('a1'), verdict: 'accepted'},
        {iss: 'https://tx.example', jti: 'u1', token: token('u1'), verdict: 'undecided'},
        {description: 'bad', err: 'invalid_key', iss: 'https://tx.example', jti: 'r1', token: token('r1'), verdict: 'rejected'},
      ])
      ledger.recordReceived('other', [{iss: 'https://tx.example', jti: 'a2', token: token('a2'), verdict: 'accepted'}])
      // Newest last; the rejected row is not listed.
      expect(ledger.unhandedOff(10).map((row) => [row.peer, row.jti, row.verdict])).toEqual([
        [PEER, 'a1', 'accepted'],
        [PEER, 'u1', 'undecided'],
        ['other', 'a2', 'accepted'],
      ])
      expect(ledger.unhandedOff(1).map((row) => row.jti)).toEqual(['a1'])
      expect(ledger.unhandedOff(10)[0]).toMatchObject({iss: 'https://tx.example', token: token('a1')})

      // Delivering the ack marks the row handed off in the same statement.
      expect(ledger.markDelivered(PEER, ['a1', 'r1'])).toBe(2)
      expect(ledger.unhandedOff(10).map((row) => row.jti)).toEqual(['u1', 'a2'])
      // A redelivery of a handed-off SET is a duplicate and does not come back for replay.
      expect(ledger.recordReceived(PEER, [{iss: 'https://tx.example', jti: 'a1', token: token('a1'), verdict: 'accepted'}])[0]?.status).toBe('duplicate')
      expect(ledger.unhandedOff(10).map((row) => row.jti)).toEqual(['u1', 'a2'])

      expect(ledger.markHandedOff('other', ['a2', 'nope'])).toBe(1)
      expect(ledger.markHandedOff('other', ['a2'])).toBe(0)
      expect(ledger.unhandedOff(10).map((row) => row.jti)).toEqual(['u1'])
      // Deciding an undecided SET (the user saw it) hands it off too.
      expect(ledger.decide(PEER, [{jti: 'u1', verdict: 'accepted'}])).toEqual([{jti: 'u1', status: 'decided'}])
      expect(ledger.unhandedOff(10)).toEqual([])
    } finally {
      ledger.close()
    }
  })

  it('without stored tokens nothing is listed for replay', () => {
    const ledger = new Ledger({storage: makeStorage(), storeTokens: false})
    try {
      ledger.recordReceived(PEER, [{iss: 'i', jti: 'a1', token: token('a1'), verdict: 'accepted'}])
      expect(ledger.unhandedOff(10)).toEqual([])
    } finally {
      ledger.close()
    }
  })

  it('rejects a bad limit and an empty peer', () => {
    const ledger = new Ledger({storage: makeStorage()})
    try {
      expect(failure(() => ledger.unhandedOff(-1))).toMatchObject({code: 'ERR_INTERNAL', message: 'limit must be a non-negative integer, got -1'})
      expect(failure(() => ledger.markHandedOff('', ['a']))).toMatchObject({code: 'ERR_INTERNAL', message: 'the ledger needs a non-empty peer id'})
    } finally {
      ledger.close()
    }
  })

  it('replayUnhandedOff prints every row as replayed, awaits the hand-off, then marks them', async () => {
    const ledger = new Ledger({storage: makeStorage()})
    try {
      const items = ['j1', 'j2', 'j3'].map((jti) => ({iss: 'https://tx.example', jti, token: token(jti), verdict: 'accepted' as const}))
      ledger.recordReceived(PEER, items)
      const printed: SetRecord[] = []
      const seenAtHandoff: number[] = []
      const count = await replayUnhandedOff(
        ledger,
        (record) => printed.push(record),
        () => {
          // Nothing is marked before the hand-off resolves.
          seenAtHandoff.push(ledger.unhandedOff(10).length)
          return Promise.resolve()
        },
        2,
      )
      expect(count).toBe(3)
      expect(seenAtHandoff).toEqual([3, 1])
      expect(printed.map((record) => [record.jti, record.status, record.verified, record.binding])).toEqual([
        ['j1', 'replayed', null, 'state'],
        ['j2', 'replayed', null, 'state'],
        ['j3', 'replayed', null, 'state'],
      ])
      expect(printed[0]).toMatchObject({event: 'caep.session-revoked', iss: 'https://tx.example', peer: PEER, type: 'set'})
      expect(ledger.unhandedOff(10)).toEqual([])
      expect(await replayUnhandedOff(ledger, () => expect.unreachable(), () => undefined)).toBe(0)
    } finally {
      ledger.close()
    }
  })
})

describe('replayed records', () => {
  it('read REPLAYED and "stored earlier" in the human line', async () => {
    const ledger = new Ledger({storage: new MemoryLedgerStorage()})
    ledger.recordReceived(PEER, [{iss: 'https://tx.example', jti: 'j1', token: token('j1'), verdict: 'accepted'}])
    ledger.recordReceived(PEER, [{iss: 'https://tx.example', jti: 'not-a-jws', token: 'garbage', verdict: 'accepted'}])
    const printed: SetRecord[] = []
    await replayUnhandedOff(ledger, (record) => printed.push(record), () => undefined)
    const {Chalk} = await import('chalk')
    const line = formatRecord(printed[0]!, new Chalk({level: 0}))
    expect(line).toMatch(/^REPLAYED {2}caep\.session-revoked {2}email:user@example\.com {2}jti=j1 {2}iss=https:\/\/tx\.example {2}stored earlier {2}from token:tx, stored before a restart, never printed$/)
    // A stored token that no longer decodes is still replayed, with empty claims.
    expect(printed[1]).toMatchObject({claims: {}, jti: 'not-a-jws', status: 'replayed'})
    expect(printed[1]?.event).toBeUndefined()
  })
})

describe('migration to the handed_off column', () => {
  it('keeps the rows of a version-2 state file handed off, and new rows are not', () => {
    const path = tempPath()
    const raw = new Database(path)
    // The version-2 inbox as migrations 1 and 2 created it (the parts this test reads).
    raw.exec(`CREATE TABLE outbox (seq INTEGER PRIMARY KEY, peer TEXT NOT NULL, jti TEXT NOT NULL, token TEXT NOT NULL, event TEXT, subject TEXT,
      state TEXT NOT NULL, attempts INTEGER NOT NULL, next_at INTEGER NOT NULL, created_at INTEGER NOT NULL, updated_at INTEGER NOT NULL,
      err TEXT, description TEXT, UNIQUE (peer, jti));
      CREATE TABLE inbox (seq INTEGER PRIMARY KEY, peer TEXT NOT NULL, jti TEXT NOT NULL, iss TEXT NOT NULL, hash TEXT NOT NULL, token TEXT,
      event TEXT, subject TEXT, verdict TEXT NOT NULL, err TEXT, description TEXT, owed INTEGER NOT NULL, received_at INTEGER NOT NULL,
      updated_at INTEGER NOT NULL, UNIQUE (peer, jti, iss));
      CREATE TABLE ssf_stream (seq INTEGER PRIMARY KEY, stream_id TEXT NOT NULL UNIQUE, status TEXT NOT NULL, record TEXT NOT NULL,
      created_at INTEGER NOT NULL, updated_at INTEGER NOT NULL);
      INSERT INTO inbox (peer, jti, iss, hash, token, verdict, owed, received_at, updated_at) VALUES ('${PEER}', 'old', 'i', 'h', 'tok', 'accepted', 1, 0, 0);`)
    raw.pragma('user_version = 2')
    raw.close()

    const storage = openStore({path})
    const ledger = new Ledger({storage})
    try {
      expect(storage.database.pragma('user_version', {simple: true})).toBe(SCHEMA_VERSION)
      expect(SCHEMA_VERSION).toBe(5)
      expect(ledger.unhandedOff(10)).toEqual([])
      // Migration 4 moved the token to its own table; the row keeps it.
      expect(storage.getInbox(PEER, 'i', 'old')).toMatchObject({handedOff: true, owed: true, token: 'tok'})
      ledger.recordReceived(PEER, [{iss: 'i', jti: 'new', token: token('new'), verdict: 'accepted'}])
      expect(ledger.unhandedOff(10).map((row) => row.jti)).toEqual(['new'])
      expect(storage.getInbox(PEER, 'i', 'new')).toMatchObject({handedOff: false})
    } finally {
      ledger.close()
    }
  })
})
