/**
 * Durable ledger storage on SQLite (better-sqlite3 12).
 *
 * - Location: an explicit path. The CLI resolves it with `defaultStatePath(env, homedir)`
 *   (`PUSHPULL_STATE`, else `$XDG_STATE_HOME/pushpull/state.db`, else
 *   `~/.local/state/pushpull/state.db`) or `--state PATH`. The directory is created with mode 0700.
 * - Durability: WAL journal with `synchronous=NORMAL`. A process crash (kill -9) loses nothing that
 *   was committed; a power loss or OS crash may lose the last few transactions (never corrupts).
 *   `synchronous: 'FULL'` makes every commit survive power loss too, at a cost in throughput.
 * - One writer: the database is opened with `locking_mode=EXCLUSIVE` and a write at open with
 *   busy timeout 0, so a second process (or a second open in this process) fails at once with
 *   ERR_STATE_LOCKED. The holder's pid is written next to the database (`<path>.pid`) only to name
 *   it in that message.
 * - Schema versioned with `PRAGMA user_version` and an ordered migration list; a file that is not
 *   SQLite, not ours, or from a newer pushpull is ERR_STATE_CORRUPT; a failed write (disk full,
 *   read-only) is ERR_STATE_IO and rolls the whole batch back.
 * - Every ledger call is one transaction on prepared statements; no row is cached in memory, so
 *   memory use does not grow with the number of SETs. `Ledger.prune` deletes old finished rows.
 * - Throughput (figure 4): a SET's token is written once, to a table of its own (`outbox_token`,
 *   `inbox_token`), so the rows that change state stay small; one partial index holds the rows
 *   still to send, in-flight ones by seq within 1024 ms deadline buckets (a batch's jittered
 *   deadlines touch a few index pages, not one each); batches of acks and deliveries are one
 *   statement each. See migrations 4 and 5.
 */
import {mkdirSync, readFileSync, rmSync, writeFileSync, existsSync} from 'node:fs'
import {dirname, join, resolve, isAbsolute} from 'node:path'

import Database from 'better-sqlite3'

import {PushpullError} from './errors.js'
import {
  type CountRow,
  type InboxChange,
  type InboxRow,
  Ledger,
  type LedgerOptions,
  type LedgerStorage,
  type ListQuery,
  type OutboxChange,
  type OutboxRow,
  type OutboxRowChange,
  type OutboxState,
  type OwedRow,
  type SettleChange,
  type UnhandedOffRow,
  type Verdict,
} from './ledger.js'

export {MemoryLedgerStorage} from './store/memory.js'

/** Where the state database lives when neither `--state` nor `PUSHPULL_STATE` says otherwise. */
export function defaultStatePath(env: Readonly<Record<string, string | undefined>>, homedir: string): string {
  const explicit = env.PUSHPULL_STATE
  if (explicit !== undefined && explicit !== '') return resolve(explicit)
  const xdg = env.XDG_STATE_HOME
  // The XDG spec says relative values are invalid and must be ignored.
  if (xdg !== undefined && xdg !== '' && isAbsolute(xdg)) return join(xdg, 'pushpull', 'state.db')
  return join(homedir, '.local', 'state', 'pushpull', 'state.db')
}

export interface StoreOptions {
  /** The database file. Its directory is created (mode 0700) when missing. */
  path: string
  /** `NORMAL` (default): crash-safe, power loss may drop the last commits. `FULL`: fsync every commit. */
  synchronous?: 'NORMAL' | 'FULL'
  /**
   * Cap the database size in pages (4 KiB each): a disk quota, and how tests simulate a full disk.
   * Applied after the schema migrations; a new file's schema takes 12 pages.
   */
  maxPageCount?: number
  /**
   * WAL pages (4 KiB each) after which a commit checkpoints the WAL into the database file.
   * Default 10000 (about 40 MiB): a checkpoint fsyncs, and a larger WAL folds the several writes
   * each SET's row gets (queued, in flight, acked) into one copy. SQLite's own default is 1000.
   */
  walAutocheckpointPages?: number
}

export const DEFAULT_WAL_AUTOCHECKPOINT_PAGES = 10_000

/** Ordered migrations: entry i moves the schema from user_version i to i + 1. */
const MIGRATIONS: readonly string[] = [
  `
  CREATE TABLE outbox (
    seq INTEGER PRIMARY KEY,
    peer TEXT NOT NULL,
    jti TEXT NOT NULL,
    token TEXT NOT NULL,
    event TEXT,
    subject TEXT,
    state TEXT NOT NULL,
    attempts INTEGER NOT NULL,
    next_at INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    err TEXT,
    description TEXT,
    UNIQUE (peer, jti)
  );
  CREATE INDEX outbox_due ON outbox (peer, next_at, seq) WHERE state IN ('pending', 'in_flight');
  CREATE INDEX outbox_done ON outbox (updated_at) WHERE state IN ('acked', 'rejected', 'abandoned');
  CREATE TABLE inbox (
    seq INTEGER PRIMARY KEY,
    peer TEXT NOT NULL,
    jti TEXT NOT NULL,
    iss TEXT NOT NULL,
    hash TEXT NOT NULL,
    token TEXT,
    event TEXT,
    subject TEXT,
    verdict TEXT NOT NULL,
    err TEXT,
    description TEXT,
    owed INTEGER NOT NULL,
    received_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    UNIQUE (peer, jti, iss)
  );
  CREATE INDEX inbox_owed ON inbox (peer, updated_at, seq) WHERE owed = 1;
  CREATE INDEX inbox_done ON inbox (updated_at) WHERE owed = 0;
  `,
  // 2: the streams `listen --ssf` manages (src/lib/ssf/sqlite-store.ts). `record` is the whole
  // stored stream as JSON; `seq` keeps creation order.
  `
  CREATE TABLE ssf_stream (
    seq INTEGER PRIMARY KEY,
    stream_id TEXT NOT NULL UNIQUE,
    status TEXT NOT NULL,
    record TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
  );
  `,
  // 3: inbox rows stored but not yet handed off (printed and flushed), replayed at start-up.
  // Rows from before this version count as handed off.
  `
  ALTER TABLE inbox ADD COLUMN handed_off INTEGER NOT NULL DEFAULT 1;
  CREATE INDEX inbox_unhanded ON inbox (seq) WHERE handed_off = 0;
  `,
  // 4: tokens in tables of their own, keyed by the row's seq, written once. A ledger row changes
  // state several times (queued, in flight, acked; received, delivered); without the token (most
  // of its bytes) it is small, so a batch's changes dirty (and commit) a few pages, not dozens.
  // The two indexes only `prune` read are gone: every settled SET paid for them; prune scans.
  `
  CREATE TABLE outbox_token (seq INTEGER PRIMARY KEY, token TEXT NOT NULL);
  INSERT INTO outbox_token (seq, token) SELECT seq, token FROM outbox;
  ALTER TABLE outbox DROP COLUMN token;
  CREATE TABLE inbox_token (seq INTEGER PRIMARY KEY, token TEXT NOT NULL);
  INSERT INTO inbox_token (seq, token) SELECT seq, token FROM inbox WHERE token IS NOT NULL;
  ALTER TABLE inbox DROP COLUMN token;
  CREATE TRIGGER outbox_token_gone AFTER DELETE ON outbox BEGIN DELETE FROM outbox_token WHERE seq = old.seq; END;
  CREATE TRIGGER inbox_token_gone AFTER DELETE ON inbox BEGIN DELETE FROM inbox_token WHERE seq = old.seq; END;
  DROP INDEX IF EXISTS outbox_done;
  DROP INDEX IF EXISTS inbox_done;
  `,
  // 5: one index for the rows still to send, laid out so that a batch's changes touch few pages.
  // Pending rows by (next_at, seq), exactly the order they are sent in. In-flight rows by
  // (next_at >> 10, seq): a resend deadline has random jitter, so ordering them by next_at put
  // the 100 SETs of one batch on as many index pages; in 1024 ms buckets they sit by seq, next to
  // each other. next_at comes last so the due check reads the index only.
  `
  DROP INDEX IF EXISTS outbox_due;
  CREATE INDEX outbox_active ON outbox (peer, state, iif(state = 'pending', next_at, next_at >> 10), seq, next_at)
    WHERE state IN ('pending', 'in_flight');
  `,
]

export const SCHEMA_VERSION = MIGRATIONS.length

/** Paths open in this process: SQLite's own locks do not always stop a second open here. */
const openInProcess = new Set<string>()

/** Outbox rows with their tokens: `SELECT ${OUTBOX_COLUMNS} FROM ${OUTBOX_FROM}` (the row is `o`). */
const OUTBOX_COLUMNS = `o.peer, o.jti, t.token, o.event, o.subject, o.state, o.attempts, o.next_at AS nextAt, o.created_at AS createdAt,
  o.updated_at AS updatedAt, o.err, o.description`
const OUTBOX_FROM = 'outbox AS o LEFT JOIN outbox_token AS t ON t.seq = o.seq'
/** The due reads return arrays (half the cost of row objects on the hottest read): see `dueRow`. */
const DUE_COLUMNS = 'o.seq, o.jti, t.token, o.event, o.subject, o.state, o.attempts, o.next_at, o.created_at, o.updated_at, o.err, o.description'
type DueRaw = [number, string, string, string | null, string | null, OutboxState, number, number, number, number, string | null, string | null]
/** Inbox rows with their tokens: `SELECT ${INBOX_COLUMNS} FROM ${INBOX_FROM}` (the row is `i`). */
const INBOX_COLUMNS = `i.peer, i.iss, i.jti, i.hash, t.token, i.event, i.subject, i.verdict, i.err, i.description, i.owed,
  i.handed_off AS handedOff, i.received_at AS receivedAt, i.updated_at AS updatedAt`
const INBOX_FROM = 'inbox AS i LEFT JOIN inbox_token AS t ON t.seq = i.seq'
/**
 * Pending or in-flight rows of `@peer` (the `outbox_active` index: the state terms are spelled so
 * that the partial index applies, and ACTIVE_KEY exactly as in the index).
 */
const ACTIVE = `peer = @peer AND state IN ('pending', 'in_flight')`
const ACTIVE_KEY = `iif(state = 'pending', next_at, next_at >> 10)`
const ACTIVE_KEY_O = `iif(o.state = 'pending', o.next_at, o.next_at >> 10)`
/** A JSON array parameter (`@jtis`) as rows, read once (so the planner drives the lookups from it). */
const JTI_LIST = 'WITH list AS MATERIALIZED (SELECT value AS jti FROM json_each(@jtis))'

interface RawOutbox {
  peer: string
  jti: string
  token: string
  event: string | null
  subject: string | null
  state: OutboxState
  attempts: number
  nextAt: number
  createdAt: number
  updatedAt: number
  err: string | null
  description: string | null
}

interface RawInbox {
  peer: string
  iss: string
  jti: string
  hash: string
  token: string | null
  event: string | null
  subject: string | null
  verdict: Verdict
  err: string | null
  description: string | null
  owed: number
  handedOff: number
  receivedAt: number
  updatedAt: number
}

type Statement = Database.Statement

export class SqliteLedgerStorage implements LedgerStorage {
  readonly path: string
  private db: Database.Database | undefined
  private readonly statements: Record<string, Statement>
  /** jti -> seq of the rows `dueOutbox` returned in the current transaction (cleared at its end). */
  private readonly dueSeq: {peer: string; seqs: Map<string, number>} = {peer: '', seqs: new Map()}

  /** Use `openStore`. */
  constructor(path: string, db: Database.Database) {
    this.path = path
    this.db = db
    const prepare = (sql: string): Statement => db.prepare(sql)
    this.statements = {
      begin: prepare('BEGIN IMMEDIATE'),
      commit: prepare('COMMIT'),
      rollback: prepare('ROLLBACK'),
      insertOutbox: prepare(`INSERT INTO outbox (peer, jti, event, subject, state, attempts, next_at, created_at, updated_at, err, description)
        VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (peer, jti) DO NOTHING`),
      insertOutboxToken: prepare('INSERT INTO outbox_token (seq, token) VALUES (?, ?)'),
      getOutbox: prepare(`SELECT ${OUTBOX_COLUMNS} FROM ${OUTBOX_FROM} WHERE o.peer = ? AND o.jti = ?`),
      updateOutbox: prepare(`UPDATE outbox SET state = ?, attempts = ?, next_at = ?, updated_at = ?, err = coalesce(?, err),
        description = coalesce(?, description) WHERE peer = ? AND jti = ?`),
      // One row dueOutbox just read in this transaction, by seq (so it is that peer's row with that
      // jti): the lean form for a change without err/description (every takeDue change).
      updateOutboxBySeq: prepare(`UPDATE outbox SET state = ?, attempts = ?, next_at = ?, updated_at = ? WHERE seq = ?`),
      // [jti, state, attempts, nextAt, updatedAt, err, description] per element of @changes.
      updateOutboxMany: prepare(`WITH c AS MATERIALIZED (SELECT value ->> 0 AS jti, value ->> 1 AS state, value ->> 2 AS attempts,
          value ->> 3 AS nextAt, value ->> 4 AS updatedAt, value ->> 5 AS err, value ->> 6 AS description FROM json_each(@changes))
        UPDATE outbox SET state = c.state, attempts = c.attempts, next_at = c.nextAt, updated_at = c.updatedAt,
          err = coalesce(c.err, outbox.err), description = coalesce(c.description, outbox.description)
        FROM c WHERE outbox.peer = @peer AND outbox.jti = c.jti`),
      settleOutbox: prepare(`UPDATE outbox SET state = ?, updated_at = ?, err = coalesce(?, err), description = coalesce(?, description)
        WHERE peer = ? AND jti = ? AND state NOT IN ('acked', 'rejected')`),
      settleOutboxMany: prepare(`${JTI_LIST}
        UPDATE outbox SET state = @state, updated_at = @updatedAt, err = coalesce(@err, err), description = coalesce(@description, description)
        WHERE peer = @peer AND jti IN (SELECT jti FROM list) AND state NOT IN ('acked', 'rejected') RETURNING jti`).pluck(),
      // Due rows come from two reads of outbox_active: pending rows in index order (they are
      // sent in that order), and in-flight rows of the deadline buckets up to now's whose
      // deadline passed (few: an ack normally comes first). `dueOutbox` merges them.
      duePending: prepare(`SELECT ${DUE_COLUMNS} FROM ${OUTBOX_FROM} WHERE o.peer = @peer AND o.state IN ('pending', 'in_flight') AND o.state = 'pending'
        AND ${ACTIVE_KEY_O} <= @now ORDER BY ${ACTIVE_KEY_O}, o.seq LIMIT @limit`).raw(true),
      dueInFlight: prepare(`SELECT ${DUE_COLUMNS} FROM ${OUTBOX_FROM} WHERE o.peer = @peer AND o.state IN ('pending', 'in_flight') AND o.state = 'in_flight'
        AND ${ACTIVE_KEY_O} <= (@now >> 10) AND o.next_at <= @now ORDER BY o.next_at, o.seq LIMIT @limit`).raw(true),
      // The first pending row in index order; the earliest in-flight row of the first bucket.
      nextDueAt: prepare(`SELECT min(t) AS t FROM (
          SELECT * FROM (SELECT next_at AS t FROM outbox WHERE ${ACTIVE} AND state = 'pending' ORDER BY ${ACTIVE_KEY}, seq LIMIT 1)
          UNION ALL
          SELECT min(next_at) AS t FROM outbox WHERE ${ACTIVE} AND state = 'in_flight' AND ${ACTIVE_KEY} =
            (SELECT ${ACTIVE_KEY} FROM outbox WHERE ${ACTIVE} AND state = 'in_flight' ORDER BY ${ACTIVE_KEY} LIMIT 1))`),
      requeuePeer: prepare(`UPDATE outbox SET state = 'pending', next_at = ?, updated_at = ?
        WHERE peer = ? AND state IN ('pending', 'in_flight') AND state = 'in_flight'`),
      requeueAll: prepare(`UPDATE outbox SET state = 'pending', next_at = ?, updated_at = ?
        WHERE state IN ('pending', 'in_flight') AND state = 'in_flight'`),
      insertInbox: prepare(`INSERT INTO inbox (peer, jti, iss, hash, event, subject, verdict, err, description, owed, handed_off, received_at, updated_at)
        VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (peer, jti, iss) DO NOTHING`),
      insertInboxToken: prepare('INSERT INTO inbox_token (seq, token) VALUES (?, ?)'),
      getInbox: prepare(`SELECT ${INBOX_COLUMNS} FROM ${INBOX_FROM} WHERE i.peer = ? AND i.jti = ? AND i.iss = ?`),
      findInbox: prepare(`SELECT ${INBOX_COLUMNS} FROM ${INBOX_FROM} WHERE i.peer = ? AND i.jti = ? ORDER BY i.seq`),
      updateInbox: prepare(`UPDATE inbox SET verdict = ?, err = ?, description = ?, owed = ?, handed_off = max(handed_off, ?), updated_at = ?
        WHERE peer = ? AND jti = ? AND iss = ?`),
      owedInbox: prepare(`SELECT jti, verdict, err, description FROM inbox WHERE peer = ? AND owed = 1 AND verdict <> 'undecided'
        ORDER BY updated_at, seq LIMIT ?`).raw(true),
      clearOwed: prepare(`UPDATE inbox SET owed = 0, handed_off = 1, updated_at = ? WHERE peer = ? AND jti = ? AND owed = 1 AND verdict <> 'undecided'`),
      clearOwedMany: prepare(`${JTI_LIST}
        UPDATE inbox SET owed = 0, handed_off = 1, updated_at = @updatedAt
        WHERE peer = @peer AND jti IN (SELECT jti FROM list) AND owed = 1 AND verdict <> 'undecided'`),
      unhandedOff: prepare(`SELECT i.peer, i.iss, i.jti, t.token, i.verdict FROM inbox AS i JOIN inbox_token AS t ON t.seq = i.seq
        WHERE i.handed_off = 0 ORDER BY i.seq LIMIT ?`),
      markHandedOff: prepare(`UPDATE inbox SET handed_off = 1 WHERE peer = ? AND jti = ? AND handed_off = 0`),
      markHandedOffMany: prepare(`${JTI_LIST}
        UPDATE inbox SET handed_off = 1 WHERE peer = @peer AND jti IN (SELECT jti FROM list) AND handed_off = 0`),
      countOutAll: prepare(`SELECT peer, state, count(*) AS n FROM outbox GROUP BY peer, state`),
      countOutPeer: prepare(`SELECT peer, state, count(*) AS n FROM outbox WHERE peer = ? GROUP BY peer, state`),
      countInAll: prepare(`SELECT peer, verdict AS state, count(*) AS n, sum(owed) AS owed FROM inbox GROUP BY peer, verdict`),
      countInPeer: prepare(`SELECT peer, verdict AS state, count(*) AS n, sum(owed) AS owed FROM inbox WHERE peer = ? GROUP BY peer, verdict`),
      pruneOutbox: prepare(`DELETE FROM outbox WHERE state IN ('acked', 'rejected', 'abandoned') AND updated_at < ?`),
      pruneInbox: prepare(`DELETE FROM inbox WHERE owed = 0 AND verdict <> 'undecided' AND updated_at < ?`),
    }
  }

  transaction<T>(fn: () => T): T {
    const db = this.open()
    if (db.inTransaction) return fn()
    try {
      this.statements.begin!.run()
      const result = fn()
      this.statements.commit!.run()
      return result
    } catch (error) {
      if (db.inTransaction) {
        try {
          this.statements.rollback!.run()
        } catch {
          // The transaction may already be gone (SQLite rolls back itself on some I/O errors).
        }
      }

      throw mapSqliteError(error, this.path)
    } finally {
      this.dueSeq.seqs.clear()
    }
  }

  insertOutbox(row: OutboxRow): boolean {
    const info = this.statements.insertOutbox!.run(
      row.peer, row.jti, row.event ?? null, row.subject ?? null, row.state, row.attempts,
      row.nextAt, row.createdAt, row.updatedAt, row.err ?? null, row.description ?? null,
    )
    if (info.changes !== 1) return false
    this.statements.insertOutboxToken!.run(info.lastInsertRowid, row.token)
    return true
  }

  getOutbox(peer: string, jti: string): OutboxRow | undefined {
    const raw = this.statements.getOutbox!.get(peer, jti) as RawOutbox | undefined
    return raw === undefined ? undefined : outboxRow(raw)
  }

  updateOutbox(peer: string, jti: string, change: OutboxChange): void {
    this.statements.updateOutbox!.run(change.state, change.attempts, change.nextAt, change.updatedAt, change.err ?? null, change.description ?? null, peer, jti)
  }

  updateOutboxMany(peer: string, changes: readonly OutboxRowChange[]): void {
    if (changes.length === 0) return
    // Rows dueOutbox just read are updated by seq, one prepared statement each (measured faster
    // than one json_each statement for the batch); any other row through the (peer, jti) index.
    const seqs = this.dueSeq.peer === peer ? this.dueSeq.seqs : undefined
    const bySeq = this.statements.updateOutboxBySeq!
    const rest: OutboxRowChange[] = []
    for (const c of changes) {
      const seq = c.err === undefined && c.description === undefined ? seqs?.get(c.jti) : undefined
      if (seq === undefined) rest.push(c)
      else bySeq.run(c.state, c.attempts, c.nextAt, c.updatedAt, seq)
    }

    if (rest.length === 0) return

    const rows = rest.map((c) => [c.jti, c.state, c.attempts, c.nextAt, c.updatedAt, c.err ?? null, c.description ?? null])
    this.statements.updateOutboxMany!.run({changes: JSON.stringify(rows), peer})
  }

  settleOutboxMany(peer: string, jtis: readonly string[], change: SettleChange): Set<string> {
    if (jtis.length === 0) return new Set()
    const settled = this.statements.settleOutboxMany!.all({
      description: change.description ?? null,
      err: change.err ?? null,
      jtis: JSON.stringify(jtis),
      peer,
      state: change.state,
      updatedAt: change.updatedAt,
    }) as string[]
    return new Set(settled)
  }

  settleOutbox(peer: string, jti: string, change: SettleChange): boolean {
    return this.statements.settleOutbox!.run(change.state, change.updatedAt, change.err ?? null, change.description ?? null, peer, jti).changes === 1
  }

  dueOutbox(peer: string, now: number, limit: number): OutboxRow[] {
    const pending = this.statements.duePending!.all({limit, now, peer}) as DueRaw[]
    const inFlight = this.statements.dueInFlight!.all({limit, now, peer}) as DueRaw[]
    let rows = pending
    if (inFlight.length > 0) {
      // By (nextAt, seq), as one read in the old single index gave them.
      rows = [...pending, ...inFlight].sort((a, b) => a[7] - b[7] || a[0] - b[0]).slice(0, limit)
    }

    // Remember where these rows are until the transaction ends: the ledger updates them next.
    if (this.db?.inTransaction === true) {
      this.dueSeq.peer = peer
      for (const raw of rows) this.dueSeq.seqs.set(raw[1], raw[0])
    }

    return rows.map((raw) => dueRow(peer, raw))
  }

  nextDueAt(peer: string): number | undefined {
    const row = this.statements.nextDueAt!.get({peer}) as {t: number | null} | undefined
    return row?.t ?? undefined
  }

  requeueInFlight(peer: string | undefined, nextAt: number, updatedAt: number): number {
    const info = peer === undefined ? this.statements.requeueAll!.run(nextAt, updatedAt) : this.statements.requeuePeer!.run(nextAt, updatedAt, peer)
    return info.changes
  }

  insertInbox(row: InboxRow): boolean {
    const info = this.statements.insertInbox!.run(
      row.peer, row.jti, row.iss, row.hash, row.event ?? null, row.subject ?? null, row.verdict,
      row.err ?? null, row.description ?? null, row.owed ? 1 : 0, row.handedOff === false ? 0 : 1, row.receivedAt, row.updatedAt,
    )
    if (info.changes !== 1) return false
    if (row.token !== undefined) this.statements.insertInboxToken!.run(info.lastInsertRowid, row.token)
    return true
  }

  getInbox(peer: string, iss: string, jti: string): InboxRow | undefined {
    const raw = this.statements.getInbox!.get(peer, jti, iss) as RawInbox | undefined
    return raw === undefined ? undefined : inboxRow(raw)
  }

  findInbox(peer: string, jti: string): InboxRow[] {
    return (this.statements.findInbox!.all(peer, jti) as RawInbox[]).map((raw) => inboxRow(raw))
  }

  updateInbox(peer: string, iss: string, jti: string, change: InboxChange): void {
    this.statements.updateInbox!.run(change.verdict, change.err ?? null, change.description ?? null, change.owed ? 1 : 0, change.handedOff ? 1 : 0, change.updatedAt, peer, jti, iss)
  }

  unhandedOffInbox(limit: number): UnhandedOffRow[] {
    return this.statements.unhandedOff!.all(limit) as UnhandedOffRow[]
  }

  markHandedOff(peer: string, jti: string): number {
    return this.statements.markHandedOff!.run(peer, jti).changes
  }

  owedInbox(peer: string, limit: number): OwedRow[] {
    return (this.statements.owedInbox!.all(peer, limit) as Array<[string, Verdict, string | null, string | null]>).map(([jti, verdict, err, description]) => ({
      jti,
      verdict,
      err: err ?? undefined,
      description: description ?? undefined,
    }))
  }

  clearOwed(peer: string, jti: string, updatedAt: number): number {
    return this.statements.clearOwed!.run(updatedAt, peer, jti).changes
  }

  clearOwedMany(peer: string, jtis: readonly string[], updatedAt: number): number {
    if (jtis.length === 0) return 0
    return this.statements.clearOwedMany!.run({jtis: JSON.stringify(jtis), peer, updatedAt}).changes
  }

  markHandedOffMany(peer: string, jtis: readonly string[]): number {
    if (jtis.length === 0) return 0
    return this.statements.markHandedOffMany!.run({jtis: JSON.stringify(jtis), peer}).changes
  }

  counts(peer?: string): CountRow[] {
    const out = (peer === undefined ? this.statements.countOutAll!.all() : this.statements.countOutPeer!.all(peer)) as Array<{peer: string; state: string; n: number}>
    const inbox = (peer === undefined ? this.statements.countInAll!.all() : this.statements.countInPeer!.all(peer)) as Array<{
      peer: string
      state: string
      n: number
      owed: number
    }>
    const rows: CountRow[] = out.map((r) => ({peer: r.peer, direction: 'out', state: r.state, count: r.n}))
    for (const r of inbox) {
      rows.push({peer: r.peer, direction: 'in', state: r.state, count: r.n})
      if (r.owed > 0) rows.push({peer: r.peer, direction: 'in', state: 'owed', count: r.owed})
    }

    return rows
  }

  listOutbox(query: ListQuery): OutboxRow[] {
    const {where, params} = listFilter(query, 'o', 'state')
    const sql = `SELECT ${OUTBOX_COLUMNS} FROM ${OUTBOX_FROM} ${where} ORDER BY o.seq DESC LIMIT ? OFFSET ?`
    return (this.open().prepare(sql).all(...params, query.limit, query.offset ?? 0) as RawOutbox[]).map((raw) => outboxRow(raw))
  }

  listInbox(query: ListQuery): InboxRow[] {
    const {where, params} = listFilter(query, 'i', 'verdict')
    const sql = `SELECT ${INBOX_COLUMNS} FROM ${INBOX_FROM} ${where} ORDER BY i.received_at DESC, i.seq DESC LIMIT ? OFFSET ?`
    return (this.open().prepare(sql).all(...params, query.limit, query.offset ?? 0) as RawInbox[]).map((raw) => inboxRow(raw))
  }

  prune(before: number): {outbox: number; inbox: number} {
    return {outbox: this.statements.pruneOutbox!.run(before).changes, inbox: this.statements.pruneInbox!.run(before).changes}
  }

  /**
   * The open database, for stores that share this file and its single-writer lock (the SSF
   * stream store). Throws ERR_INTERNAL once closed.
   */
  get database(): Database.Database {
    return this.open()
  }

  /** Checkpoint the WAL into the database file and close. Safe to call twice. */
  close(): void {
    const db = this.db
    if (db === undefined) return
    this.db = undefined
    try {
      if (db.inTransaction) db.exec('ROLLBACK')
      db.pragma('wal_checkpoint(TRUNCATE)')
    } catch {
      // Closing still releases the lock; an uncheckpointed WAL is replayed at the next open.
    } finally {
      db.close()
      openInProcess.delete(this.path)
      rmSync(pidFileOf(this.path), {force: true})
    }
  }

  private open(): Database.Database {
    if (this.db === undefined) throw new PushpullError('ERR_INTERNAL', `state database ${this.path} is closed`)
    return this.db
  }
}

/**
 * Open (creating or migrating) the state database at `options.path` and hold it for this process.
 * Throws ERR_STATE_LOCKED, ERR_STATE_CORRUPT or ERR_STATE_IO, each naming the file.
 */
export function openStore(options: StoreOptions): SqliteLedgerStorage {
  const path = resolve(options.path)
  try {
    mkdirSync(dirname(path), {recursive: true, mode: 0o700})
  } catch (error) {
    throw new PushpullError('ERR_STATE_IO', `cannot create the state directory ${dirname(path)}: ${reasonOf(error)}`, {cause: error, details: {path}})
  }

  if (openInProcess.has(path)) throw lockedError(path, undefined, process.pid)
  const existed = existsSync(path)
  let db: Database.Database
  try {
    db = new Database(path, {timeout: 0})
  } catch (error) {
    if (existed) throw corruptError(path, error, 'it cannot be opened')
    throw new PushpullError('ERR_STATE_IO', `cannot create the state database ${path}: ${reasonOf(error)}`, {cause: error, details: {path}})
  }

  try {
    db.pragma('locking_mode = EXCLUSIVE')
    const mode = db.pragma('journal_mode = WAL', {simple: true}) as string
    if (mode.toLowerCase() !== 'wal') throw new PushpullError('ERR_STATE_IO', `state database ${path} could not switch to WAL mode (got ${mode})`, {details: {path}})
    db.pragma(`synchronous = ${options.synchronous === 'FULL' ? 'FULL' : 'NORMAL'}`)
    db.pragma(`wal_autocheckpoint = ${Math.max(0, Math.floor(options.walAutocheckpointPages ?? DEFAULT_WAL_AUTOCHECKPOINT_PAGES))}`)
    // After a checkpoint, shrink the WAL file back (it is reused, so this costs little).
    db.pragma('journal_size_limit = 67108864')
    const from = migrate(db, path)
    // A new file went through every migration, some of which drop what earlier ones made: give
    // the freed pages back (instant on an empty file) so the schema takes its minimum of pages.
    if (from === 0) db.exec('VACUUM')
    // The page cap applies to what is stored, not to the schema changes of the migrations.
    if (options.maxPageCount !== undefined) db.pragma(`max_page_count = ${Math.max(1, Math.floor(options.maxPageCount))}`)
  } catch (error) {
    db.close()
    throw mapSqliteError(error, path)
  }

  openInProcess.add(path)
  try {
    writeFileSync(pidFileOf(path), `${process.pid}\n`, {mode: 0o600})
  } catch {
    // Only used to name the holder in ERR_STATE_LOCKED messages.
  }

  return new SqliteLedgerStorage(path, db)
}

/** A ledger on the SQLite store at `options.path` (`ledger.close()` closes the store). */
export function openLedger(options: StoreOptions & Omit<LedgerOptions, 'storage'>): Ledger {
  const {path, synchronous, maxPageCount, walAutocheckpointPages, ...ledgerOptions} = options
  const storage = openStore({path, synchronous, maxPageCount, walAutocheckpointPages})
  try {
    return new Ledger({...ledgerOptions, storage})
  } catch (error) {
    storage.close()
    throw error
  }
}

/** Bring the schema to SCHEMA_VERSION in one transaction; returns the version the file had. */
function migrate(db: Database.Database, path: string): number {
  // BEGIN IMMEDIATE takes the write lock now (busy timeout 0): this is where a second process fails.
  db.exec('BEGIN IMMEDIATE')
  try {
    const version = db.pragma('user_version', {simple: true}) as number
    if (version === 0) {
      const foreign = db.prepare(`SELECT count(*) AS n FROM sqlite_master WHERE name NOT LIKE 'sqlite_%'`).get() as {n: number}
      if (foreign.n > 0) throw corruptError(path, undefined, 'it is an SQLite database but not a pushpull state file')
    } else if (version > MIGRATIONS.length) {
      throw corruptError(path, undefined, `its schema version ${version} is newer than this pushpull understands (${MIGRATIONS.length})`)
    }

    for (let v = version; v < MIGRATIONS.length; v++) db.exec(MIGRATIONS[v]!)
    if (version !== MIGRATIONS.length) db.pragma(`user_version = ${MIGRATIONS.length}`)
    db.exec('COMMIT')
    return version
  } catch (error) {
    if (db.inTransaction) db.exec('ROLLBACK')
    throw error
  }
}

function listFilter(query: ListQuery, table: 'o' | 'i', stateColumn: 'state' | 'verdict'): {where: string; params: unknown[]} {
  const clauses: string[] = []
  const params: unknown[] = []
  if (query.peer !== undefined) {
    clauses.push(`${table}.peer = ?`)
    params.push(query.peer)
  }

  if (query.states !== undefined) {
    clauses.push(query.states.length === 0 ? '0' : `${table}.${stateColumn} IN (${query.states.map(() => '?').join(', ')})`)
    params.push(...query.states)
  }

  if (query.owed !== undefined && stateColumn === 'verdict') {
    clauses.push(`${table}.owed = ?`)
    params.push(query.owed ? 1 : 0)
  }

  return {where: clauses.length === 0 ? '' : `WHERE ${clauses.join(' AND ')}`, params}
}

function dueRow(peer: string, raw: DueRaw): OutboxRow {
  const [, jti, token, event, subject, state, attempts, nextAt, createdAt, updatedAt, err, description] = raw
  return {
    peer,
    jti,
    token: token ?? '',
    event: event ?? undefined,
    subject: subject ?? undefined,
    state,
    attempts,
    nextAt,
    createdAt,
    updatedAt,
    err: err ?? undefined,
    description: description ?? undefined,
  }
}

function outboxRow(raw: RawOutbox): OutboxRow {
  return {
    peer: raw.peer,
    jti: raw.jti,
    token: raw.token,
    event: raw.event ?? undefined,
    subject: raw.subject ?? undefined,
    state: raw.state,
    attempts: raw.attempts,
    nextAt: raw.nextAt,
    createdAt: raw.createdAt,
    updatedAt: raw.updatedAt,
    err: raw.err ?? undefined,
    description: raw.description ?? undefined,
  }
}

function inboxRow(raw: RawInbox): InboxRow {
  return {
    peer: raw.peer,
    iss: raw.iss,
    jti: raw.jti,
    hash: raw.hash,
    token: raw.token ?? undefined,
    event: raw.event ?? undefined,
    subject: raw.subject ?? undefined,
    verdict: raw.verdict,
    err: raw.err ?? undefined,
    description: raw.description ?? undefined,
    owed: raw.owed === 1,
    handedOff: raw.handedOff === 1,
    receivedAt: raw.receivedAt,
    updatedAt: raw.updatedAt,
  }
}

function pidFileOf(path: string): string {
  return `${path}.pid`
}

function readHolderPid(path: string): number | undefined {
  try {
    const pid = Number.parseInt(readFileSync(pidFileOf(path), 'utf8').trim(), 10)
    return Number.isSafeInteger(pid) && pid > 0 ? pid : undefined
  } catch {
    return undefined
  }
}

function lockedError(path: string, cause: unknown, pid = readHolderPid(path)): PushpullError {
  const holder = pid === undefined ? '' : ` (pid ${pid})`
  const who = pid === process.pid ? 'is already open in this process' : `is in use by another pushpull process${holder}`
  return new PushpullError('ERR_STATE_LOCKED', `state database ${path} ${who}; stop it or use --state to choose another file`, {
    cause,
    details: {path, ...(pid === undefined ? {} : {pid})},
  })
}

function corruptError(path: string, cause: unknown, why: string): PushpullError {
  return new PushpullError(
    'ERR_STATE_CORRUPT',
    `state database ${path} is unusable: ${why}. Move it away or delete it (pending acks and unacked SETs in it are lost), or use --state to choose another file`,
    {cause, details: {path}},
  )
}

function sqliteCodeOf(error: unknown): string | undefined {
  if (error instanceof Database.SqliteError) return error.code
  return undefined
}

function reasonOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error)
}

/** SQLite and file-system failures as PushpullError; PushpullErrors pass through. */
export function mapSqliteError(error: unknown, path: string): PushpullError {
  if (error instanceof PushpullError) return error
  const code = sqliteCodeOf(error)
  if (code === undefined) return new PushpullError('ERR_INTERNAL', `state database ${path}: ${reasonOf(error)}`, {cause: error, details: {path}})
  if (code.startsWith('SQLITE_BUSY') || code.startsWith('SQLITE_LOCKED')) return lockedError(path, error)
  if (code === 'SQLITE_NOTADB' || code.startsWith('SQLITE_CORRUPT')) return corruptError(path, error, `it is corrupt or not an SQLite database (${reasonOf(error)})`)
  if (code === 'SQLITE_FULL' || code.startsWith('SQLITE_READONLY') || code.startsWith('SQLITE_IOERR') || code.startsWith('SQLITE_CANTOPEN') || code === 'SQLITE_PERM') {
    return new PushpullError('ERR_STATE_IO', `could not write the state database ${path}: ${reasonOf(error)} (${code}); nothing of this batch was stored`, {
      cause: error,
      details: {path, sqliteCode: code},
    })
  }

  return new PushpullError('ERR_INTERNAL', `state database ${path}: ${reasonOf(error)} (${code})`, {cause: error, details: {path, sqliteCode: code}})
}
