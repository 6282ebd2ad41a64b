/**
 * The ledger state machine, run against both storages (in-memory and SQLite) with an injected
 * clock and injected randomness.
 */
import {mkdtempSync, rmSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'

import {afterAll, beforeEach, afterEach, describe, expect, it} from 'vitest'

import {parseCommunicationObject} from '../../src/lib/communication.js'
import {isPushpullError} from '../../src/lib/errors.js'
import {backoffDelay, DEFAULT_RETRY_POLICY, hashSetPayload, Ledger, type LedgerStorage, type RetryPolicy} from '../../src/lib/ledger.js'
import {MemoryLedgerStorage, openStore} from '../../src/lib/store.js'

const PEER = 'https://peer.example/pushpull'
const OTHER = 'wss://other.example/pushpull'
const T0 = 1_700_000_000_000

const dirs: string[] = []
afterAll(() => {
  for (const dir of dirs) rmSync(dir, {recursive: true, force: true})
})

const storages: Array<[string, () => LedgerStorage]> = [
  ['memory', () => new MemoryLedgerStorage()],
  [
    'sqlite',
    () => {
      const dir = mkdtempSync(join(tmpdir(), 'pushpull-ledger-'))
      dirs.push(dir)
      return openStore({path: join(dir, 'state.db')})
    },
  ],
]

/** A compact-looking token whose payload segment is `payload`. */
function token(payload: string, signature = 'sig'): string {
  return `eyJhbGciOiJFUzI1NiJ9.${Buffer.from(payload).toString('base64url')}.${signature}`
}

describe('backoffDelay', () => {
  const policy = {initialMs: 1000, factor: 2, capMs: 60_000}

  it('is full jitter: random() * min(cap, initial * factor^attempt)', () => {
    expect(backoffDelay(0, policy, () => 0)).toBe(0)
    expect(backoffDelay(0, policy, () => 0.5)).toBe(500)
    expect(backoffDelay(3, policy, () => 0.5)).toBe(4000)
    expect(backoffDelay(3, policy, () => 0.999_999)).toBe(7999)
    expect(backoffDelay(6, policy, () => 0.999_999)).toBe(59_999) // 64 s capped at 60 s
    expect(backoffDelay(2000, policy, () => 0.5)).toBe(30_000) // overflow to Infinity is capped too
  })

  it('stays within [0, min(cap, initial * factor^attempt)) for any random value', () => {
    for (let attempt = 0; attempt < 12; attempt++) {
      const ceiling = Math.min(60_000, 1000 * 2 ** attempt)
      for (const r of [0, 0.1, 0.5, 0.9, 0.999_999_999]) {
        const delay = backoffDelay(attempt, policy, () => r)
        expect(delay).toBeGreaterThanOrEqual(0)
        expect(delay).toBeLessThan(ceiling)
      }
    }
  })

  it('has the documented default policy', () => {
    expect(DEFAULT_RETRY_POLICY).toEqual({initialMs: 1000, factor: 2, capMs: 60_000, ackTimeoutMs: 30_000, maxAttempts: 10})
  })
})

describe('hashSetPayload', () => {
  it('hashes the JWS payload, so a re-signed identical payload is not a conflict', () => {
    expect(hashSetPayload(token('{"jti":"a"}', 'one'))).toBe(hashSetPayload(token('{"jti":"a"}', 'two')))
    expect(hashSetPayload(token('{"jti":"a"}'))).not.toBe(hashSetPayload(token('{"jti":"b"}')))
  })
})

describe.each(storages)('Ledger on %s storage', (_name, makeStorage) => {
  let t = T0
  let r = 0.5
  let ledger: Ledger

  function open(retry: Partial<RetryPolicy> = {}): Ledger {
    ledger?.close()
    ledger = new Ledger({storage: makeStorage(), now: () => t, random: () => r, retry})
    return ledger
  }

  beforeEach(() => {
    t = T0
    r = 0.5
    open()
  })

  afterEach(() => {
    ledger.close()
  })

  describe('outbox', () => {
    it('enqueues once and never reuses a jti after ack or reject', () => {
      expect(ledger.enqueue(PEER, [{jti: 'a', token: 'tok-a'}, {jti: 'b', token: 'tok-b'}])).toEqual([
        {jti: 'a', status: 'queued'},
        {jti: 'b', status: 'queued'},
      ])
      expect(ledger.enqueue(PEER, [{jti: 'a', token: 'tok-a'}, {jti: 'b', token: 'other'}])).toEqual([
        {jti: 'a', status: 'exists'},
        {jti: 'b', status: 'jti-reused'},
      ])
      ledger.takeDue(PEER, 10)
      ledger.applyReport(PEER, {ack: ['a'], setErrs: new Map([['b', {err: 'invalid_key', description: 'x'}]])})
      expect(ledger.enqueue(PEER, [{jti: 'a', token: 'tok-a'}, {jti: 'b', token: 'tok-b'}])).toEqual([
        {jti: 'a', status: 'jti-reused'},
        {jti: 'b', status: 'jti-reused'},
      ])
      // The same jti for another peer is a different outbox entry.
      expect(ledger.enqueue(OTHER, [{jti: 'a', token: 'tok-a'}])).toEqual([{jti: 'a', status: 'queued'}])
    })

    it('takes due SETs in order, up to the limit, and marks them in flight', () => {
      ledger.enqueue(PEER, ['a', 'b', 'c'].map((jti) => ({jti, token: `tok-${jti}`})))
      expect(ledger.takeDue(PEER, 2)).toEqual({
        sets: [
          {jti: 'a', token: 'tok-a', attempt: 1},
          {jti: 'b', token: 'tok-b', attempt: 1},
        ],
        abandoned: [],
      })
      expect(ledger.takeDue(PEER, 5).sets.map((s) => s.jti)).toEqual(['c'])
      expect(ledger.takeDue(PEER, 5).sets).toEqual([])
      expect(ledger.takeDue(OTHER, 5).sets).toEqual([])
      expect(ledger.stats(PEER)[0]?.outbox).toEqual({pending: 0, in_flight: 3, acked: 0, rejected: 0, abandoned: 0})
    })

    it('resends after the ack timeout plus a fully jittered backoff', () => {
      r = 0.5
      ledger.enqueue(PEER, [{jti: 'a', token: 'tok-a'}])
      ledger.takeDue(PEER, 1) // attempt 1 at T0: deadline T0 + 30 s + 0.5 * 1 s
      expect(ledger.nextDueAt(PEER)).toBe(T0 + 30_000 + 500)
      t = T0 + 30_499
      expect(ledger.takeDue(PEER, 1).sets).toEqual([])
      t = T0 + 30_500
      // attempt 2: backoff ceiling 2 s; with random 0.999 the delay is just under it.
      r = 0.999
      expect(ledger.takeDue(PEER, 1).sets).toEqual([{jti: 'a', token: 'tok-a', attempt: 2}])
      const sentAt = t
      t = sentAt + 30_000 + 1997
      expect(ledger.takeDue(PEER, 1).sets).toEqual([])
      t = sentAt + 30_000 + 1998
      expect(ledger.takeDue(PEER, 1).sets[0]?.attempt).toBe(3)
    })

    it('abandons a SET at the retry cap instead of resending it', () => {
      open({maxAttempts: 3, ackTimeoutMs: 100, initialMs: 10, capMs: 10})
      ledger.enqueue(PEER, [{jti: 'a', token: 'tok-a'}])
      for (let attempt = 1; attempt <= 3; attempt++) {
        const taken = ledger.takeDue(PEER, 1)
        expect(taken.sets).toEqual([{jti: 'a', token: 'tok-a', attempt}])
        t += 1000
      }

      ledger.enqueue(PEER, [{jti: 'b', token: 'tok-b'}])

      // a is due a 4th time: abandoned, and its slot goes to b.
      expect(ledger.takeDue(PEER, 1)).toEqual({sets: [{jti: 'b', token: 'tok-b', attempt: 1}], abandoned: ['a']})
      expect(ledger.stats(PEER)[0]?.outbox.abandoned).toBe(1)
      expect(ledger.list({direction: 'out', peer: PEER, states: ['abandoned'], limit: 10}).map((e) => [e.jti, e.attempts])).toEqual([['a', 3]])
      // A late ack still counts.
      expect(ledger.markAcked(PEER, ['a']).acked).toEqual(['a'])
      expect(ledger.enqueue(PEER, [{jti: 'a', token: 'tok-a'}])[0]?.status).toBe('jti-reused')
    })

    it('ignores acks and setErrs for jtis never sent to this peer, touching nothing else', () => {
      ledger.enqueue(PEER, [{jti: 'a', token: 'tok-a'}])
      ledger.enqueue(OTHER, [{jti: 'b', token: 'tok-b'}])
      ledger.takeDue(PEER, 10)
      const before = ledger.stats()
      expect(ledger.applyReport(PEER, {ack: ['never', 'b'], setErrs: new Map([['ghost', {err: 'invalid_key', description: ''}]])})).toEqual({
        acked: [],
        rejected: [],
        unknown: ['never', 'b', 'ghost'],
        stale: [],
      })
      expect(ledger.stats()).toEqual(before)
    })

    it('accepts an ack for a SET sent in an earlier exchange, in any order', () => {
      ledger.enqueue(PEER, [{jti: 'a', token: 'tok-a'}, {jti: 'b', token: 'tok-b'}, {jti: 'c', token: 'tok-c'}])
      ledger.takeDue(PEER, 1) // exchange 1: a
      t += 10
      ledger.takeDue(PEER, 1) // exchange 2: b
      t += 10
      ledger.takeDue(PEER, 1) // exchange 3: c
      expect(ledger.markAcked(PEER, ['c', 'a'])).toEqual({acked: ['c', 'a'], rejected: [], unknown: [], stale: []})
      // Acked twice: stale, ignored.
      expect(ledger.markAcked(PEER, ['a']).stale).toEqual(['a'])
      expect(ledger.stats(PEER)[0]?.outbox).toEqual({pending: 0, in_flight: 1, acked: 2, rejected: 0, abandoned: 0})
      // Acked SETs are never due again.
      t += 10 * 60_000
      expect(ledger.takeDue(PEER, 10).sets.map((s) => s.jti)).toEqual(['b'])
    })

    it('treats a jti in both ack and setErrs of one object as rejected', () => {
      ledger.enqueue(PEER, [{jti: 'a', token: 'tok-a'}, {jti: 'b', token: 'tok-b'}])
      ledger.takeDue(PEER, 10)
      const co = parseCommunicationObject(JSON.stringify({ack: ['a', 'b'], setErrs: {b: {err: 'invalid_audience', description: 'not for us'}}}))
      expect(co.conflicts).toEqual(['b'])
      expect(ledger.applyReport(PEER, co)).toEqual({acked: ['a'], rejected: ['b'], unknown: [], stale: []})
      // Even when a caller passes the jti in both lists itself.
      ledger.enqueue(PEER, [{jti: 'c', token: 'tok-c'}])
      ledger.takeDue(PEER, 10)
      expect(ledger.applyReport(PEER, {ack: ['c'], setErrs: new Map([['c', {err: 'invalid_key', description: ''}]])}).rejected).toEqual(['c'])
      const rejected = ledger.list({direction: 'out', peer: PEER, states: ['rejected'], limit: 10})
      expect(rejected.map((e) => [e.jti, e.err, e.description])).toEqual([
        ['c', 'invalid_key', ''],
        ['b', 'invalid_audience', 'not for us'],
      ])
    })

    it('requeues in-flight SETs on disconnect: due at once, attempts kept', () => {
      ledger.enqueue(PEER, [{jti: 'a', token: 'tok-a'}, {jti: 'b', token: 'tok-b'}])
      ledger.enqueue(OTHER, [{jti: 'x', token: 'tok-x'}])
      ledger.takeDue(PEER, 10)
      ledger.takeDue(OTHER, 10)
      expect(ledger.requeueInFlight(PEER)).toBe(2)
      expect(ledger.stats(OTHER)[0]?.outbox.in_flight).toBe(1)
      expect(ledger.takeDue(PEER, 10).sets).toEqual([
        {jti: 'a', token: 'tok-a', attempt: 2},
        {jti: 'b', token: 'tok-b', attempt: 2},
      ])
      // Without a peer (start-up after a crash): every peer.
      expect(ledger.requeueInFlight()).toBe(3)
    })

    it('backs off failed sends, honouring Retry-After, and abandons at the cap', () => {
      open({maxAttempts: 2})
      r = 0.5
      ledger.enqueue(PEER, [{jti: 'a', token: 'tok-a'}, {jti: 'b', token: 'tok-b'}])
      ledger.takeDue(PEER, 10)
      expect(ledger.markFailed(PEER, ['a', 'nope'])).toEqual({requeued: ['a'], abandoned: []})
      expect(ledger.markFailed(PEER, ['b'], {retryAfterMs: 5000})).toEqual({requeued: ['b'], abandoned: []})
      t = T0 + 499
      expect(ledger.takeDue(PEER, 10).sets).toEqual([])
      t = T0 + 500
      expect(ledger.takeDue(PEER, 10).sets.map((s) => [s.jti, s.attempt])).toEqual([['a', 2]])
      t = T0 + 5000
      expect(ledger.takeDue(PEER, 10).sets.map((s) => [s.jti, s.attempt])).toEqual([['b', 2]])
      expect(ledger.markFailed(PEER, ['a', 'b'])).toEqual({requeued: [], abandoned: ['a', 'b']})
    })
  })

  describe('inbox', () => {
    const A = {iss: 'https://tx.example', jti: 'in-1', token: token('{"jti":"in-1"}'), verdict: 'accepted' as const, event: 'caep.session-revoked', subject: 'email:a@example.com'}

    it('owes acks only for what was recorded, and stops owing after delivery', () => {
      expect(ledger.owed(PEER, 100)).toEqual({ack: [], setErrs: new Map()})
      expect(ledger.recordReceived(PEER, [A, {...A, jti: 'in-2', token: token('{"jti":"in-2"}')}])).toEqual([
        {iss: A.iss, jti: 'in-1', status: 'new'},
        {iss: A.iss, jti: 'in-2', status: 'new'},
      ])
      expect(ledger.owed(PEER, 100)).toEqual({ack: ['in-1', 'in-2'], setErrs: new Map()})
      expect(ledger.owed(PEER, 1).ack).toEqual(['in-1'])
      expect(ledger.owed(OTHER, 100).ack).toEqual([])
      expect(ledger.markDelivered(PEER, ['in-1'])).toBe(1)
      expect(ledger.owed(PEER, 100).ack).toEqual(['in-2'])
      expect(ledger.markDelivered(PEER, ['in-2', 'in-2', 'unknown'])).toBe(1)
      expect(ledger.owed(PEER, 100).ack).toEqual([])
    })

    it('re-acks a duplicate without reporting it as new', () => {
      ledger.recordReceived(PEER, [A])
      ledger.markDelivered(PEER, ['in-1'])
      // Redelivered with a new signature over the same payload: still a duplicate.
      expect(ledger.recordReceived(PEER, [{...A, token: token('{"jti":"in-1"}', 'resigned')}])).toEqual([{iss: A.iss, jti: 'in-1', status: 'duplicate'}])
      expect(ledger.owed(PEER, 100).ack).toEqual(['in-1'])
      // A duplicate inside one batch.
      expect(ledger.recordReceived(PEER, [{...A, jti: 'in-3', token: token('3')}, {...A, jti: 'in-3', token: token('3')}]).map((x) => x.status)).toEqual(['new', 'duplicate'])
      expect(ledger.stats(PEER)[0]?.inbox).toEqual({accepted: 2, rejected: 0, undecided: 0, owed: 2})
    })

    it('reports the same (iss, jti) with a different payload as a conflict and stores nothing', () => {
      ledger.recordReceived(PEER, [A])
      ledger.markDelivered(PEER, ['in-1'])
      const [result] = ledger.recordReceived(PEER, [{...A, token: token('{"jti":"in-1","evil":true}')}])
      expect(result).toEqual({
        iss: A.iss,
        jti: 'in-1',
        status: 'conflict',
        setErr: {err: 'invalid_request', description: 'jti in-1 from https://tx.example was already received with a different payload'},
      })
      expect(ledger.owed(PEER, 100)).toEqual({ack: [], setErrs: new Map()})
      // Same jti from another issuer is a different SET.
      expect(ledger.recordReceived(PEER, [{...A, iss: 'https://other.example', token: token('x')}])[0]?.status).toBe('new')
    })

    it('owes setErrs for rejected SETs, again for duplicates', () => {
      ledger.recordReceived(PEER, [{iss: '', jti: 'bad', token: 'not.a.jws', verdict: 'rejected', err: 'invalid_key', description: 'signature does not verify'}])
      expect(ledger.owed(PEER, 100)).toEqual({ack: [], setErrs: new Map([['bad', {err: 'invalid_key', description: 'signature does not verify'}]])})
      ledger.markDelivered(PEER, ['bad'])
      expect(ledger.recordReceived(PEER, [{iss: '', jti: 'bad', token: 'not.a.jws', verdict: 'rejected', err: 'invalid_key'}])[0]?.status).toBe('duplicate')
      expect(ledger.owed(PEER, 100).setErrs.get('bad')).toEqual({err: 'invalid_key', description: 'signature does not verify'})
      // Default err for a rejection without one.
      ledger.recordReceived(PEER, [{iss: 'i', jti: 'bad2', hash: 'h', verdict: 'rejected'}])
      expect(ledger.owed(PEER, 100).setErrs.get('bad2')).toEqual({err: 'invalid_request', description: ''})
    })

    it('manual mode: undecided SETs owe nothing until decided', () => {
      ledger.recordReceived(PEER, [
        {...A, verdict: 'undecided'},
        {...A, jti: 'in-2', token: token('2'), verdict: 'undecided'},
        {...A, jti: 'in-3', token: token('3'), verdict: 'undecided'},
      ])
      expect(ledger.owed(PEER, 100)).toEqual({ack: [], setErrs: new Map()})
      // A duplicate of an undecided SET still owes nothing.
      expect(ledger.recordReceived(PEER, [{...A, verdict: 'accepted'}])[0]?.status).toBe('duplicate')
      expect(ledger.owed(PEER, 100).ack).toEqual([])
      expect(ledger.stats(PEER)[0]?.inbox).toEqual({accepted: 0, rejected: 0, undecided: 3, owed: 0})
      expect(
        ledger.decide(PEER, [
          {jti: 'in-1', verdict: 'accepted'},
          {jti: 'in-2', verdict: 'rejected', err: 'access_denied', description: 'operator said no'},
          {jti: 'nope', verdict: 'accepted'},
          {jti: 'in-3', iss: 'https://someone-else', verdict: 'accepted'},
        ]),
      ).toEqual([
        {jti: 'in-1', status: 'decided'},
        {jti: 'in-2', status: 'decided'},
        {jti: 'nope', status: 'unknown'},
        {jti: 'in-3', status: 'unknown'},
      ])
      expect(ledger.owed(PEER, 100)).toEqual({ack: ['in-1'], setErrs: new Map([['in-2', {err: 'access_denied', description: 'operator said no'}]])})
      expect(ledger.decide(PEER, [{jti: 'in-1', verdict: 'rejected'}])).toEqual([{jti: 'in-1', status: 'already-decided'}])
      expect(ledger.list({direction: 'in', peer: PEER, states: ['undecided'], limit: 10}).map((e) => e.jti)).toEqual(['in-3'])
    })

    it('refuses malformed items before storing any of the batch', () => {
      let caught: unknown
      try {
        ledger.recordReceived(PEER, [A, {iss: 'x', jti: 'no-token', verdict: 'accepted'}])
      } catch (error) {
        caught = error
      }

      expect(isPushpullError(caught, 'ERR_INTERNAL')).toBe(true)
      expect((caught as Error).message).toBe('recordReceived: the SET no-token needs a token or a hash')
      expect(ledger.owed(PEER, 10).ack).toEqual([])
      expect(ledger.stats(PEER)).toEqual([])
    })
  })

  describe('stats, list and prune', () => {
    it('lists entries for tables with age, event and subject', () => {
      ledger.enqueue(PEER, [{jti: 'o1', token: 'tok', event: 'risc.account-disabled', subject: 'email:x@example.com'}])
      t += 5000
      ledger.recordReceived(PEER, [{iss: 'https://tx', jti: 'i1', token: token('i1'), verdict: 'accepted', event: 'caep.session-revoked', subject: 'opaque:abc'}])
      t += 1000
      expect(ledger.list({direction: 'out', peer: PEER, limit: 10})).toEqual([
        {direction: 'out', peer: PEER, jti: 'o1', event: 'risc.account-disabled', subject: 'email:x@example.com', state: 'pending', attempts: 0, err: undefined, description: undefined, ageMs: 6000},
      ])
      expect(ledger.list({direction: 'in', peer: PEER, owed: true, limit: 10})).toEqual([
        {direction: 'in', peer: PEER, jti: 'i1', iss: 'https://tx', event: 'caep.session-revoked', subject: 'opaque:abc', state: 'accepted', owed: true, err: undefined, description: undefined, ageMs: 1000},
      ])
      expect(ledger.list({direction: 'in', peer: PEER, owed: false, limit: 10})).toEqual([])
      expect(ledger.list({direction: 'out', peer: OTHER, limit: 10})).toEqual([])
    })

    it('pages through lists, newest first', () => {
      ledger.enqueue(PEER, ['a', 'b', 'c', 'd'].map((jti) => ({jti, token: jti})))
      expect(ledger.list({direction: 'out', limit: 2}).map((e) => e.jti)).toEqual(['d', 'c'])
      expect(ledger.list({direction: 'out', limit: 2, offset: 2}).map((e) => e.jti)).toEqual(['b', 'a'])
    })

    it('counts per peer and direction', () => {
      ledger.enqueue(PEER, [{jti: 'a', token: 'a'}, {jti: 'b', token: 'b'}])
      ledger.enqueue(OTHER, [{jti: 'c', token: 'c'}])
      ledger.takeDue(PEER, 1)
      ledger.recordReceived(OTHER, [{iss: 'i', jti: 'x', hash: 'h', verdict: 'rejected', err: 'invalid_key'}])
      expect(ledger.stats()).toEqual([
        {peer: PEER, outbox: {pending: 1, in_flight: 1, acked: 0, rejected: 0, abandoned: 0}, inbox: {accepted: 0, rejected: 0, undecided: 0, owed: 0}},
        {peer: OTHER, outbox: {pending: 1, in_flight: 0, acked: 0, rejected: 0, abandoned: 0}, inbox: {accepted: 0, rejected: 1, undecided: 0, owed: 1}},
      ])
    })

    it('prunes finished rows older than the retention, keeping anything still open', () => {
      ledger.enqueue(PEER, [{jti: 'done', token: 'd'}, {jti: 'open', token: 'o'}])
      ledger.takeDue(PEER, 10)
      ledger.markAcked(PEER, ['done'])
      ledger.recordReceived(PEER, [
        {iss: 'i', jti: 'delivered', hash: 'h1', verdict: 'accepted'},
        {iss: 'i', jti: 'owed', hash: 'h2', verdict: 'accepted'},
        {iss: 'i', jti: 'undecided', hash: 'h3', verdict: 'undecided'},
      ])
      ledger.markDelivered(PEER, ['delivered'])
      t += 1000
      expect(ledger.prune({retentionMs: 5000})).toEqual({outbox: 0, inbox: 0})
      t += 5000
      expect(ledger.prune({retentionMs: 5000})).toEqual({outbox: 1, inbox: 1})
      expect(ledger.list({direction: 'out', limit: 10}).map((e) => e.jti)).toEqual(['open'])
      expect(ledger.list({direction: 'in', limit: 10}).map((e) => e.jti).sort()).toEqual(['owed', 'undecided'])
      const error = (() => {
        try {
          ledger.prune({retentionMs: -1})
        } catch (error_) {
          return error_
        }
      })()
      expect(isPushpullError(error, 'ERR_CONFIG')).toBe(true)
      expect((error as Error).message).toBe('retentionMs must be a non-negative integer, got -1')
    })
  })
})

describe('Ledger options', () => {
  it('refuses an invalid retry policy with ERR_CONFIG', () => {
    let caught: unknown
    try {
      new Ledger({storage: new MemoryLedgerStorage(), retry: {maxAttempts: 0}})
    } catch (error) {
      caught = error
    }

    expect(isPushpullError(caught, 'ERR_CONFIG')).toBe(true)
    expect((caught as Error).message).toBe('retry maxAttempts must be an integer >= 1, got 0')
  })
})
