/**
 * The SSF stream store: one contract, run against the in-memory store and the SQLite store in the
 * state database; then what only the SQLite store does (survives a reopen, migrates a version-1
 * state file, shares the ledger's file, reports corrupt records and a closed database).
 */
import {createPrivateKey} from 'node:crypto'
import {createServer} from 'node:http'
import type {AddressInfo} from 'node:net'

import Database from 'better-sqlite3'
import {afterEach, describe, expect, it} from 'vitest'

import {generateKeyPair} from '../../src/lib/keys.js'
import {Ledger} from '../../src/lib/ledger.js'
import {DELIVERY_POLL} from '../../src/lib/ssf/metadata.js'
import {SqliteSsfStreamStore} from '../../src/lib/ssf/sqlite-store.js'
import {MemorySsfStreamStore, type SsfStreamStore, type StoredStream} from '../../src/lib/ssf/store.js'
import {createSsfTransmitter} from '../../src/lib/ssf/transmitter.js'
import {openStore, SCHEMA_VERSION, type SqliteLedgerStorage} from '../../src/lib/store.js'
import {failure} from '../helpers/errors.js'
import {scratchDirs} from '../helpers/scratch.js'

const scratch = scratchDirs('pushpull-ssf-store-')
const tempPath = (): string => scratch.statePath()
const cleanups: Array<() => unknown> = []

afterEach(async () => {
  while (cleanups.length > 0) await cleanups.pop()?.()
})

function openSqlite(path = tempPath()): {storage: SqliteLedgerStorage; store: SqliteSsfStreamStore} {
  const storage = openStore({path})
  cleanups.push(() => storage.close())
  return {storage, store: new SqliteSsfStreamStore(storage)}
}

function stream(id: string, overrides: Partial<StoredStream> = {}): StoredStream {
  return {
    config: {aud: 'rx', delivery: {endpoint_url: `https://tx.example/poll/${id}`, method: DELIVERY_POLL}, events_delivered: ['urn:e'], iss: 'https://tx.example', stream_id: id},
    createdAt: 1000,
    status: 'enabled',
    subjects: [],
    ...overrides,
  }
}

describe.each([
  ['memory', (): SsfStreamStore => new MemorySsfStreamStore()],
  ['sqlite', (): SsfStreamStore => openSqlite().store],
])('SsfStreamStore contract (%s)', (_name, make) => {
  it('is empty at first and answers undefined / false for an unknown stream', () => {
    const store = make()
    expect(store.list()).toEqual([])
    expect(store.get('nope')).toBeUndefined()
    expect(store.delete('nope')).toBe(false)
  })

  it('puts, gets and lists in creation order; a put of an existing stream replaces it in place', () => {
    const store = make()
    store.put(stream('a'))
    store.put(stream('b', {createdAt: 2000}))
    store.put(stream('c', {createdAt: 3000}))
    store.put(stream('a', {reason: 'maintenance', status: 'paused'}))
    expect(store.list().map((s) => s.config.stream_id)).toEqual(['a', 'b', 'c'])
    expect(store.get('a')).toEqual(stream('a', {reason: 'maintenance', status: 'paused'}))
    expect(store.get('b')?.createdAt).toBe(2000)
  })

  it('keeps every member: subjects, description, verification time, arrays of audiences', () => {
    const store = make()
    const full = stream('full', {
      config: {...stream('full').config, aud: ['rx1', 'rx2'], description: 'demo "stream"', events_requested: ['urn:e'], min_verification_interval: 30},
      lastVerificationAt: 123_456,
      subjects: [{subject: {email: 'ana@example.com', format: 'email'}, verified: true}, {subject: {format: 'opaque', id: 'x'}}],
    })
    store.put(full)
    expect(store.get('full')).toEqual(full)
    expect(store.list()).toEqual([full])
  })

  it('hands out copies: changing a returned or a stored object changes nothing inside', () => {
    const store = make()
    const original = stream('a')
    store.put(original)
    original.status = 'disabled'
    const got = store.get('a')!
    expect(got.status).toBe('enabled')
    got.subjects.push({subject: {format: 'opaque', id: 'z'}})
    got.config.events_delivered.push('urn:other')
    expect(store.get('a')).toEqual(stream('a'))
    store.list()[0]!.status = 'paused'
    expect(store.get('a')?.status).toBe('enabled')
  })

  it('deletes one stream; deleting twice answers false; a re-created stream goes last', () => {
    const store = make()
    store.put(stream('a'))
    store.put(stream('b'))
    expect(store.delete('a')).toBe(true)
    expect(store.delete('a')).toBe(false)
    expect(store.get('a')).toBeUndefined()
    store.put(stream('a'))
    expect(store.list().map((s) => s.config.stream_id)).toEqual(['b', 'a'])
  })

  it('stores a peer-supplied "__proto__" key as data, never as a prototype', () => {
    const store = make()
    const subject = JSON.parse('{"format":"opaque","id":"p","__proto__":{"polluted":true}}') as Record<string, unknown>
    store.put(stream('p', {subjects: [{subject}]}))
    const got = store.get('p')!.subjects[0]!.subject
    expect(Object.getPrototypeOf(got)).toBe(Object.prototype)
    expect(Object.hasOwn(got, '__proto__')).toBe(true)
    expect(({} as Record<string, unknown>).polluted).toBeUndefined()
  })
})

describe('SqliteSsfStreamStore', () => {
  it('keeps streams across close and reopen, next to the ledger in the same file', () => {
    const path = tempPath()
    const first = openStore({path})
    const ledger = new Ledger({storage: first})
    ledger.enqueue('https://peer.example', [{jti: 'j1', token: 'a.b.c'}])
    new SqliteSsfStreamStore(first).put(stream('kept', {status: 'paused'}))
    first.close()

    const second = openStore({path})
    cleanups.push(() => second.close())
    expect(new SqliteSsfStreamStore(second).list()).toEqual([stream('kept', {status: 'paused'})])
    expect(second.getOutbox('https://peer.example', 'j1')?.state).toBe('pending')
  })

  it('adds its table to a version-1 state file without touching the ledger rows', () => {
    const path = tempPath()
    const raw = new Database(path)
    // The version-1 schema as migration 1 created it (only the parts this test reads).
    raw.exec(`CREATE TABLE outbox (seq INTEGER PRIMARY KEY, peer TEXT NOT NULL, jti TEXT NOT NULL, token TEXT NOT NULL, event TEXT, subject TEXT,
      state TEXT NOT NULL, attempts INTEGER NOT NULL, next_at INTEGER NOT NULL, created_at INTEGER NOT NULL, updated_at INTEGER NOT NULL,
      err TEXT, description TEXT, UNIQUE (peer, jti));
      CREATE TABLE inbox (seq INTEGER PRIMARY KEY, peer TEXT NOT NULL, jti TEXT NOT NULL, iss TEXT NOT NULL, hash TEXT NOT NULL, token TEXT,
      event TEXT, subject TEXT, verdict TEXT NOT NULL, err TEXT, description TEXT, owed INTEGER NOT NULL, received_at INTEGER NOT NULL,
      updated_at INTEGER NOT NULL, UNIQUE (peer, jti, iss));
      INSERT INTO outbox (peer, jti, token, state, attempts, next_at, created_at, updated_at) VALUES ('p', 'old', 't', 'pending', 0, 0, 0, 0);`)
    raw.pragma('user_version = 1')
    raw.close()

    const {storage, store} = openSqlite(path)
    expect(storage.database.pragma('user_version', {simple: true})).toBe(SCHEMA_VERSION)
    expect(SCHEMA_VERSION).toBeGreaterThanOrEqual(2)
    expect(store.list()).toEqual([])
    store.put(stream('new'))
    expect(store.get('new')?.config.stream_id).toBe('new')
    expect(storage.getOutbox('p', 'old')?.state).toBe('pending')
  })

  it('reports a record that is not a stream as ERR_STATE_CORRUPT naming the file and the stream', () => {
    const {storage, store} = openSqlite()
    storage.database.prepare(`INSERT INTO ssf_stream (stream_id, status, record, created_at, updated_at) VALUES ('bad', 'enabled', '{not json', 0, 0)`).run()
    const error = failure(() => store.get('bad'))
    expect(error.code).toBe('ERR_STATE_CORRUPT')
    expect(error.message).toBe(
      `state database ${storage.path} is unusable: the SSF stream "bad" is not readable JSON. Delete the stream (or the file), or use --state to choose another file`,
    )
    storage.database.prepare(`UPDATE ssf_stream SET record = '{"config":{"stream_id":"other"},"status":"enabled","subjects":[],"createdAt":0}'`).run()
    expect(failure(() => store.list()).message).toContain('the SSF stream "bad" has no configuration for its own stream_id')
    storage.database.prepare(`UPDATE ssf_stream SET record = '{"config":{"stream_id":"bad"},"status":"asleep","subjects":[],"createdAt":0}'`).run()
    expect(failure(() => store.get('bad')).message).toContain('the SSF stream "bad" has no valid status')
    expect(store.delete('bad')).toBe(true)
  })

  it('fails with ERR_INTERNAL once the state database is closed', () => {
    const {storage, store} = openSqlite()
    storage.close()
    const error = failure(() => store.list())
    expect(error.code).toBe('ERR_INTERNAL')
    expect(error.message).toContain('The database connection is not open')
    expect(failure(() => new SqliteSsfStreamStore(storage))).toMatchObject({code: 'ERR_INTERNAL', message: `state database ${storage.path} is closed`})
  })

  it('a full disk is ERR_STATE_IO and leaves the stored stream as it was', () => {
    const path = tempPath()
    openStore({path}).close()
    const storage = openStore({maxPageCount: 12, path})
    cleanups.push(() => storage.close())
    const store = new SqliteSsfStreamStore(storage)
    store.put(stream('s'))
    const huge = stream('s', {subjects: Array.from({length: 2000}, (_, i) => ({subject: {format: 'opaque', id: `subject-${i}-${'x'.repeat(40)}`}}))})
    const error = failure(() => store.put(huge))
    expect(error.code).toBe('ERR_STATE_IO')
    expect(error.message).toContain(`could not write the state database ${storage.path}`)
    expect(store.get('s')).toEqual(stream('s'))
  })

  it('a transmitter started on stored streams re-stamps their issuer and poll endpoint', async () => {
    const {store} = openSqlite()
    store.put(stream('old-poll'))
    const push = stream('old-push', {config: {...stream('old-push').config, delivery: {endpoint_url: 'https://rx.example/events', method: 'urn:ietf:rfc:8935'}}})
    store.put(push)
    const pair = await generateKeyPair('ES256', 'k1')
    const transmitter = createSsfTransmitter({
      issuer: 'http://127.0.0.1:9999',
      jwks: pair.publicJwks as unknown as {keys: Array<Record<string, unknown>>},
      pollUrl: () => 'http://127.0.0.1:9999/poll',
      signer: {alg: 'ES256', key: createPrivateKey(pair.privatePem), kid: pair.kid},
      store,
    })
    transmitter.close()
    expect(store.get('old-poll')?.config).toMatchObject({delivery: {endpoint_url: 'http://127.0.0.1:9999/poll', method: DELIVERY_POLL}, iss: 'http://127.0.0.1:9999'})
    expect(store.get('old-push')?.config).toMatchObject({delivery: {endpoint_url: 'https://rx.example/events'}, iss: 'http://127.0.0.1:9999'})
  })

  it("backs the transmitter handler: a stream created over HTTP is there after a restart", async () => {
    const path = tempPath()
    const pair = await generateKeyPair('ES256', 'k1')
    const signer = {alg: 'ES256' as const, key: createPrivateKey(pair.privatePem), kid: pair.kid}
    const jwks = pair.publicJwks as unknown as {keys: Array<Record<string, unknown>>}

    async function serve(storage: SqliteLedgerStorage): Promise<{base: string; close(): Promise<void>}> {
      const holder: {handle?: ReturnType<typeof createSsfTransmitter>['handle']} = {}
      const server = createServer((req, res) => {
        void holder.handle?.(req, res, new URL(req.url ?? '/', 'http://127.0.0.1')).then((handled) => {
          if (!handled) res.writeHead(404).end()
        })
      })
      await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
      const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`
      const transmitter = createSsfTransmitter({issuer: base, jwks, signer, store: new SqliteSsfStreamStore(storage)})
      holder.handle = transmitter.handle.bind(transmitter)
      return {
        base,
        async close() {
          transmitter.close()
          server.closeAllConnections()
          await new Promise<void>((resolve) => server.close(() => resolve()))
        },
      }
    }

    const first = openStore({path})
    const one = await serve(first)
    const created = await fetch(`${one.base}/ssf/stream`, {body: '{"description":"durable"}', headers: {'content-type': 'application/json'}, method: 'POST'})
    expect(created.status).toBe(201)
    const {stream_id: id} = (await created.json()) as {stream_id: string}
    const paused = await fetch(`${one.base}/ssf/status`, {body: JSON.stringify({reason: 'night', status: 'paused', stream_id: id}), headers: {'content-type': 'application/json'}, method: 'POST'})
    expect(paused.status).toBe(200)
    await one.close()
    first.close()

    const second = openStore({path})
    cleanups.push(() => second.close())
    const two = await serve(second)
    cleanups.push(async () => two.close())
    const got = await fetch(`${two.base}/ssf/stream?stream_id=${id}`)
    expect(got.status).toBe(200)
    expect(((await got.json()) as {description: string}).description).toBe('durable')
    const status = (await (await fetch(`${two.base}/ssf/status?stream_id=${id}`)).json()) as Record<string, unknown>
    expect(status).toEqual({reason: 'night', status: 'paused', stream_id: id})
    expect((await fetch(`${two.base}/ssf/stream?stream_id=${id}`, {method: 'DELETE'})).status).toBe(204)
    expect(new SqliteSsfStreamStore(second).list()).toEqual([])
  })
})
