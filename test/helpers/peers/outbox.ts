/**
 * The transmitting side shared by the poll, pushpull HTTP and pushpull WebSocket peers: SETs
 * queued by the test are delivered until the other side acks them or reports a setErr for them
 * (RFC 8936 section 2.4: unacknowledged SETs are delivered again).
 */
import type {SetErr} from './http-util.js'
import {decodeSetUnverified} from './set-token.js'

export type QueueItem = {jti: string; token: string} | string

export class PeerOutbox {
  /** jtis acked by the client, in the order the acks arrived. */
  readonly acked: string[] = []
  /** setErrs reported by the client, by jti. */
  readonly setErrs: Record<string, SetErr> = Object.create(null) as Record<string, SetErr>
  /** Acks or setErrs that named a jti this peer never queued (or already settled). */
  readonly unknownAcks: string[] = []
  private readonly pending = new Map<string, string>()
  private readonly deliveryCount = new Map<string, number>()
  private readonly known = new Set<string>()

  /** Queue SETs for delivery. A bare token's jti is read from its payload. */
  queue(items: QueueItem[]): void {
    for (const item of items) {
      const {jti, token} = typeof item === 'string' ? {jti: jtiOf(item), token: item} : item
      this.pending.set(jti, token)
      this.known.add(jti)
    }
  }

  /** Up to `max` unsettled SETs (oldest first), counted as delivered once more. */
  take(max = Number.POSITIVE_INFINITY, exclude?: Set<string>): Record<string, string> {
    const out = Object.create(null) as Record<string, string>
    let n = 0
    for (const [jti, token] of this.pending) {
      if (n >= max) break
      if (exclude?.has(jti)) continue
      out[jti] = token
      this.deliveryCount.set(jti, (this.deliveryCount.get(jti) ?? 0) + 1)
      n++
    }

    return out
  }

  /** SETs still waiting for an ack or setErr. */
  pendingJtis(): string[] {
    return [...this.pending.keys()]
  }

  pendingCount(): number {
    return this.pending.size
  }

  /** How many times a SET was delivered (redeliveries included). */
  deliveries(jti: string): number {
    return this.deliveryCount.get(jti) ?? 0
  }

  applyAcks(jtis: string[]): void {
    for (const jti of jtis) {
      if (this.pending.delete(jti)) this.acked.push(jti)
      else this.unknownAcks.push(jti)
    }
  }

  applySetErrs(errs: Record<string, SetErr>): void {
    for (const [jti, err] of Object.entries(errs)) {
      if (this.pending.delete(jti)) this.setErrs[jti] = err
      else this.unknownAcks.push(jti)
    }
  }

  /** True when `jti` was ever queued here. */
  isKnown(jti: string): boolean {
    return this.known.has(jti)
  }
}

function jtiOf(token: string): string {
  const {jti} = decodeSetUnverified(token).claims
  if (typeof jti !== 'string') throw new Error('queued token has no string jti')
  return jti
}
