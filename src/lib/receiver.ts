/**
 * What every receiving binding shares (RFC 8935 push, RFC 8936 poll responses, pushpull HTTP,
 * multi-SET push, pushpull WebSocket): validate, persist, then ack.
 *
 * For one batch of SETs from one peer:
 *  1. every SET is verified (concurrently: WebCrypto runs on libuv's pool, so a batch awaited
 *     together is several times faster than one at a time);
 *  2. a SET whose `sets` key differs from its `jti` is rejected `invalid_request` under the key;
 *  3. a transient failure (JWKS down or slow) is `deferred`: neither acked nor rejected, so the
 *     peer redelivers it later;
 *  4. the verdicts are committed to the ledger in one transaction (dedupe by (iss, jti));
 *  5. only then can the caller read what it owes the peer (`owed`) and answer it.
 *
 * A SET reported as `new` is the one to process (print, forward, hand off); a `duplicate` was
 * processed before and is only acked again.
 */
import type {SetErr} from './communication.js'
import {isTransient, PushpullError, setErrCodeOf, toPushpullError} from './errors.js'
import {shortNameOf} from './events.js'
import {hashSetPayload, type IncomingSet, type Ledger, type OwedReport} from './ledger.js'
import {decodeToken} from './set.js'
import {describeSubject} from './subject.js'
import {sanitizeText} from './text.js'
import type {SetVerifier, VerifiedSet} from './verify.js'

/** How many SETs of one batch are verified at once. */
export const DEFAULT_VERIFY_CONCURRENCY = 256

export interface ReceiverOptions {
  verifier: SetVerifier
  ledger: Ledger
  /**
   * `auto`: a valid SET is accepted at once (its ack is owed). `manual`: it is stored undecided and
   * owed nothing until `Ledger.decide` (the `ack` command, the interactive view). Default `auto`.
   */
  decide?: 'auto' | 'manual'
  /** SETs verified at once. Default 256. */
  concurrency?: number
}

interface OutcomeBase {
  /** The `sets` map key (equals the jti for a well-formed SET). */
  key: string
}

/** A valid SET seen for the first time: process it. */
export interface NewOutcome extends OutcomeBase {
  status: 'new'
  set: VerifiedSet
  verdict: 'accepted' | 'undecided'
}

/** A redelivery of a SET already received: answered again, not processed again. */
export interface DuplicateOutcome extends OutcomeBase {
  status: 'duplicate'
  set: VerifiedSet
}

/** Refused: the peer gets a setErr under `key`. `repeat` when the same SET was refused before. */
export interface RejectedOutcome extends OutcomeBase {
  status: 'rejected'
  setErr: SetErr
  error: PushpullError
  repeat: boolean
  /** Present when the token decoded far enough to show. */
  iss?: string
  event?: string
}

/** Could not be judged now (transient failure): no ack, no setErr; the peer redelivers. */
export interface DeferredOutcome extends OutcomeBase {
  status: 'deferred'
  error: PushpullError
}

export type ReceiveOutcome = NewOutcome | DuplicateOutcome | RejectedOutcome | DeferredOutcome

export interface ReceiveBatch {
  /** Compact tokens keyed by their `sets` key. */
  sets: ReadonlyMap<string, string>
  /** Keys the parser already refused (value not a string, over the per-SET size). */
  invalidSets?: ReadonlyMap<string, SetErr>
}

export interface ReceiveResult {
  outcomes: ReceiveOutcome[]
  /**
   * setErrs that are answered now but not stored (same (iss, jti) received earlier with a different
   * payload): merge them into the reply; `owed` does not return them.
   */
  immediate: Map<string, SetErr>
}

/** A verified batch, not yet stored: pass it to `SetReceiver.record`. */
export interface JudgedBatch {
  readonly judged: readonly Judged[]
}

/** One judged SET of a batch (verdict inputs for the ledger). */
export interface Judged {
  key: string
  set?: VerifiedSet
  error?: PushpullError
  setErr?: SetErr
  iss: string
  jti: string
  hash: string
  event?: string
  subject?: string
}

export class SetReceiver {
  readonly ledger: Ledger
  private readonly verifier: SetVerifier
  private readonly decideMode: 'auto' | 'manual'
  private readonly concurrency: number

  constructor(options: ReceiverOptions) {
    this.verifier = options.verifier
    this.ledger = options.ledger
    this.decideMode = options.decide ?? 'auto'
    this.concurrency = options.concurrency ?? DEFAULT_VERIFY_CONCURRENCY
    if (!Number.isSafeInteger(this.concurrency) || this.concurrency < 1) {
      throw new PushpullError('ERR_CONFIG', `verify concurrency must be a positive integer, got ${String(options.concurrency)}`)
    }
  }

  /** Judge and record a batch from `peer`. Throws ERR_STATE_IO (nothing stored, nothing owed) when storage fails. */
  async receive(peer: string, batch: ReceiveBatch): Promise<ReceiveResult> {
    return this.record(peer, await this.judgeBatch(batch))
  }

  /**
   * Step 1 of `receive`: verify a batch (stores nothing). A session starts this for the next
   * message while the current one is stored, so verification overlaps storage.
   */
  async judgeBatch(batch: ReceiveBatch): Promise<JudgedBatch> {
    const judged: Judged[] = []
    for (const [key, setErr] of batch.invalidSets ?? []) {
      judged.push({
        error: new PushpullError('ERR_SET_MALFORMED', setErr.description),
        hash: hashSetPayload(`invalid:${key}:${setErr.description}`),
        iss: '',
        jti: key,
        key,
        setErr,
      })
    }

    const entries = [...batch.sets]
    for (let start = 0; start < entries.length; start += this.concurrency) {
      const slice = entries.slice(start, start + this.concurrency)
      // Bounded concurrency: one slice at a time.
      judged.push(...(await Promise.all(slice.map(async ([key, token]) => this.judge(key, token)))))
    }

    return {judged}
  }

  /** Step 2 of `receive`: commit the verdicts of a judged batch to the ledger (one transaction). */
  record(peer: string, batch: JudgedBatch): ReceiveResult {
    const {judged} = batch
    const deferred: DeferredOutcome[] = []
    const toRecord: Judged[] = []
    for (const item of judged) {
      if (item.error !== undefined && item.setErr === undefined) {
        deferred.push({error: item.error, key: item.key, status: 'deferred'})
      } else {
        toRecord.push(item)
      }
    }

    const incoming: IncomingSet[] = toRecord.map((item) => ({
      description: item.setErr?.description,
      err: item.setErr?.err,
      event: item.event,
      hash: item.hash,
      iss: item.iss,
      jti: item.jti,
      subject: item.subject,
      token: item.set?.token,
      verdict: item.setErr === undefined ? (this.decideMode === 'auto' ? 'accepted' : 'undecided') : 'rejected',
    }))
    const recorded = incoming.length === 0 ? [] : this.ledger.recordReceived(peer, incoming)

    const immediate = new Map<string, SetErr>()
    const outcomes: ReceiveOutcome[] = []
    for (const [index, item] of toRecord.entries()) {
      const result = recorded[index]
      if (result === undefined) throw new PushpullError('ERR_INTERNAL', 'the ledger returned fewer results than SETs recorded')
      if (result.status === 'conflict') {
        const setErr = result.setErr ?? {description: `a different SET with jti ${item.jti} was already received from ${item.iss}`, err: 'invalid_request'}
        immediate.set(item.key, setErr)
        outcomes.push({
          error: new PushpullError('ERR_SET_CONFLICT', setErr.description),
          event: item.event,
          iss: item.iss,
          key: item.key,
          repeat: false,
          setErr,
          status: 'rejected',
        })
      } else if (item.setErr !== undefined) {
        outcomes.push({
          error: item.error ?? new PushpullError('ERR_SET_MALFORMED', item.setErr.description),
          event: item.event,
          iss: item.iss === '' ? undefined : item.iss,
          key: item.key,
          repeat: result.status === 'duplicate',
          setErr: item.setErr,
          status: 'rejected',
        } as RejectedOutcome)
      } else if (item.set !== undefined) {
        outcomes.push(
          result.status === 'new'
            ? {key: item.key, set: item.set, status: 'new', verdict: this.decideMode === 'auto' ? 'accepted' : 'undecided'}
            : {key: item.key, set: item.set, status: 'duplicate'},
        )
      }
    }

    return {immediate, outcomes: [...outcomes, ...deferred]}
  }

  /** What we owe `peer` (committed only), at most `limit` jtis, plus the batch's immediate setErrs. */
  owed(peer: string, limit: number, immediate?: ReadonlyMap<string, SetErr>): OwedReport {
    const report = this.ledger.owed(peer, limit)
    for (const [key, setErr] of immediate ?? []) {
      if (!report.setErrs.has(key)) report.setErrs.set(key, setErr)
    }

    return report
  }

  /** The acks and setErrs in `report` reached `peer`. */
  delivered(peer: string, report: OwedReport): void {
    const jtis = [...report.ack, ...report.setErrs.keys()]
    if (jtis.length > 0) this.ledger.markDelivered(peer, jtis)
  }

  private async judge(key: string, token: string): Promise<Judged> {
    try {
      const set = await this.verifier.verify(token)
      const {claims} = set
      const subject = summariseSubject(claims)
      const event = firstEventName(claims.events)
      const hash = hashSetPayload(set.token)
      if (claims.jti !== key) {
        const description = `the "sets" key ${quote(key)} differs from the SET's jti ${quote(claims.jti)}`
        return {
          error: new PushpullError('ERR_SET_CLAIMS', description),
          event,
          hash,
          iss: claims.iss,
          jti: key,
          key,
          setErr: {description, err: 'invalid_request'},
          subject,
        }
      }

      return {event, hash, iss: claims.iss, jti: claims.jti, key, set, subject}
    } catch (error) {
      const failure = toPushpullError(error)
      if (failure.code === 'ERR_INTERNAL') throw failure
      const partial = peek(token)
      if (isTransient(failure)) {
        return {error: failure, hash: '', iss: partial.iss ?? '', jti: key, key}
      }

      return {
        error: failure,
        event: partial.event,
        hash: hashSetPayload(token),
        iss: partial.iss ?? '',
        jti: key,
        key,
        setErr: {description: sanitizeText(failure.message, 300), err: setErrCodeOf(failure) ?? 'invalid_request'},
      }
    }
  }
}

function quote(value: string): string {
  return JSON.stringify(sanitizeText(value, 100))
}

function firstEventName(events: Record<string, unknown>): string | undefined {
  const uri = Object.keys(events)[0]
  if (uri === undefined) return undefined
  return shortNameOf(uri) ?? uri
}

function summariseSubject(claims: Record<string, unknown>): string | undefined {
  const subject = claims.sub_id
  if (subject !== null && typeof subject === 'object') return describeSubject(subject as Record<string, unknown>)
  return undefined
}

/** Best-effort issuer and event of a token that failed, for tables and logs; never throws. */
function peek(token: string): {iss?: string; event?: string} {
  try {
    const {payload} = decodeToken(token)
    const iss = typeof payload.iss === 'string' ? sanitizeText(payload.iss, 200) : undefined
    const events = payload.events
    const event =
      events !== null && typeof events === 'object' && !Array.isArray(events) ? firstEventName(events as Record<string, unknown>) : undefined
    return {event, iss}
  } catch {
    return {}
  }
}
