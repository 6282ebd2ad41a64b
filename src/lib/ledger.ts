/**
 * The per-peer session ledger shared by every binding (HTTP bindings now, WebSocket next).
 *
 * Outbox (SETs we send), per peer:  pending -> in_flight -> acked | rejected | abandoned.
 *   `takeDue` marks SETs in flight and gives each a resend deadline of
 *   `now + ackTimeoutMs + backoffDelay(attempt - 1)`; a SET still in flight after its deadline is
 *   due again (resent), until `maxAttempts` sends, after which it is `abandoned`. A jti that is
 *   acked, rejected or abandoned is never queued again (`enqueue` reports `jti-reused`).
 * Inbox (SETs we receive), per peer, deduplicated by (iss, jti): each has a verdict (`accepted`,
 *   `rejected` with err/description, or `undecided` in manual mode) and an `owed` flag: we still
 *   owe the peer its ack/setErr. A duplicate is owed again but reported as `duplicate`, not new;
 *   the same (iss, jti) with a different payload hash is a `conflict` (answer setErr
 *   `invalid_request`; nothing is stored for it, so a redelivery gets the same answer).
 *
 * "Store, then ack" is the natural order: `recordReceived` commits before it returns and `owed`
 * reads committed rows only, so a caller cannot obtain an ack for a SET whose write failed (the
 * write throws ERR_STATE_IO and nothing of the batch is stored). After the acks/setErrs went out,
 * call `markDelivered`.
 *
 * Every public method is one storage transaction, batch-first, synchronous (better-sqlite3 is
 * synchronous). Time (`now`, ms) and randomness (`random`, [0, 1)) are injected.
 */
import {createHash} from 'node:crypto'

import type {SetErr} from './communication.js'
import {PushpullError} from './errors.js'

// ---------------------------------------------------------------------------------------------
// Retry policy

export interface RetryPolicy {
  /** Backoff for the first retry, in ms. Default 1000. */
  initialMs: number
  /** Growth per attempt. Default 2. */
  factor: number
  /** Largest backoff, in ms. Default 60000. */
  capMs: number
  /** How long a sent SET waits for its ack before it is resent, in ms. Default 30000. */
  ackTimeoutMs: number
  /** Sends before a SET is abandoned. Default 10. */
  maxAttempts: number
}

export const DEFAULT_RETRY_POLICY: Readonly<RetryPolicy> = Object.freeze({
  initialMs: 1000,
  factor: 2,
  capMs: 60_000,
  ackTimeoutMs: 30_000,
  maxAttempts: 10,
})

/**
 * Exponential backoff with full jitter: `random() * min(capMs, initialMs * factor ** attempt)`.
 * `attempt` counts from 0 (the first retry).
 */
export function backoffDelay(attempt: number, policy: Pick<RetryPolicy, 'initialMs' | 'factor' | 'capMs'>, random: () => number): number {
  const exponent = Math.max(0, attempt)
  const ceiling = Math.min(policy.capMs, policy.initialMs * policy.factor ** exponent)
  return Math.floor(random() * (Number.isFinite(ceiling) ? ceiling : policy.capMs))
}

function resolvePolicy(partial: Partial<RetryPolicy> | undefined): RetryPolicy {
  const policy = {...DEFAULT_RETRY_POLICY, ...partial}
  const checks: Array<[keyof RetryPolicy, number]> = [
    ['initialMs', 0],
    ['capMs', 0],
    ['ackTimeoutMs', 0],
    ['maxAttempts', 1],
  ]
  for (const [name, min] of checks) {
    if (!Number.isSafeInteger(policy[name]) || policy[name] < min) {
      throw new PushpullError('ERR_CONFIG', `retry ${name} must be an integer >= ${min}, got ${String(policy[name])}`)
    }
  }

  if (!(Number.isFinite(policy.factor) && policy.factor >= 1)) {
    throw new PushpullError('ERR_CONFIG', `retry factor must be a number >= 1, got ${String(policy.factor)}`)
  }

  return policy
}

// ---------------------------------------------------------------------------------------------
// Rows and the storage interface

export const OUTBOX_STATES = ['pending', 'in_flight', 'acked', 'rejected', 'abandoned'] as const
export type OutboxState = (typeof OUTBOX_STATES)[number]
export const VERDICTS = ['accepted', 'rejected', 'undecided'] as const
export type Verdict = (typeof VERDICTS)[number]

export interface OutboxRow {
  peer: string
  jti: string
  token: string
  event?: string | undefined
  subject?: string | undefined
  state: OutboxState
  /** Times sent so far. */
  attempts: number
  /** pending: when it may be sent; in_flight: when it is resent if still unacked. */
  nextAt: number
  createdAt: number
  updatedAt: number
  err?: string | undefined
  description?: string | undefined
}

export interface OutboxChange {
  state: OutboxState
  attempts: number
  nextAt: number
  updatedAt: number
  err?: string | undefined
  description?: string | undefined
}

/** One row's change for `updateOutboxMany`. */
export interface OutboxRowChange extends OutboxChange {
  jti: string
}

export interface InboxRow {
  peer: string
  iss: string
  jti: string
  /** Hash of the SET payload, to tell a redelivery from a conflicting reuse of (iss, jti). */
  hash: string
  token?: string | undefined
  event?: string | undefined
  subject?: string | undefined
  verdict: Verdict
  err?: string | undefined
  description?: string | undefined
  /** We still owe the peer the ack (accepted) or setErr (rejected). */
  owed: boolean
  /**
   * The SET was handed off to its consumer (printed and flushed). False from `recordReceived` for
   * accepted/undecided rows with a stored token until `markDelivered` or `markHandedOff`; absent
   * means true.
   */
  handedOff?: boolean | undefined
  receivedAt: number
  updatedAt: number
}

export interface SettleChange {
  state: 'acked' | 'rejected'
  updatedAt: number
  err?: string | undefined
  description?: string | undefined
}

/** A received SET not yet handed off to its consumer (see `Ledger.unhandedOff`). */
export interface UnhandedOffRow {
  peer: string
  iss: string
  jti: string
  token: string
  verdict: Verdict
}

/** What `owed` needs of an owed inbox row (no token: it is not read back on the hot path). */
export type OwedRow = Pick<InboxRow, 'jti' | 'verdict' | 'err' | 'description'>

export interface InboxChange {
  verdict: Verdict
  err?: string | undefined
  description?: string | undefined
  owed: boolean
  /** Set handed_off to 1 as well (absent: unchanged). */
  handedOff?: true | undefined
  updatedAt: number
}

export interface CountRow {
  peer: string
  direction: 'out' | 'in'
  /** Outbox state, inbox verdict, or `owed` (inbox rows still owed, counted apart). */
  state: string
  count: number
}

export interface ListQuery {
  direction: 'out' | 'in'
  peer?: string | undefined
  /** Outbox states or inbox verdicts to include; all when absent. */
  states?: readonly string[] | undefined
  /** Inbox only: rows still owed (true) or not owed (false). */
  owed?: boolean | undefined
  limit: number
  offset?: number | undefined
}

/**
 * What the ledger needs from storage. Two implementations: `MemoryLedgerStorage`
 * (src/lib/store/memory.ts) and `SqliteLedgerStorage` (src/lib/store.ts).
 * Rows returned are copies: changing them does not change storage.
 */
export interface LedgerStorage {
  /** Run `fn` atomically (nested calls join the outer transaction). */
  transaction<T>(fn: () => T): T
  insertOutbox(row: OutboxRow): boolean
  getOutbox(peer: string, jti: string): OutboxRow | undefined
  updateOutbox(peer: string, jti: string, change: OutboxChange): void
  /**
   * Settle an unsettled row (any state but acked/rejected) as acked or rejected, keeping attempts
   * and nextAt; returns false (and changes nothing) when the row is missing or already settled.
   */
  settleOutbox(peer: string, jti: string, change: SettleChange): boolean
  /** pending or in_flight rows of `peer` with nextAt <= now, earliest first, at most `limit`. */
  dueOutbox(peer: string, now: number, limit: number): OutboxRow[]
  /** Earliest nextAt among pending/in_flight rows of `peer`. */
  nextDueAt(peer: string): number | undefined
  /** Every in_flight row (of `peer`, or of all peers) back to pending at `nextAt`; returns the count. */
  requeueInFlight(peer: string | undefined, nextAt: number, updatedAt: number): number
  insertInbox(row: InboxRow): boolean
  getInbox(peer: string, iss: string, jti: string): InboxRow | undefined
  findInbox(peer: string, jti: string): InboxRow[]
  updateInbox(peer: string, iss: string, jti: string, change: InboxChange): void
  /** Rows of `peer` with owed = true and a decided verdict, oldest first, at most `limit`. */
  owedInbox(peer: string, limit: number): OwedRow[]
  /**
   * owed = false and handed off for every row of (peer, jti) that is owed (one statement: delivery
   * only happens after the hand-off); returns the count.
   */
  clearOwed(peer: string, jti: string, updatedAt: number): number
  /** Rows not handed off, with a token, oldest first (newest last), at most `limit`. */
  unhandedOffInbox(limit: number): UnhandedOffRow[]
  /** Mark every row of (peer, jti) handed off; returns the count changed. */
  markHandedOff(peer: string, jti: string): number
  counts(peer?: string): CountRow[]
  // Batch forms of the per-row calls above (optional: the ledger falls back to the per-row calls).
  // Each is one call per ledger call, so a storage can do a whole batch in one statement.
  /** `updateOutbox` for each change, in order (rows missing are skipped). */
  updateOutboxMany?(peer: string, changes: readonly OutboxRowChange[]): void
  /**
   * `settleOutbox(peer, jti, change)` for each jti (the same change for all); returns the jtis
   * settled by this call (a jti listed twice is settled once).
   */
  settleOutboxMany?(peer: string, jtis: readonly string[], change: SettleChange): Set<string>
  /** `clearOwed` for each jti; returns the total count. */
  clearOwedMany?(peer: string, jtis: readonly string[], updatedAt: number): number
  /** `markHandedOff` for each jti; returns the total count. */
  markHandedOffMany?(peer: string, jtis: readonly string[]): number
  listOutbox(query: ListQuery): OutboxRow[]
  listInbox(query: ListQuery): InboxRow[]
  /** Delete final outbox rows and delivered inbox rows last updated before `before`. */
  prune(before: number): {outbox: number; inbox: number}
  close(): void
}

// ---------------------------------------------------------------------------------------------
// Ledger API types

export interface OutgoingSet {
  jti: string
  token: string
  /** Event short name or URI, for tables. */
  event?: string | undefined
  /** Subject summary, for tables. */
  subject?: string | undefined
}

export type EnqueueStatus = 'queued' | 'exists' | 'jti-reused'

export interface EnqueueResult {
  jti: string
  /** queued: new; exists: the same token is already pending/in flight; jti-reused: refused. */
  status: EnqueueStatus
}

export interface DueSet {
  jti: string
  token: string
  /** 1 for the first send. */
  attempt: number
}

export interface TakeDueResult {
  sets: DueSet[]
  /** jtis that reached maxAttempts while due: now abandoned, not returned for sending. */
  abandoned: string[]
}

export interface ReportResult {
  acked: string[]
  rejected: string[]
  /** Named by the peer but never sent to it (ignored; log at debug level). */
  unknown: string[]
  /** Already acked or rejected before (ignored). */
  stale: string[]
}

export interface FailResult {
  requeued: string[]
  abandoned: string[]
}

export interface IncomingSet {
  iss: string
  jti: string
  /** The compact token; its payload is hashed unless `hash` is given. */
  token?: string | undefined
  hash?: string | undefined
  event?: string | undefined
  subject?: string | undefined
  verdict: Verdict
  /** For `rejected`: the protocol err (default invalid_request) and description. */
  err?: string | undefined
  description?: string | undefined
}

export type ReceiveStatus = 'new' | 'duplicate' | 'conflict'

export interface ReceiveResult {
  iss: string
  jti: string
  status: ReceiveStatus
  /** For `conflict`: the setErr to answer right away (not stored). */
  setErr?: SetErr
}

export interface OwedReport {
  ack: string[]
  setErrs: Map<string, SetErr>
}

export interface Decision {
  jti: string
  /** Restrict to one issuer; every undecided SET with this jti from the peer otherwise. */
  iss?: string | undefined
  verdict: 'accepted' | 'rejected'
  err?: string | undefined
  description?: string | undefined
}

export interface DecideResult {
  jti: string
  status: 'decided' | 'unknown' | 'already-decided'
}

export interface PeerStats {
  peer: string
  outbox: Record<OutboxState, number>
  inbox: Record<Verdict | 'owed', number>
}

export interface LedgerEntry {
  direction: 'out' | 'in'
  peer: string
  jti: string
  iss?: string | undefined
  event?: string | undefined
  subject?: string | undefined
  /** Outbox state or inbox verdict. */
  state: string
  /** Inbox: we still owe the peer an answer. */
  owed?: boolean | undefined
  /** Outbox: sends so far. */
  attempts?: number | undefined
  err?: string | undefined
  description?: string | undefined
  /** Since the row was created or received, in ms. */
  ageMs: number
}

export interface LedgerOptions {
  storage: LedgerStorage
  now?: () => number
  random?: () => number
  retry?: Partial<RetryPolicy>
  /** Keep received tokens in the inbox (for hand-off and inspection). Default true. */
  storeTokens?: boolean
}

export const DEFAULT_RETENTION_MS = 7 * 24 * 60 * 60 * 1000

/**
 * Hash used for dedup: SHA-256 (base64url) of the JWS payload segment (so a redelivery re-signed
 * with a non-deterministic algorithm is still a duplicate), or of the whole token otherwise (JWE).
 */
export function hashSetPayload(token: string): string {
  const parts = token.split('.')
  const material = parts.length === 3 ? (parts[1] ?? token) : token
  return createHash('sha256').update(material).digest('base64url')
}

// ---------------------------------------------------------------------------------------------
// The ledger

export class Ledger {
  readonly policy: Readonly<RetryPolicy>
  private readonly storage: LedgerStorage
  private readonly now: () => number
  private readonly random: () => number
  private readonly storeTokens: boolean

  constructor(options: LedgerOptions) {
    this.storage = options.storage
    this.now = options.now ?? Date.now
    this.random = options.random ?? Math.random
    this.policy = Object.freeze(resolvePolicy(options.retry))
    this.storeTokens = options.storeTokens ?? true
  }

  /** Queue SETs for `peer`. Never requeues a jti that was already used. */
  enqueue(peer: string, items: readonly OutgoingSet[]): EnqueueResult[] {
    checkPeer(peer)
    for (const item of items) {
      checkId('jti', item.jti)
      if (typeof item.token !== 'string' || item.token.length === 0) throw internal(`enqueue: the SET ${item.jti} has no token`)
    }

    return this.storage.transaction(() => {
      const now = this.now()
      return items.map((item): EnqueueResult => {
        const inserted = this.storage.insertOutbox({
          peer,
          jti: item.jti,
          token: item.token,
          event: item.event,
          subject: item.subject,
          state: 'pending',
          attempts: 0,
          nextAt: now,
          createdAt: now,
          updatedAt: now,
        })
        if (inserted) return {jti: item.jti, status: 'queued'}
        const existing = this.storage.getOutbox(peer, item.jti)
        const active = existing !== undefined && (existing.state === 'pending' || existing.state === 'in_flight')
        return {jti: item.jti, status: active && existing.token === item.token ? 'exists' : 'jti-reused'}
      })
    })
  }

  /**
   * Up to `limit` SETs due for (re)sending to `peer`, marked in flight. SETs that are due but
   * have been sent `maxAttempts` times are abandoned instead.
   */
  takeDue(peer: string, limit: number): TakeDueResult {
    checkPeer(peer)
    checkLimit(limit)
    return this.storage.transaction(() => {
      const now = this.now()
      const sets: DueSet[] = []
      const abandoned: string[] = []
      // Abandoned rows free their slot, so look again; `seen` guards against rows that are due
      // again at once (ackTimeoutMs 0) being sent twice in one call.
      const seen = new Set<string>()
      while (sets.length < limit) {
        const wanted = limit - sets.length + seen.size
        const rows = this.storage.dueOutbox(peer, now, wanted)
        const changes: OutboxRowChange[] = []
        for (const row of rows) {
          if (seen.has(row.jti) || sets.length >= limit) continue
          seen.add(row.jti)
          if (row.attempts >= this.policy.maxAttempts) {
            changes.push({jti: row.jti, state: 'abandoned', attempts: row.attempts, nextAt: row.nextAt, updatedAt: now})
            abandoned.push(row.jti)
            continue
          }

          const attempt = row.attempts + 1
          const nextAt = now + this.policy.ackTimeoutMs + backoffDelay(attempt - 1, this.policy, this.random)
          changes.push({jti: row.jti, state: 'in_flight', attempts: attempt, nextAt, updatedAt: now})
          sets.push({jti: row.jti, token: row.token, attempt})
        }

        // The whole page of changes at once, before the next look (it must see them).
        this.updateOutboxMany(peer, changes)
        if (changes.length === 0 || rows.length < wanted) break
      }

      return {sets, abandoned}
    })
  }

  /** When the next pending or in-flight SET of `peer` becomes due (ms), if any. */
  nextDueAt(peer: string): number | undefined {
    checkPeer(peer)
    return this.storage.transaction(() => this.storage.nextDueAt(peer))
  }

  /** The peer acknowledged these jtis (in this exchange or any earlier one). */
  markAcked(peer: string, jtis: readonly string[]): ReportResult {
    return this.applyReport(peer, {ack: jtis})
  }

  /** The peer rejected these jtis. */
  markRejected(peer: string, setErrs: ReadonlyMap<string, SetErr> | Iterable<readonly [string, SetErr]>): ReportResult {
    return this.applyReport(peer, {setErrs})
  }

  /**
   * Apply the acks and setErrs a peer reported, in one transaction. A jti in both is rejected.
   * jtis never sent to this peer are returned in `unknown` and change nothing.
   */
  applyReport(peer: string, report: {ack?: readonly string[]; setErrs?: ReadonlyMap<string, SetErr> | Iterable<readonly [string, SetErr]>}): ReportResult {
    checkPeer(peer)
    const setErrs = new Map(report.setErrs ?? [])
    const ack = (report.ack ?? []).filter((jti) => !setErrs.has(jti))
    return this.storage.transaction(() => {
      const now = this.now()
      const result: ReportResult = {acked: [], rejected: [], unknown: [], stale: []}
      // The acks settle in one storage call; only a jti that was not settled is looked up, to tell
      // `unknown` from `stale`.
      const missed = (jti: string): void => {
        if (this.storage.getOutbox(peer, jti) === undefined) result.unknown.push(jti)
        else result.stale.push(jti)
      }

      const settled = this.settleOutboxMany(peer, ack, {state: 'acked', updatedAt: now})
      for (const jti of ack) {
        // A jti listed twice is acked once; the second time it is stale.
        if (settled.delete(jti)) result.acked.push(jti)
        else missed(jti)
      }

      for (const [jti, setErr] of setErrs) {
        if (this.storage.settleOutbox(peer, jti, {state: 'rejected', updatedAt: now, err: setErr.err, description: setErr.description})) {
          result.rejected.push(jti)
        } else missed(jti)
      }

      return result
    })
  }

  /**
   * Sending these in-flight SETs failed (network error, 5xx, 429): back to pending after
   * `max(retryAfterMs, backoff)`, or abandoned at the retry cap.
   */
  markFailed(peer: string, jtis: readonly string[], options: {retryAfterMs?: number} = {}): FailResult {
    checkPeer(peer)
    const retryAfterMs = Math.max(0, options.retryAfterMs ?? 0)
    return this.storage.transaction(() => {
      const now = this.now()
      const result: FailResult = {requeued: [], abandoned: []}
      for (const jti of jtis) {
        const row = this.storage.getOutbox(peer, jti)
        if (row?.state !== 'in_flight') continue
        if (row.attempts >= this.policy.maxAttempts) {
          this.storage.updateOutbox(peer, jti, {state: 'abandoned', attempts: row.attempts, nextAt: row.nextAt, updatedAt: now})
          result.abandoned.push(jti)
        } else {
          const delay = Math.max(retryAfterMs, backoffDelay(row.attempts - 1, this.policy, this.random))
          this.storage.updateOutbox(peer, jti, {state: 'pending', attempts: row.attempts, nextAt: now + delay, updatedAt: now})
          result.requeued.push(jti)
        }
      }

      return result
    })
  }

  /**
   * The connection to `peer` (or, without a peer, every connection: use at start-up) is gone:
   * every in-flight SET is pending again and due at once. Returns how many were requeued.
   */
  requeueInFlight(peer?: string): number {
    if (peer !== undefined) checkPeer(peer)
    return this.storage.transaction(() => {
      const now = this.now()
      return this.storage.requeueInFlight(peer, now, now)
    })
  }

  /**
   * Record SETs received from `peer`, committed before this returns. Per item: `new`,
   * `duplicate` (owed again, not to be processed again) or `conflict` (same (iss, jti), different
   * payload: answer `setErr` now; nothing stored).
   */
  recordReceived(peer: string, items: readonly IncomingSet[]): ReceiveResult[] {
    checkPeer(peer)
    const prepared = items.map((item) => {
      checkId('jti', item.jti)
      if (typeof item.iss !== 'string') throw internal(`recordReceived: iss of ${item.jti} must be a string ('' when unknown)`)
      if (!(VERDICTS as readonly string[]).includes(item.verdict)) throw internal(`recordReceived: unknown verdict ${String(item.verdict)}`)
      const hash = item.hash ?? (item.token === undefined ? undefined : hashSetPayload(item.token))
      if (hash === undefined) throw internal(`recordReceived: the SET ${item.jti} needs a token or a hash`)
      return {item, hash}
    })

    return this.storage.transaction(() => {
      const now = this.now()
      return prepared.map(({item, hash}): ReceiveResult => {
        // Insert first: a new SET (the common case) costs one statement; only a redelivery reads.
        const rejected = item.verdict === 'rejected'
        const inserted = this.storage.insertInbox({
          peer,
          iss: item.iss,
          jti: item.jti,
          hash,
          token: this.storeTokens ? item.token : undefined,
          event: item.event,
          subject: item.subject,
          verdict: item.verdict,
          err: rejected ? (item.err ?? 'invalid_request') : undefined,
          description: rejected ? (item.description ?? '') : undefined,
          owed: item.verdict !== 'undecided',
          // Rejected rows are answered, never printed as SETs: nothing to replay. Without a
          // stored token there is nothing to replay either.
          handedOff: rejected || !this.storeTokens || item.token === undefined,
          receivedAt: now,
          updatedAt: now,
        })
        if (inserted) return {iss: item.iss, jti: item.jti, status: 'new'}
        const existing = this.storage.getInbox(peer, item.iss, item.jti)
        if (existing === undefined) throw internal(`recordReceived: the inbox row of ${item.jti} was neither inserted nor found`)
        if (existing.hash !== hash) {
          return {
            iss: item.iss,
            jti: item.jti,
            status: 'conflict',
            setErr: {err: 'invalid_request', description: `jti ${item.jti} from ${item.iss || 'this issuer'} was already received with a different payload`},
          }
        }

        if (existing.verdict !== 'undecided' && !existing.owed) {
          this.storage.updateInbox(peer, item.iss, item.jti, {
            verdict: existing.verdict,
            err: existing.err,
            description: existing.description,
            owed: true,
            updatedAt: now,
          })
        }

        return {iss: item.iss, jti: item.jti, status: 'duplicate'}
      })
    })
  }

  /** Acks and setErrs we owe `peer` (committed decisions only), at most `limit` jtis. */
  owed(peer: string, limit: number): OwedReport {
    checkPeer(peer)
    checkLimit(limit)
    return this.storage.transaction(() => {
      const report: OwedReport = {ack: [], setErrs: new Map()}
      const acked = new Set<string>()
      for (const row of this.storage.owedInbox(peer, limit)) {
        if (row.verdict === 'rejected') {
          report.setErrs.set(row.jti, {err: row.err ?? 'invalid_request', description: row.description ?? ''})
        } else if (!acked.has(row.jti)) {
          acked.add(row.jti)
          report.ack.push(row.jti)
        }
      }

      // A jti both accepted (from one issuer) and rejected (from another) is reported rejected.
      if (report.setErrs.size > 0) report.ack = report.ack.filter((jti) => !report.setErrs.has(jti))
      return report
    })
  }

  /** These acks/setErrs reached `peer`: no longer owed. Returns how many rows were cleared. */
  markDelivered(peer: string, jtis: Iterable<string>): number {
    checkPeer(peer)
    const list = [...jtis]
    return this.storage.transaction(() => {
      const now = this.now()
      if (this.storage.clearOwedMany !== undefined) return this.storage.clearOwedMany(peer, list, now)
      let cleared = 0
      for (const jti of list) cleared += this.storage.clearOwed(peer, jti, now)
      return cleared
    })
  }

  /**
   * Received SETs (accepted or undecided) that were stored but never handed off: the process
   * stopped after storing them and before their lines left it. Oldest first (newest last), at
   * most `limit`. Print them, await the hand-off, then call `markHandedOff`.
   */
  unhandedOff(limit: number): UnhandedOffRow[] {
    checkLimit(limit)
    return this.storage.transaction(() => this.storage.unhandedOffInbox(limit))
  }

  /** These SETs of `peer` were handed off (printed and flushed). Returns how many rows changed. */
  markHandedOff(peer: string, jtis: Iterable<string>): number {
    checkPeer(peer)
    const list = [...jtis]
    return this.storage.transaction(() => {
      if (this.storage.markHandedOffMany !== undefined) return this.storage.markHandedOffMany(peer, list)
      let changed = 0
      for (const jti of list) changed += this.storage.markHandedOff(peer, jti)
      return changed
    })
  }

  /** Decide SETs stored as `undecided` (manual mode): they become owed acks or setErrs. */
  decide(peer: string, decisions: readonly Decision[]): DecideResult[] {
    checkPeer(peer)
    for (const decision of decisions) {
      checkId('jti', decision.jti)
      if (decision.verdict !== 'accepted' && decision.verdict !== 'rejected') throw internal(`decide: unknown verdict ${String(decision.verdict)}`)
    }

    return this.storage.transaction(() => {
      const now = this.now()
      return decisions.map((decision): DecideResult => {
        const rows = this.storage.findInbox(peer, decision.jti).filter((row) => decision.iss === undefined || row.iss === decision.iss)
        if (rows.length === 0) return {jti: decision.jti, status: 'unknown'}
        const undecided = rows.filter((row) => row.verdict === 'undecided')
        if (undecided.length === 0) return {jti: decision.jti, status: 'already-decided'}
        const rejected = decision.verdict === 'rejected'
        for (const row of undecided) {
          this.storage.updateInbox(peer, row.iss, row.jti, {
            verdict: decision.verdict,
            err: rejected ? (decision.err ?? 'invalid_request') : undefined,
            description: rejected ? (decision.description ?? '') : undefined,
            owed: true,
            // A decision is made on a SET the user saw: it needs no replay.
            handedOff: true,
            updatedAt: now,
          })
        }

        return {jti: decision.jti, status: 'decided'}
      })
    })
  }

  /** Counts per peer and direction (every peer, or one). */
  stats(peer?: string): PeerStats[] {
    return this.storage.transaction(() => {
      const byPeer = new Map<string, PeerStats>()
      for (const row of this.storage.counts(peer)) {
        let stats = byPeer.get(row.peer)
        if (stats === undefined) {
          stats = {
            peer: row.peer,
            outbox: {pending: 0, in_flight: 0, acked: 0, rejected: 0, abandoned: 0},
            inbox: {accepted: 0, rejected: 0, undecided: 0, owed: 0},
          }
          byPeer.set(row.peer, stats)
        }

        if (row.direction === 'out' && (OUTBOX_STATES as readonly string[]).includes(row.state)) {
          stats.outbox[row.state as OutboxState] += row.count
        } else if (row.direction === 'in' && (row.state === 'owed' || (VERDICTS as readonly string[]).includes(row.state))) {
          stats.inbox[row.state as Verdict | 'owed'] += row.count
        }
      }

      return [...byPeer.values()].sort((a, b) => (a.peer < b.peer ? -1 : a.peer > b.peer ? 1 : 0))
    })
  }

  /** Entries for tables: newest first within a direction. */
  list(query: ListQuery): LedgerEntry[] {
    checkLimit(query.limit)
    return this.storage.transaction(() => {
      const now = this.now()
      if (query.direction === 'out') {
        return this.storage.listOutbox(query).map((row) => ({
          direction: 'out' as const,
          peer: row.peer,
          jti: row.jti,
          event: row.event,
          subject: row.subject,
          state: row.state,
          attempts: row.attempts,
          err: row.err,
          description: row.description,
          ageMs: Math.max(0, now - row.createdAt),
        }))
      }

      return this.storage.listInbox(query).map((row) => ({
        direction: 'in' as const,
        peer: row.peer,
        jti: row.jti,
        iss: row.iss,
        event: row.event,
        subject: row.subject,
        state: row.verdict,
        owed: row.owed,
        err: row.err,
        description: row.description,
        ageMs: Math.max(0, now - row.receivedAt),
      }))
    })
  }

  /**
   * Delete outbox rows that are acked, rejected or abandoned, and inbox rows whose answer was
   * delivered, when last changed more than `retentionMs` ago (default 7 days). A pruned inbox row
   * no longer deduplicates a very late redelivery.
   */
  prune(options: {retentionMs?: number} = {}): {outbox: number; inbox: number} {
    const retentionMs = options.retentionMs ?? DEFAULT_RETENTION_MS
    if (!Number.isSafeInteger(retentionMs) || retentionMs < 0) {
      throw new PushpullError('ERR_CONFIG', `retentionMs must be a non-negative integer, got ${String(retentionMs)}`)
    }

    return this.storage.transaction(() => this.storage.prune(this.now() - retentionMs))
  }

  close(): void {
    this.storage.close()
  }

  private updateOutboxMany(peer: string, changes: readonly OutboxRowChange[]): void {
    if (changes.length === 0) return
    if (this.storage.updateOutboxMany !== undefined) {
      this.storage.updateOutboxMany(peer, changes)
      return
    }

    for (const {jti, ...change} of changes) this.storage.updateOutbox(peer, jti, change)
  }

  private settleOutboxMany(peer: string, jtis: readonly string[], change: SettleChange): Set<string> {
    if (jtis.length === 0) return new Set()
    if (this.storage.settleOutboxMany !== undefined) return this.storage.settleOutboxMany(peer, jtis, change)
    const settled = new Set<string>()
    for (const jti of jtis) if (this.storage.settleOutbox(peer, jti, change)) settled.add(jti)
    return settled
  }
}

function checkPeer(peer: string): void {
  if (typeof peer !== 'string' || peer.length === 0) throw internal('the ledger needs a non-empty peer id')
}

function checkId(name: string, value: unknown): void {
  if (typeof value !== 'string' || value.length === 0) throw internal(`the ledger needs a non-empty ${name} string, got ${typeof value}`)
}

function checkLimit(limit: number): void {
  if (!Number.isSafeInteger(limit) || limit < 0) throw internal(`limit must be a non-negative integer, got ${String(limit)}`)
}

function internal(message: string): PushpullError {
  return new PushpullError('ERR_INTERNAL', message)
}
