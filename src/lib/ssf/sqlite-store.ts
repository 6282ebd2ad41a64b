/**
 * SSF streams in the state database (table `ssf_stream`, migration 2 in src/lib/store.ts), so the
 * streams `listen --ssf` manages survive a restart. It shares the ledger's database file, its
 * connection and its single-writer lock: open the ledger store with `openStore` and pass it here.
 *
 * Each call is one statement (autocommit; better-sqlite3 is synchronous, so it never interleaves
 * with a ledger transaction). Records are the whole `StoredStream` as JSON, parsed back with the
 * bounded parser so no stored key can reach a prototype; a record that does not parse is
 * ERR_STATE_CORRUPT naming the stream. Write failures are ERR_STATE_IO, as for the ledger.
 */
import type Database from 'better-sqlite3'

import {PushpullError} from '../errors.js'
import {isJsonObject, ownMember, parseJsonBounded} from '../json.js'
import {mapSqliteError, type SqliteLedgerStorage} from '../store.js'
import {sanitizeText} from '../text.js'
import type {SsfStreamStore, StoredStream} from './store.js'

/** Largest stored record read back, in bytes (a stream with many subjects stays far below). */
export const DEFAULT_SSF_RECORD_MAX_BYTES = 16 * 1024 * 1024

export interface SqliteSsfStreamStoreOptions {
  /** Largest stored record read back, in bytes. Default 16 MiB. */
  maxRecordBytes?: number
  /** Clock for `updated_at`, in ms. Default Date.now. */
  now?: () => number
}

interface RawStream {
  streamId: string
  record: string
}

export class SqliteSsfStreamStore implements SsfStreamStore {
  private readonly path: string
  private readonly maxRecordBytes: number
  private readonly now: () => number
  private readonly statements: {
    list: Database.Statement
    get: Database.Statement
    put: Database.Statement
    delete: Database.Statement
  }

  /** `storage` is the open state database (from `openStore`); closing it ends this store too. */
  constructor(storage: SqliteLedgerStorage, options: SqliteSsfStreamStoreOptions = {}) {
    this.path = storage.path
    this.maxRecordBytes = options.maxRecordBytes ?? DEFAULT_SSF_RECORD_MAX_BYTES
    this.now = options.now ?? Date.now
    const db = storage.database
    try {
      this.statements = {
        delete: db.prepare('DELETE FROM ssf_stream WHERE stream_id = ?'),
        get: db.prepare('SELECT stream_id AS streamId, record FROM ssf_stream WHERE stream_id = ?'),
        list: db.prepare('SELECT stream_id AS streamId, record FROM ssf_stream ORDER BY seq'),
        put: db.prepare(`INSERT INTO ssf_stream (stream_id, status, record, created_at, updated_at) VALUES (?, ?, ?, ?, ?)
          ON CONFLICT (stream_id) DO UPDATE SET status = excluded.status, record = excluded.record, updated_at = excluded.updated_at`),
      }
    } catch (error) {
      throw mapSqliteError(error, this.path)
    }
  }

  list(): StoredStream[] {
    const rows = this.run(() => this.statements.list.all() as RawStream[])
    return rows.map((row) => this.decode(row))
  }

  get(streamId: string): StoredStream | undefined {
    const row = this.run(() => this.statements.get.get(streamId) as RawStream | undefined)
    return row === undefined ? undefined : this.decode(row)
  }

  put(stream: StoredStream): void {
    const record = JSON.stringify(stream)
    this.run(() => this.statements.put.run(stream.config.stream_id, stream.status, record, stream.createdAt, this.now()))
  }

  delete(streamId: string): boolean {
    return this.run(() => this.statements.delete.run(streamId).changes === 1)
  }

  private run<T>(fn: () => T): T {
    try {
      return fn()
    } catch (error) {
      throw mapSqliteError(error, this.path)
    }
  }

  private decode(row: RawStream): StoredStream {
    const corrupt = (why: string, cause?: unknown): PushpullError =>
      new PushpullError(
        'ERR_STATE_CORRUPT',
        `state database ${this.path} is unusable: the SSF stream "${sanitizeText(row.streamId, 80)}" ${why}. Delete the stream (or the file), or use --state to choose another file`,
        {cause, details: {path: this.path}},
      )
    let value: unknown
    try {
      value = parseJsonBounded(row.record, {maxBytes: this.maxRecordBytes, maxDepth: 64})
    } catch (error) {
      throw corrupt('is not readable JSON', error)
    }

    if (!isJsonObject(value)) throw corrupt('is not a JSON object')
    const config = ownMember(value, 'config')
    const status = ownMember(value, 'status')
    if (!isJsonObject(config) || ownMember(config, 'stream_id') !== row.streamId) throw corrupt('has no configuration for its own stream_id')
    if (status !== 'enabled' && status !== 'paused' && status !== 'disabled') throw corrupt('has no valid status')
    if (!Array.isArray(ownMember(value, 'subjects')) || typeof ownMember(value, 'createdAt') !== 'number') throw corrupt('lacks its subjects or creation time')
    return value as unknown as StoredStream
  }
}
