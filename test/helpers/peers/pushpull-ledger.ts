/**
 * Both halves of a pushpull peer (draft-tulshibagwale-saag-pushpull-delivery-03), shared by the
 * HTTP and WebSocket peers so one peer can be reached over either binding:
 * - the inbox: SETs received from the client, judged, deduplicated by (iss, jti), acks owed;
 * - the outbox: SETs queued by the test for the client, delivered until acked or setErr'd.
 */
import type {SetErr} from './http-util.js'
import {acceptDecodable, type Judge, tryDecodeClaims} from './judge.js'
import {PeerOutbox} from './outbox.js'
import {isPlainObject} from './set-token.js'
import {checkAck, type Checked, checkSetErrs, checkSets} from './wire.js'

export type Via = 'http' | 'multi-push' | 'ws'

export interface ReceivedSet {
  /** The key under `sets` (the jti the sender claimed). */
  jti: string
  token: string
  claims: Record<string, unknown> | undefined
  /** `undefined` when acked. */
  rejected: SetErr | undefined
  /** True when this (iss, jti) had been received before (it was answered again, not processed again). */
  duplicate: boolean
  via: Via
}

export interface IncomingObject {
  sets: Record<string, unknown>
  ack: string[]
  setErrs: Record<string, SetErr>
  raw: Record<string, unknown>
}

/** Check the members of a Communication Object; unknown members are ignored. */
export function checkCommunicationObject(value: unknown): Checked<IncomingObject> {
  if (!isPlainObject(value)) return {description: 'The Communication Object must be a JSON object.', ok: false}
  const sets = checkSets(value.sets)
  if (!sets.ok) return sets
  const ack = checkAck(value.ack)
  if (!ack.ok) return ack
  const setErrs = checkSetErrs(value.setErrs)
  if (!setErrs.ok) return setErrs
  return {ok: true, value: {ack: ack.value, raw: value, setErrs: setErrs.value, sets: sets.value}}
}

export class PushpullLedger {
  readonly outbox = new PeerOutbox()
  /** Every SET that arrived, in order, duplicates included. */
  readonly received: ReceivedSet[] = []
  /** Acks and setErrs decided but not yet sent to the client. */
  owedAcks: string[] = []
  owedSetErrs: Record<string, SetErr> = Object.create(null) as Record<string, SetErr>
  judge: Judge
  private readonly seen = new Map<string, {token: string; verdict: SetErr | undefined}>()

  constructor(judge: Judge = acceptDecodable) {
    this.judge = judge
  }

  /** Judge the SETs of one object and add the verdicts to what is owed. Returns this object's verdicts. */
  receive(sets: Record<string, unknown>, via: Via): {ack: string[]; setErrs: Record<string, SetErr>} {
    const ack: string[] = []
    const setErrs = Object.create(null) as Record<string, SetErr>
    for (const [key, value] of Object.entries(sets)) {
      const verdict = this.judgeOne(key, value, via)
      if (verdict) setErrs[key] = verdict
      else ack.push(key)
    }

    this.owedAcks.push(...ack)
    Object.assign(this.owedSetErrs, setErrs)
    return {ack, setErrs}
  }

  /** Take everything owed (acks and setErrs), in decision order. */
  drainOwed(): {ack: string[]; setErrs: Record<string, SetErr>} {
    const out = {ack: this.owedAcks, setErrs: this.owedSetErrs}
    this.owedAcks = []
    this.owedSetErrs = Object.create(null) as Record<string, SetErr>
    return out
  }

  /** The first arrival of each accepted SET (what a correct receiver processes exactly once). */
  processed(): ReceivedSet[] {
    return this.received.filter((r) => !r.duplicate && r.rejected === undefined)
  }

  private judgeOne(key: string, value: unknown, via: Via): SetErr | undefined {
    if (typeof value !== 'string') {
      const rejected = {description: `The value under "sets" for ${JSON.stringify(key)} is not a string.`, err: 'invalid_request'}
      this.received.push({claims: undefined, duplicate: false, jti: key, rejected, token: String(value), via})
      return rejected
    }

    const claims = tryDecodeClaims(value)
    const dedupeKey = `${typeof claims?.iss === 'string' ? claims.iss : ''}\u0000${key}`
    const before = this.seen.get(dedupeKey)
    if (before) {
      const rejected = before.token === value
        ? before.verdict
        : {description: 'A different SET was already received with this jti.', err: 'invalid_request'}
      this.received.push({claims, duplicate: true, jti: key, rejected, token: value, via})
      return rejected
    }

    let rejected: SetErr | undefined
    if (claims !== undefined && claims.jti !== key) rejected = {description: 'The "sets" key is not the SET\'s jti.', err: 'invalid_request'}
    else rejected = this.judge(value, claims)
    this.seen.set(dedupeKey, {token: value, verdict: rejected})
    this.received.push({claims, duplicate: false, jti: key, rejected, token: value, via})
    return rejected
  }
}
