/**
 * What `pushpull listen` prints: one record per listener event (a readable line with colour on a
 * TTY, or one NDJSON record under --json), and a live line of counts on stderr when stderr is a
 * terminal. Data (SETs received, acks and setErrs from peers, relay results) goes to stdout;
 * request errors and the counts line go to stderr. Peer text is sanitised before it is shown.
 */
import type {ChalkInstance} from 'chalk'

import {shortNameOf} from '../lib/events.js'
import type {ForwardResult} from '../lib/forwarder.js'
import type {Ledger, UnhandedOffRow} from '../lib/ledger.js'
import {decodeSet, type SetClaims} from '../lib/set.js'
import type {ListenerCounts, ListenerEvent} from '../lib/server.js'
import {describeSubject} from '../lib/subject.js'
import {sanitizeText} from '../lib/text.js'

/** `{type:'set'}` record (phase-2 shared format). */
export interface SetRecord {
  type: 'set'
  peer: string
  binding: string
  jti: string
  iss: string
  event?: string
  subject?: string
  /** null for a `replayed` SET: it was checked when stored, not now. */
  verified: boolean | null
  /** `replayed`: stored before a crash but never printed (at-least-once: it may repeat a line). */
  status: 'new' | 'duplicate' | 'replayed'
  /** `undecided` under --ack manual until decided. */
  verdict?: 'accepted' | 'undecided'
  claims: Record<string, unknown>
}

export type ListenRecord =
  | SetRecord
  | {type: 'rejected'; peer: string; binding: string; jti: string; err: string; description: string; iss?: string; event?: string; repeat: boolean}
  | {type: 'deferred'; peer: string; binding: string; jti: string; description: string}
  | {type: 'ack'; peer: string; jti: string}
  | {type: 'setErr'; peer: string; jti: string; err: string; description: string}
  | {type: 'sent'; peer: string; binding: string; jti: string}
  | {type: 'queued'; peer: string; jti: string; status: string}
  | {type: 'abandoned'; peer: string; jti: string}
  | {type: 'forwarded'; jti: string; url: string; ok: boolean; status?: number; body?: string; error?: {code: string; message: string}}
  | {type: 'listening'; url: string; endpoints: Record<string, string>; peers: string[]; verified: boolean; ack: 'auto' | 'manual'}

function clean(text: string | undefined, max = 200): string {
  return sanitizeText(text ?? '', max)
}

function eventName(set: {claims: SetClaims}): string | undefined {
  const uri = Object.keys(set.claims.events)[0]
  return uri === undefined ? undefined : (shortNameOf(uri) ?? clean(uri))
}

function subjectOf(set: {claims: SetClaims}): string | undefined {
  const subject = (set.claims as Record<string, unknown>).sub_id
  if (subject !== undefined) return clean(describeSubject(subject))
  const first = Object.values(set.claims.events)[0] as Record<string, unknown> | undefined
  return first?.subject === undefined ? undefined : clean(describeSubject(first.subject))
}

/**
 * The record for a SET stored earlier but never handed off. The stored token is decoded for
 * display only (it was verified, or not, when it was stored): `verified` is null. A token that
 * no longer decodes (an encrypted SET) is shown with empty claims.
 */
export function replayedRecordOf(row: UnhandedOffRow): SetRecord {
  let claims: SetClaims | undefined
  try {
    claims = decodeSet(row.token).claims
  } catch {
    claims = undefined
  }

  const record: SetRecord = {
    binding: 'state',
    claims: (claims ?? {}) as Record<string, unknown>,
    iss: row.iss,
    jti: row.jti,
    peer: row.peer,
    status: 'replayed',
    type: 'set',
    verified: null,
  }
  if (claims !== undefined) {
    const name = eventName({claims})
    const subject = subjectOf({claims})
    if (name !== undefined) record.event = name
    if (subject !== undefined) record.subject = subject
  }

  if (row.verdict === 'undecided') record.verdict = 'undecided'
  return record
}

/** Rows read from the state per replay batch. */
export const REPLAY_BATCH = 500

/**
 * Print every SET the state holds that was stored but never handed off (the process stopped
 * between storing and printing it), oldest first; after each batch, await `handoff` (the lines
 * left the process) and mark the batch handed off. Returns how many were replayed. Call it
 * before serving. At-least-once: a replayed line may repeat one printed just before a crash.
 */
export async function replayUnhandedOff(
  ledger: Ledger,
  print: (record: SetRecord) => void,
  handoff: () => Promise<void> | undefined,
  batch = REPLAY_BATCH,
): Promise<number> {
  let total = 0
  for (;;) {
    const rows = ledger.unhandedOff(batch)
    if (rows.length === 0) return total
    for (const row of rows) print(replayedRecordOf(row))
    await handoff()
    const byPeer = new Map<string, string[]>()
    for (const row of rows) {
      const list = byPeer.get(row.peer)
      if (list === undefined) byPeer.set(row.peer, [row.jti])
      else list.push(row.jti)
    }

    for (const [peer, jtis] of byPeer) ledger.markHandedOff(peer, jtis)
    total += rows.length
  }
}

/** The records a listener event prints (none for bookkeeping events). */
export function recordsOf(event: ListenerEvent): ListenRecord[] {
  switch (event.type) {
    case 'set': {
      const record: SetRecord = {
        binding: event.binding,
        claims: event.set.claims as Record<string, unknown>,
        iss: event.set.claims.iss,
        jti: event.jti,
        peer: event.peer,
        status: event.status,
        type: 'set',
        verified: event.set.verified,
      }
      const name = eventName(event.set)
      const subject = subjectOf(event.set)
      if (name !== undefined) record.event = name
      if (subject !== undefined) record.subject = subject
      if (event.verdict !== undefined) record.verdict = event.verdict
      return [record]
    }

    case 'rejected': {
      return [
        {
          binding: event.binding,
          description: clean(event.description, 500),
          err: clean(event.err, 64),
          jti: clean(event.jti, 200),
          peer: event.peer,
          repeat: event.repeat,
          type: 'rejected',
          ...(event.iss === undefined ? {} : {iss: clean(event.iss)}),
          ...(event.event === undefined ? {} : {event: clean(event.event)}),
        },
      ]
    }

    case 'deferred': {
      return [{binding: event.binding, description: clean(event.description, 500), jti: clean(event.jti), peer: event.peer, type: 'deferred'}]
    }

    case 'ack': {
      return [{jti: event.jti, peer: event.peer, type: 'ack'}]
    }

    case 'setErr': {
      return [{description: clean(event.description, 500), err: clean(event.err, 64), jti: event.jti, peer: event.peer, type: 'setErr'}]
    }

    case 'sent': {
      return event.jtis.map((jti) => ({binding: event.binding, jti, peer: event.peer, type: 'sent' as const}))
    }

    case 'queued': {
      return [{jti: event.jti, peer: event.peer, status: event.status, type: 'queued'}]
    }

    case 'abandoned': {
      return [{jti: event.jti, peer: event.peer, type: 'abandoned'}]
    }

    default: {
      return []
    }
  }
}

export function forwardRecordOf(result: ForwardResult): ListenRecord {
  return {
    jti: result.jti,
    ok: result.ok,
    type: 'forwarded',
    url: result.url,
    ...(result.status === undefined ? {} : {status: result.status}),
    ...(result.body === undefined ? {} : {body: result.body}),
    ...(result.error === undefined ? {} : {error: result.error}),
  }
}

/** One human line for a record. */
export function formatRecord(record: ListenRecord, c: ChalkInstance): string {
  switch (record.type) {
    case 'set': {
      const undecided = record.verdict === 'undecided' ? ' (undecided)' : ''
      const head =
        record.status === 'new'
          ? c.green.bold(`NEW${undecided}`)
          : record.status === 'replayed'
            ? c.yellow.bold(`REPLAYED${undecided}`)
            : c.dim('DUPLICATE (acked again, not processed again)')
      const label = record.verified === null ? c.dim('stored earlier') : record.verified ? c.green('VERIFIED') : c.red.bold('UNVERIFIED')
      const parts = [
        head,
        c.magenta.bold(record.event ?? '(no event)'),
        record.subject === undefined ? undefined : record.subject,
        `jti=${clean(record.jti, 100)}`,
        `iss=${clean(record.iss)}`,
        label,
        c.dim(record.status === 'replayed' ? `from ${record.peer}, stored before a restart, never printed` : `from ${record.peer} via ${record.binding}`),
      ]
      return parts.filter((part) => part !== undefined).join('  ')
    }

    case 'rejected': {
      return `${c.red.bold('REJECTED')} ${c.red(record.err)}  jti=${record.jti}${record.event === undefined ? '' : `  ${record.event}`}  ${record.description}${record.repeat ? c.dim(' (again)') : ''}  ${c.dim(`from ${record.peer} via ${record.binding}`)}`
    }

    case 'deferred': {
      return `${c.yellow.bold('DEFERRED')} jti=${record.jti}  ${record.description}  ${c.dim('(no ack, no setErr: the peer redelivers)')}`
    }

    case 'ack': {
      return `${c.green('ACKED by peer')}  jti=${clean(record.jti, 100)}  ${c.dim(record.peer)}`
    }

    case 'setErr': {
      return `${c.red('REJECTED by peer')} ${record.err}  jti=${clean(record.jti, 100)}  ${record.description}  ${c.dim(record.peer)}`
    }

    case 'sent': {
      return `${c.cyan('SENT')}  jti=${clean(record.jti, 100)}  ${c.dim(`to ${record.peer} via ${record.binding}`)}`
    }

    case 'queued': {
      return `${c.cyan('QUEUED')}  jti=${clean(record.jti, 100)}  ${c.dim(`for ${record.peer}${record.status === 'queued' ? '' : ` (${record.status})`}`)}`
    }

    case 'abandoned': {
      return `${c.red('ABANDONED')}  jti=${clean(record.jti, 100)}  ${c.dim(`${record.peer} never acknowledged it (retry cap reached)`)}`
    }

    case 'forwarded': {
      if (record.status === undefined) return `${c.red('FORWARD FAILED')}  jti=${clean(record.jti, 100)}  ${record.error?.message ?? ''}`
      const status = record.ok ? c.green(String(record.status)) : c.red(String(record.status))
      return `${c.cyan('FORWARDED')} ${status}  jti=${clean(record.jti, 100)}  ${c.dim(record.url)}${record.body ? `  ${record.body}` : ''}`
    }

    case 'listening': {
      return `listening on ${record.url}`
    }
  }
}

/** The counts line. */
export function formatCounts(counts: ListenerCounts, c: ChalkInstance): string {
  return [
    `${c.bold('received')} ${counts.received}`,
    `dup ${counts.duplicates}`,
    `${c.red('rejected')} ${counts.rejected}`,
    `queued ${counts.queued}`,
    `delivered ${counts.delivered}`,
    `${c.green('acked')} ${counts.acked}`,
  ].join(' · ')
}
