/**
 * What `pushpull listen` prints: one record per listener event (a readable line with colour on a
 * TTY, or one NDJSON record under --json), and a live line of counts on stderr when stderr is a
 * terminal. Data (SETs received, acks and setErrs from peers, relay results) goes to stdout;
 * request errors and the counts line go to stderr. Peer text is sanitised before it is shown.
 */
import type {ChalkInstance} from 'chalk'

import {shortNameOf} from '../lib/events.js'
import type {ForwardResult} from '../lib/forwarder.js'
import type {ListenerCounts, ListenerEvent} from '../lib/server.js'
import {describeSubject} from '../lib/subject.js'
import {sanitizeText} from '../lib/text.js'
import type {VerifiedSet} from '../lib/verify.js'

/** `{type:'set'}` record (phase-2 shared format). */
export interface SetRecord {
  type: 'set'
  peer: string
  binding: string
  jti: string
  iss: string
  event?: string
  subject?: string
  verified: boolean
  status: 'new' | 'duplicate'
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

function eventName(set: VerifiedSet): string | undefined {
  const uri = Object.keys(set.claims.events)[0]
  return uri === undefined ? undefined : (shortNameOf(uri) ?? clean(uri))
}

function subjectOf(set: VerifiedSet): string | undefined {
  const subject = (set.claims as Record<string, unknown>).sub_id
  if (subject !== undefined) return clean(describeSubject(subject))
  const first = Object.values(set.claims.events)[0] as Record<string, unknown> | undefined
  return first?.subject === undefined ? undefined : clean(describeSubject(first.subject))
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
      const head = record.status === 'new' ? c.green.bold(record.verdict === 'undecided' ? 'NEW (undecided)' : 'NEW') : c.dim('DUPLICATE (acked again, not processed again)')
      const label = record.verified ? c.green('VERIFIED') : c.red.bold('UNVERIFIED')
      const parts = [
        head,
        c.magenta.bold(record.event ?? '(no event)'),
        record.subject === undefined ? undefined : record.subject,
        `jti=${clean(record.jti, 100)}`,
        `iss=${clean(record.iss)}`,
        label,
        c.dim(`from ${record.peer} via ${record.binding}`),
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
