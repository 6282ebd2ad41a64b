/**
 * In-memory ledger storage: for tests and for the benchmark's in-memory comparison. It holds
 * every row in process memory (nothing is durable) and its `transaction` does not roll back: the
 * ledger validates a whole batch before it changes anything, so a throw part-way is a bug.
 */
import type {
  CountRow,
  InboxChange,
  InboxRow,
  LedgerStorage,
  ListQuery,
  OutboxChange,
  OutboxRow,
  OutboxRowChange,
  SettleChange,
  UnhandedOffRow,
} from '../ledger.js'

const SEP = '\u0000'

export class MemoryLedgerStorage implements LedgerStorage {
  private readonly outbox = new Map<string, OutboxRow & {seq: number}>()
  private readonly inbox = new Map<string, InboxRow & {seq: number}>()
  /** peer -> keys of pending/in_flight outbox rows. */
  private readonly active = new Map<string, Set<string>>()
  /**
   * peer -> (nextAt, seq) min-heap of active outbox rows, so `dueOutbox` and `nextDueAt` do not
   * scan every SET in flight (that made a long session quadratic). Entries are never updated in
   * place: a change pushes a new entry and the old one is dropped when it reaches the top.
   */
  private readonly dueHeaps = new Map<string, DueHeap>()
  /** peer -> keys of owed inbox rows. */
  private readonly owedKeys = new Map<string, Set<string>>()
  /** Keys of inbox rows not yet handed off, in insertion order (a Set keeps it). */
  private readonly unhanded = new Set<string>()
  /** peer + jti -> inbox keys (one per issuer). */
  private readonly byJti = new Map<string, Set<string>>()
  private seq = 0
  private closed = false

  transaction<T>(fn: () => T): T {
    if (this.closed) throw new Error('memory ledger storage is closed')
    return fn()
  }

  insertOutbox(row: OutboxRow): boolean {
    const key = row.peer + SEP + row.jti
    if (this.outbox.has(key)) return false
    const stored = {...row, seq: ++this.seq}
    this.outbox.set(key, stored)
    this.index(this.active, row.peer, key, row.state === 'pending' || row.state === 'in_flight')
    this.pushDue(stored, key)
    return true
  }

  getOutbox(peer: string, jti: string): OutboxRow | undefined {
    const row = this.outbox.get(peer + SEP + jti)
    return row === undefined ? undefined : stripSeq(row)
  }

  updateOutbox(peer: string, jti: string, change: OutboxChange): void {
    const key = peer + SEP + jti
    const row = this.outbox.get(key)
    if (row === undefined) return
    row.state = change.state
    row.attempts = change.attempts
    row.nextAt = change.nextAt
    row.updatedAt = change.updatedAt
    if (change.err !== undefined) row.err = change.err
    if (change.description !== undefined) row.description = change.description
    this.index(this.active, peer, key, change.state === 'pending' || change.state === 'in_flight')
    this.pushDue(row, key)
  }

  settleOutbox(peer: string, jti: string, change: SettleChange): boolean {
    const key = peer + SEP + jti
    const row = this.outbox.get(key)
    if (row === undefined || row.state === 'acked' || row.state === 'rejected') return false
    row.state = change.state
    row.updatedAt = change.updatedAt
    if (change.err !== undefined) row.err = change.err
    if (change.description !== undefined) row.description = change.description
    this.index(this.active, peer, key, false)
    return true
  }

  /** Active rows of `peer` due at `now`, earliest first (nextAt, then insertion order). */
  dueOutbox(peer: string, now: number, limit: number): OutboxRow[] {
    const heap = this.dueHeaps.get(peer)
    if (heap === undefined) return []
    const taken: DueEntry[] = []
    const seen = new Set<string>()
    while (taken.length < limit) {
      const top = heap.peek()
      if (top === undefined) break
      if (!this.isCurrent(top) || seen.has(top.key)) {
        heap.pop()
        continue
      }

      if (top.at > now) break
      heap.pop()
      taken.push(top)
      seen.add(top.key)
    }

    // A read changes nothing: the entries go back (the ledger's update pushes fresh ones).
    for (const entry of taken) heap.push(entry)
    return taken.map((entry) => stripSeq(this.outbox.get(entry.key) as OutboxRow & {seq: number}))
  }

  nextDueAt(peer: string): number | undefined {
    const heap = this.dueHeaps.get(peer)
    if (heap === undefined) return undefined
    for (let top = heap.peek(); top !== undefined; top = heap.peek()) {
      if (this.isCurrent(top)) return top.at
      heap.pop()
    }

    this.dueHeaps.delete(peer)
    return undefined
  }

  private pushDue(row: OutboxRow & {seq: number}, key: string): void {
    if (row.state !== 'pending' && row.state !== 'in_flight') return
    let heap = this.dueHeaps.get(row.peer)
    if (heap === undefined) {
      heap = new DueHeap()
      this.dueHeaps.set(row.peer, heap)
    }

    heap.push({at: row.nextAt, key, seq: row.seq})
  }

  /** The entry still describes its row: the row exists, is active and has this nextAt. */
  private isCurrent(entry: DueEntry): boolean {
    const row = this.outbox.get(entry.key)
    return row !== undefined && row.nextAt === entry.at && (row.state === 'pending' || row.state === 'in_flight')
  }

  requeueInFlight(peer: string | undefined, nextAt: number, updatedAt: number): number {
    let count = 0
    const peers = peer === undefined ? [...this.active.keys()] : [peer]
    for (const p of peers) {
      for (const key of this.active.get(p) ?? []) {
        const row = this.outbox.get(key)
        if (row?.state === 'in_flight') {
          row.state = 'pending'
          row.nextAt = nextAt
          row.updatedAt = updatedAt
          this.pushDue(row, key)
          count++
        }
      }
    }

    return count
  }

  insertInbox(row: InboxRow): boolean {
    const key = row.peer + SEP + row.iss + SEP + row.jti
    if (this.inbox.has(key)) return false
    this.inbox.set(key, {...row, handedOff: row.handedOff !== false, seq: ++this.seq})
    if (row.handedOff === false) this.unhanded.add(key)
    this.index(this.owedKeys, row.peer, key, row.owed)
    this.index(this.byJti, row.peer + SEP + row.jti, key, true)
    return true
  }

  getInbox(peer: string, iss: string, jti: string): InboxRow | undefined {
    const row = this.inbox.get(peer + SEP + iss + SEP + jti)
    return row === undefined ? undefined : stripSeq(row)
  }

  findInbox(peer: string, jti: string): InboxRow[] {
    const rows: InboxRow[] = []
    for (const key of this.byJti.get(peer + SEP + jti) ?? []) {
      const row = this.inbox.get(key)
      if (row !== undefined) rows.push(stripSeq(row))
    }

    return rows
  }

  updateInbox(peer: string, iss: string, jti: string, change: InboxChange): void {
    const key = peer + SEP + iss + SEP + jti
    const row = this.inbox.get(key)
    if (row === undefined) return
    row.verdict = change.verdict
    row.err = change.err
    row.description = change.description
    row.owed = change.owed
    row.updatedAt = change.updatedAt
    if (change.handedOff === true) {
      row.handedOff = true
      this.unhanded.delete(key)
    }

    this.index(this.owedKeys, peer, key, change.owed)
  }

  unhandedOffInbox(limit: number): UnhandedOffRow[] {
    const rows: UnhandedOffRow[] = []
    for (const key of this.unhanded) {
      if (rows.length >= limit) break
      const row = this.inbox.get(key)
      if (row?.token === undefined) continue
      rows.push({iss: row.iss, jti: row.jti, peer: row.peer, token: row.token, verdict: row.verdict})
    }

    return rows
  }

  markHandedOff(peer: string, jti: string): number {
    let count = 0
    for (const key of this.byJti.get(peer + SEP + jti) ?? []) {
      const row = this.inbox.get(key)
      if (row !== undefined && row.handedOff === false) {
        row.handedOff = true
        this.unhanded.delete(key)
        count++
      }
    }

    return count
  }

  owedInbox(peer: string, limit: number): InboxRow[] {
    const rows: Array<InboxRow & {seq: number}> = []
    for (const key of this.owedKeys.get(peer) ?? []) {
      const row = this.inbox.get(key)
      if (row !== undefined && row.verdict !== 'undecided') rows.push(row)
    }

    rows.sort((a, b) => a.updatedAt - b.updatedAt || a.seq - b.seq)
    return rows.slice(0, limit).map((row) => stripSeq(row))
  }

  clearOwed(peer: string, jti: string, updatedAt: number): number {
    let count = 0
    for (const key of this.byJti.get(peer + SEP + jti) ?? []) {
      const row = this.inbox.get(key)
      if (row?.owed && row.verdict !== 'undecided') {
        row.owed = false
        row.handedOff = true
        this.unhanded.delete(key)
        row.updatedAt = updatedAt
        this.index(this.owedKeys, peer, key, false)
        count++
      }
    }

    return count
  }

  // The batch forms are the per-row calls in a loop: in memory a statement costs nothing.

  updateOutboxMany(peer: string, changes: readonly OutboxRowChange[]): void {
    for (const change of changes) this.updateOutbox(peer, change.jti, change)
  }

  settleOutboxMany(peer: string, jtis: readonly string[], change: SettleChange): Set<string> {
    const settled = new Set<string>()
    for (const jti of jtis) if (this.settleOutbox(peer, jti, change)) settled.add(jti)
    return settled
  }

  clearOwedMany(peer: string, jtis: readonly string[], updatedAt: number): number {
    let count = 0
    for (const jti of jtis) count += this.clearOwed(peer, jti, updatedAt)
    return count
  }

  markHandedOffMany(peer: string, jtis: readonly string[]): number {
    let count = 0
    for (const jti of jtis) count += this.markHandedOff(peer, jti)
    return count
  }

  counts(peer?: string): CountRow[] {
    const tally = new Map<string, CountRow>()
    const add = (p: string, direction: 'out' | 'in', state: string): void => {
      const key = p + SEP + direction + SEP + state
      const row = tally.get(key)
      if (row === undefined) tally.set(key, {peer: p, direction, state, count: 1})
      else row.count++
    }

    for (const row of this.outbox.values()) if (peer === undefined || row.peer === peer) add(row.peer, 'out', row.state)
    for (const row of this.inbox.values()) {
      if (peer !== undefined && row.peer !== peer) continue
      add(row.peer, 'in', row.verdict)
      if (row.owed) add(row.peer, 'in', 'owed')
    }

    return [...tally.values()]
  }

  listOutbox(query: ListQuery): OutboxRow[] {
    const rows = [...this.outbox.values()].filter(
      (row) => (query.peer === undefined || row.peer === query.peer) && (query.states === undefined || query.states.includes(row.state)),
    )
    rows.sort((a, b) => b.seq - a.seq)
    const offset = query.offset ?? 0
    return rows.slice(offset, offset + query.limit).map((row) => stripSeq(row))
  }

  listInbox(query: ListQuery): InboxRow[] {
    const rows = [...this.inbox.values()].filter(
      (row) =>
        (query.peer === undefined || row.peer === query.peer) &&
        (query.states === undefined || query.states.includes(row.verdict)) &&
        (query.owed === undefined || row.owed === query.owed),
    )
    rows.sort((a, b) => b.receivedAt - a.receivedAt || b.seq - a.seq)
    const offset = query.offset ?? 0
    return rows.slice(offset, offset + query.limit).map((row) => stripSeq(row))
  }

  prune(before: number): {outbox: number; inbox: number} {
    let outbox = 0
    let inbox = 0
    for (const [key, row] of this.outbox) {
      if (row.state !== 'pending' && row.state !== 'in_flight' && row.updatedAt < before) {
        this.outbox.delete(key)
        outbox++
      }
    }

    for (const [key, row] of this.inbox) {
      if (!row.owed && row.verdict !== 'undecided' && row.updatedAt < before) {
        this.inbox.delete(key)
        this.unhanded.delete(key)
        this.byJti.get(row.peer + SEP + row.jti)?.delete(key)
        inbox++
      }
    }

    return {outbox, inbox}
  }

  close(): void {
    this.closed = true
  }

  private index(map: Map<string, Set<string>>, group: string, key: string, present: boolean): void {
    let set = map.get(group)
    if (present) {
      if (set === undefined) {
        set = new Set()
        map.set(group, set)
      }

      set.add(key)
    } else if (set !== undefined) {
      set.delete(key)
      if (set.size === 0) map.delete(group)
    }
  }
}

function stripSeq<T extends {seq: number}>(row: T): Omit<T, 'seq'> {
  const {seq: _seq, ...rest} = row
  return rest
}

interface DueEntry {
  at: number
  seq: number
  key: string
}

/** A binary min-heap of due entries ordered by (at, seq). */
class DueHeap {
  private readonly items: DueEntry[] = []

  peek(): DueEntry | undefined {
    return this.items[0]
  }

  push(entry: DueEntry): void {
    const items = this.items
    items.push(entry)
    let at = items.length - 1
    while (at > 0) {
      const parent = (at - 1) >> 1
      if (!before(entry, items[parent] as DueEntry)) break
      items[at] = items[parent] as DueEntry
      at = parent
    }

    items[at] = entry
  }

  pop(): DueEntry | undefined {
    const items = this.items
    const top = items[0]
    const last = items.pop()
    if (top === undefined || last === undefined || items.length === 0) return top
    let at = 0
    for (;;) {
      const left = at * 2 + 1
      if (left >= items.length) break
      const right = left + 1
      const child = right < items.length && before(items[right] as DueEntry, items[left] as DueEntry) ? right : left
      if (!before(items[child] as DueEntry, last)) break
      items[at] = items[child] as DueEntry
      at = child
    }

    items[at] = last
    return top
  }
}

function before(a: DueEntry, b: DueEntry): boolean {
  return a.at < b.at || (a.at === b.at && a.seq < b.seq)
}
