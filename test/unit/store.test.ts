/**
 * The durable SQLite store: location, durability across close and crash, single writer (a real
 * second process), corrupt and unusable files, read-only directory and a full disk.
 */
import {spawn} from 'node:child_process'
import {chmodSync, existsSync, mkdirSync, mkdtempSync, rmSync, statSync, writeFileSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join, resolve} from 'node:path'

import Database from 'better-sqlite3'
import {afterAll, describe, expect, it} from 'vitest'

import {Ledger} from '../../src/lib/ledger.js'
import {defaultStatePath, openLedger, openStore, SCHEMA_VERSION} from '../../src/lib/store.js'
import {ROOT} from '../helpers/cli.js'
import {failure} from '../helpers/errors.js'

const STORE_MODULE = join(ROOT, 'src', 'lib', 'store.ts')
const PEER = 'https://peer.example/pushpull'
const dirs: string[] = []

afterAll(() => {
  for (const dir of dirs) {
    try {
      chmodSync(dir, 0o700)
    } catch {
      // already gone
    }

    rmSync(dir, {recursive: true, force: true})
  }
})

function tempDir(): string {
  const dir = mkdtempSync(join(tmpdir(), 'pushpull-store-'))
  dirs.push(dir)
  return dir
}


interface ChildResult {
  code: number | null
  signal: NodeJS.Signals | null
  stdout: string
  stderr: string
}

/** Run a small ESM script (TypeScript through tsx) in its own node process. */
async function runScript(dir: string, source: string, options: {uid?: number; gid?: number} = {}): Promise<ChildResult> {
  const file = join(dir, `child-${Math.random().toString(36).slice(2)}.mts`)
  writeFileSync(file, source, {mode: 0o644})
  return new Promise((resolvePromise, reject) => {
    const child = spawn(process.execPath, ['--import', 'tsx', file], {cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'], ...options})
    let stdout = ''
    let stderr = ''
    child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()))
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()))
    child.on('error', reject)
    child.on('close', (code, signal) => resolvePromise({code, signal, stdout, stderr}))
  })
}

/** Script that tries to open the store at `path` and prints the outcome as JSON. */
function openScript(path: string): string {
  return `
import {openStore} from ${JSON.stringify(STORE_MODULE)}
try {
  const store = openStore({path: ${JSON.stringify(path)}})
  store.close()
  console.log(JSON.stringify({ok: true}))
} catch (error) {
  console.log(JSON.stringify({code: error.code, message: error.message}))
}
`
}

describe('defaultStatePath', () => {
  it('prefers PUSHPULL_STATE, then an absolute XDG_STATE_HOME, then ~/.local/state', () => {
    expect(defaultStatePath({PUSHPULL_STATE: '/srv/pp.db', XDG_STATE_HOME: '/x'}, '/home/u')).toBe('/srv/pp.db')
    expect(defaultStatePath({PUSHPULL_STATE: 'rel/pp.db'}, '/home/u')).toBe(resolve('rel/pp.db'))
    expect(defaultStatePath({XDG_STATE_HOME: '/var/state'}, '/home/u')).toBe('/var/state/pushpull/state.db')
    expect(defaultStatePath({XDG_STATE_HOME: 'relative', PUSHPULL_STATE: ''}, '/home/u')).toBe('/home/u/.local/state/pushpull/state.db')
    expect(defaultStatePath({}, '/home/u')).toBe('/home/u/.local/state/pushpull/state.db')
  })
})

describe('openStore', () => {
  it('creates the directory (0700), a WAL database at the current schema version, and checkpoints on close', () => {
    const path = join(tempDir(), 'nested', 'deeper', 'state.db')
    const store = openStore({path})
    expect(statSync(join(path, '..')).mode & 0o777).toBe(0o700)
    expect(store.path).toBe(path)
    store.close()
    store.close() // twice is fine
    expect(existsSync(`${path}-wal`)).toBe(false)
    expect(existsSync(`${path}.pid`)).toBe(false)
    const db = new Database(path, {readonly: true})
    expect(db.pragma('user_version', {simple: true})).toBe(SCHEMA_VERSION)
    expect(db.pragma('journal_mode', {simple: true})).toBe('wal')
    db.close()
  })

  it('keeps owed acks and pending SETs across close and reopen', () => {
    const path = join(tempDir(), 'state.db')
    let t = 1_000_000
    const first = openLedger({path, now: () => t, random: () => 0})
    first.enqueue(PEER, [{jti: 'out-1', token: 'tok-1'}, {jti: 'out-2', token: 'tok-2'}, {jti: 'out-3', token: 'tok-3'}])
    first.takeDue(PEER, 2) // out-1, out-2 in flight
    first.markAcked(PEER, ['out-1'])
    first.recordReceived(PEER, [
      {iss: 'https://tx', jti: 'in-1', hash: 'h1', verdict: 'accepted'},
      {iss: 'https://tx', jti: 'in-2', hash: 'h2', verdict: 'rejected', err: 'invalid_key', description: 'bad signature'},
      {iss: 'https://tx', jti: 'in-3', hash: 'h3', verdict: 'undecided'},
    ])
    first.close()

    t += 1000
    const second = openLedger({path, now: () => t, random: () => 0})
    try {
      expect(second.owed(PEER, 100)).toEqual({ack: ['in-1'], setErrs: new Map([['in-2', {err: 'invalid_key', description: 'bad signature'}]])})
      expect(second.stats(PEER)[0]?.outbox).toEqual({pending: 1, in_flight: 1, acked: 1, rejected: 0, abandoned: 0})
      expect(second.requeueInFlight()).toBe(1)
      // out-3 has been due since before the restart; out-2 is due from the requeue on.
      expect(second.takeDue(PEER, 10).sets).toEqual([
        {jti: 'out-3', token: 'tok-3', attempt: 1},
        {jti: 'out-2', token: 'tok-2', attempt: 2},
      ])
      expect(second.recordReceived(PEER, [{iss: 'https://tx', jti: 'in-1', hash: 'h1', verdict: 'accepted'}])[0]?.status).toBe('duplicate')
      expect(second.decide(PEER, [{jti: 'in-3', verdict: 'accepted'}])).toEqual([{jti: 'in-3', status: 'decided'}])
    } finally {
      second.close()
    }
  })

  it('loses nothing committed when the process is killed with SIGKILL before it acks', async () => {
    const dir = tempDir()
    const path = join(dir, 'state.db')
    const result = await runScript(
      dir,
      `
import {openLedger} from ${JSON.stringify(STORE_MODULE)}
const ledger = openLedger({path: ${JSON.stringify(path)}})
ledger.recordReceived(${JSON.stringify(PEER)}, [{iss: 'https://tx', jti: 'stored-1', hash: 'h', verdict: 'accepted'}])
ledger.enqueue(${JSON.stringify(PEER)}, [{jti: 'queued-1', token: 'tok'}])
ledger.takeDue(${JSON.stringify(PEER)}, 1)
process.kill(process.pid, 'SIGKILL')
`,
    )
    expect(result.signal).toBe('SIGKILL')
    const ledger = openLedger({path})
    try {
      expect(ledger.owed(PEER, 10).ack).toEqual(['stored-1'])
      expect(ledger.requeueInFlight()).toBe(1)
      expect(ledger.takeDue(PEER, 10).sets.map((s) => s.jti)).toEqual(['queued-1'])
      // The redelivery is acked again but not reported as new.
      expect(ledger.recordReceived(PEER, [{iss: 'https://tx', jti: 'stored-1', hash: 'h', verdict: 'accepted'}])[0]?.status).toBe('duplicate')
    } finally {
      ledger.close()
    }
  })

  it('fails fast with ERR_STATE_LOCKED when another process holds the state', async () => {
    const dir = tempDir()
    const path = join(dir, 'state.db')
    const store = openStore({path})
    try {
      const result = await runScript(dir, openScript(path))
      expect(result.stderr).toBe('')
      expect(JSON.parse(result.stdout)).toEqual({
        code: 'ERR_STATE_LOCKED',
        message: `state database ${path} is in use by another pushpull process (pid ${process.pid}); stop it or use --state to choose another file`,
      })
    } finally {
      store.close()
    }

    // Released on close: the other process may open it now.
    const after = await runScript(dir, openScript(path))
    expect(JSON.parse(after.stdout)).toEqual({ok: true})
  })

  it('refuses a second open of the same file in this process', () => {
    const path = join(tempDir(), 'state.db')
    const store = openStore({path})
    try {
      const error = failure(() => openStore({path}))
      expect(error.code).toBe('ERR_STATE_LOCKED')
      expect(error.message).toBe(`state database ${path} is already open in this process; stop it or use --state to choose another file`)
      expect(error.details).toEqual({path, pid: process.pid})
    } finally {
      store.close()
    }

    openStore({path}).close()
  })

  it('refuses a file of garbage bytes with ERR_STATE_CORRUPT naming the file and the reset', () => {
    const path = join(tempDir(), 'state.db')
    writeFileSync(path, Buffer.alloc(16_384, 0x5a))
    const error = failure(() => openStore({path}))
    expect(error.code).toBe('ERR_STATE_CORRUPT')
    expect(error.message).toBe(
      `state database ${path} is unusable: it is corrupt or not an SQLite database (file is not a database). ` +
        'Move it away or delete it (pending acks and unacked SETs in it are lost), or use --state to choose another file',
    )
    expect(error.details).toEqual({path})
    // Refusing it does not destroy it, and does not hold a lock.
    expect(statSync(path).size).toBe(16_384)
    expect(failure(() => openStore({path})).code).toBe('ERR_STATE_CORRUPT')
  })

  it('refuses an SQLite file that is not ours, and one from a newer pushpull', () => {
    const dir = tempDir()
    const foreign = join(dir, 'foreign.db')
    const db = new Database(foreign)
    db.exec('CREATE TABLE customers (id INTEGER)')
    db.close()
    const error = failure(() => openStore({path: foreign}))
    expect(error.code).toBe('ERR_STATE_CORRUPT')
    expect(error.message).toMatch(new RegExp(`^state database ${foreign} is unusable: it is an SQLite database but not a pushpull state file\\. Move it away or delete it`))

    const newer = join(dir, 'newer.db')
    openStore({path: newer}).close()
    const raw = new Database(newer)
    raw.pragma(`user_version = ${SCHEMA_VERSION + 1}`)
    raw.close()
    const newerError = failure(() => openStore({path: newer}))
    expect(newerError.code).toBe('ERR_STATE_CORRUPT')
    expect(newerError.message).toContain(`its schema version ${SCHEMA_VERSION + 1} is newer than this pushpull understands (${SCHEMA_VERSION})`)
  })

  it('refuses a state path that cannot be opened as a file with ERR_STATE_CORRUPT', () => {
    const path = join(tempDir(), 'state.db')
    mkdirSync(path) // a directory where the database should be
    const error = failure(() => openStore({path}))
    expect(error.code).toBe('ERR_STATE_CORRUPT')
    expect(error.message).toMatch(new RegExp(`^state database ${path} is unusable: it cannot be opened\\. Move it away or delete it`))
  })

  it('reports ERR_STATE_IO when the state directory cannot be created', () => {
    const dir = tempDir()
    writeFileSync(join(dir, 'file'), 'x')
    const path = join(dir, 'file', 'state.db')
    const error = failure(() => openStore({path}))
    expect(error.code).toBe('ERR_STATE_IO')
    expect(error.message).toMatch(new RegExp(`^cannot create the state directory ${join(dir, 'file')}: EEXIST`))
  })

  it('reports ERR_STATE_IO for a read-only state directory', async () => {
    const dir = tempDir()
    const readonlyDir = join(dir, 'ro')
    mkdirSync(readonlyDir)
    chmodSync(readonlyDir, 0o555)
    const path = join(readonlyDir, 'state.db')
    // root ignores permissions, so as root the attempt runs as `nobody` in a child process.
    const asRoot = process.getuid?.() === 0
    if (asRoot) chmodSync(dir, 0o755)
    const result = asRoot ? await runScript(dir, openScript(path), {uid: 65_534, gid: 65_534}) : await runScript(dir, openScript(path))
    const outcome = JSON.parse(result.stdout) as {code: string; message: string}
    expect(outcome.code).toBe('ERR_STATE_IO')
    expect(outcome.message).toMatch(new RegExp(`^cannot create the state database ${path}: unable to open database file`))
    expect(existsSync(path)).toBe(false)
  })

  it('migrates a version-3 file to tokens in their own tables and the outbox_active index, keeping every row', () => {
    const path = join(tempDir(), 'state.db')
    const raw = new Database(path)
    // The version-3 schema as migrations 1 to 3 made it.
    raw.exec(`
      CREATE TABLE outbox (seq INTEGER PRIMARY KEY, peer TEXT NOT NULL, jti TEXT NOT NULL, token TEXT NOT NULL, event TEXT, subject TEXT,
        state TEXT NOT NULL, attempts INTEGER NOT NULL, next_at INTEGER NOT NULL, created_at INTEGER NOT NULL, updated_at INTEGER NOT NULL,
        err TEXT, description TEXT, UNIQUE (peer, jti));
      CREATE INDEX outbox_due ON outbox (peer, next_at, seq) WHERE state IN ('pending', 'in_flight');
      CREATE INDEX outbox_done ON outbox (updated_at) WHERE state IN ('acked', 'rejected', 'abandoned');
      CREATE TABLE inbox (seq INTEGER PRIMARY KEY, peer TEXT NOT NULL, jti TEXT NOT NULL, iss TEXT NOT NULL, hash TEXT NOT NULL, token TEXT,
        event TEXT, subject TEXT, verdict TEXT NOT NULL, err TEXT, description TEXT, owed INTEGER NOT NULL, received_at INTEGER NOT NULL,
        updated_at INTEGER NOT NULL, UNIQUE (peer, jti, iss));
      CREATE INDEX inbox_owed ON inbox (peer, updated_at, seq) WHERE owed = 1;
      CREATE INDEX inbox_done ON inbox (updated_at) WHERE owed = 0;
      CREATE TABLE ssf_stream (seq INTEGER PRIMARY KEY, stream_id TEXT NOT NULL UNIQUE, status TEXT NOT NULL, record TEXT NOT NULL,
        created_at INTEGER NOT NULL, updated_at INTEGER NOT NULL);
      ALTER TABLE inbox ADD COLUMN handed_off INTEGER NOT NULL DEFAULT 1;
      CREATE INDEX inbox_unhanded ON inbox (seq) WHERE handed_off = 0;
      INSERT INTO outbox (peer, jti, token, event, state, attempts, next_at, created_at, updated_at) VALUES
        ('${PEER}', 'pending-1', 'tok-p', 'ev', 'pending', 0, 5000, 100, 100),
        ('${PEER}', 'flight-1', 'tok-f', 'ev', 'in_flight', 1, 3000, 100, 100),
        ('${PEER}', 'acked-1', 'tok-k', 'ev', 'acked', 1, 0, 0, 0);
      INSERT INTO inbox (peer, jti, iss, hash, token, verdict, owed, handed_off, received_at, updated_at) VALUES
        ('${PEER}', 'unhanded-1', 'https://tx', 'h1', 'tok-u', 'accepted', 1, 0, 100, 100),
        ('${PEER}', 'done-1', 'https://tx', 'h2', NULL, 'accepted', 0, 1, 0, 0);
    `)
    raw.pragma('user_version = 3')
    raw.close()

    let now = 10_000
    const storage = openStore({path})
    const ledger = new Ledger({now: () => now, random: () => 0, storage})
    try {
      const db = storage.database
      expect(db.pragma('user_version', {simple: true})).toBe(SCHEMA_VERSION)
      expect(SCHEMA_VERSION).toBe(5)
      const names = (db.prepare(`SELECT name FROM sqlite_master WHERE type IN ('index', 'table', 'trigger') AND name NOT LIKE 'sqlite_%' ORDER BY name`).all() as Array<{name: string}>).map((r) => r.name)
      expect(names).toEqual([
        'inbox', 'inbox_owed', 'inbox_token', 'inbox_token_gone', 'inbox_unhanded', 'outbox', 'outbox_active', 'outbox_token', 'outbox_token_gone', 'ssf_stream',
      ])
      const columns = (table: string): string[] => (db.prepare(`SELECT name FROM pragma_table_info(?)`).all(table) as Array<{name: string}>).map((r) => r.name)
      expect(columns('outbox')).not.toContain('token')
      expect(columns('inbox')).not.toContain('token')
      // Every row kept its token: the in-flight SET past its deadline first, then the pending one.
      expect(ledger.takeDue(PEER, 10).sets).toEqual([
        {attempt: 2, jti: 'flight-1', token: 'tok-f'},
        {attempt: 1, jti: 'pending-1', token: 'tok-p'},
      ])
      expect(storage.getOutbox(PEER, 'acked-1')).toMatchObject({state: 'acked', token: 'tok-k'})
      expect(ledger.unhandedOff(10)).toEqual([{iss: 'https://tx', jti: 'unhanded-1', peer: PEER, token: 'tok-u', verdict: 'accepted'}])
      expect(ledger.owed(PEER, 10)).toEqual({ack: ['unhanded-1'], setErrs: new Map()})
      expect(storage.getInbox(PEER, 'https://tx', 'done-1')?.token).toBeUndefined()
      // Pruning a row deletes its token too.
      now = 20_000
      expect(ledger.prune({retentionMs: 15_000})).toEqual({inbox: 1, outbox: 1})
      const count = (table: string): number => (db.prepare(`SELECT count(*) AS n FROM ${table}`).get() as {n: number}).n
      expect([count('outbox_token'), count('inbox_token')]).toEqual([2, 1])
    } finally {
      ledger.close()
    }
  })

  it('creates a new file at the smallest schema (the pages migrations free are given back)', () => {
    const storage = openStore({path: join(tempDir(), 'state.db')})
    try {
      expect(storage.database.pragma('freelist_count', {simple: true})).toBe(0)
      // One page for the schema, one per table and index: 5 tables, 6 indexes.
      expect(storage.database.pragma('page_count', {simple: true})).toBe(12)
    } finally {
      storage.close()
    }
  })

  it('on a full disk: ERR_STATE_IO, nothing of the batch stored, no ack owed for it', () => {
    const path = join(tempDir(), 'state.db')
    const storage = openStore({path, maxPageCount: 12})
    const ledger = new Ledger({storage})
    try {
      ledger.recordReceived(PEER, [{iss: 'https://tx', jti: 'small', hash: 'h', verdict: 'accepted'}])
      const batch = Array.from({length: 200}, (_, i) => ({iss: 'https://tx', jti: `big-${i}`, token: `h.${'p'.repeat(2000)}${i}.s`, verdict: 'accepted' as const}))
      const error = failure(() => ledger.recordReceived(PEER, batch))
      expect(error.code).toBe('ERR_STATE_IO')
      expect(error.message).toBe(`could not write the state database ${path}: database or disk is full (SQLITE_FULL); nothing of this batch was stored`)
      expect(error.details).toEqual({path, sqliteCode: 'SQLITE_FULL'})
      // Only what was committed before is owed; the store is still usable.
      expect(ledger.owed(PEER, 1000)).toEqual({ack: ['small'], setErrs: new Map()})
      expect(ledger.stats(PEER)[0]?.inbox.accepted).toBe(1)
      expect(ledger.markDelivered(PEER, ['small'])).toBe(1)
    } finally {
      ledger.close()
    }
  })
})
