/** Human rendering of per-SET results (`send`) and received SETs (`poll`). Data only: no I/O. */
import type {ChalkInstance} from 'chalk'

import type {ReceiveOutcome} from '../lib/receiver.js'
import type {SetResult, SetResultStatus} from '../lib/sender.js'
import {describeSubject} from '../lib/subject.js'
import {sanitizeText} from '../lib/text.js'
import {shortNameOf} from '../lib/events.js'

const ICON: Readonly<Record<SetResultStatus, string>> = {abandoned: '✘', accepted: '✔', acked: '✔', pending: '…', rejected: '✘'}

function colourOf(status: SetResultStatus, c: ChalkInstance): ChalkInstance {
  if (status === 'accepted' || status === 'acked') return c.green
  if (status === 'pending') return c.yellow
  return c.red
}

/** One line per SET: icon, status, jti, attempts, and the peer's err/description. */
export function renderResult(result: SetResult, c: ChalkInstance, extra = ''): string {
  const colour = colourOf(result.status, c)
  const why = result.err === undefined && result.description === undefined ? '' : ` ${c.bold(sanitizeText(result.err ?? '', 100))}${result.description ? `: ${sanitizeText(result.description, 300)}` : ''}`
  const attempts = c.dim(` (attempt${result.attempts === 1 ? '' : 's'} ${result.attempts})`)
  return `${colour(`${ICON[result.status]} ${result.status.padEnd(9)}`)} ${sanitizeText(result.jti, 200)}${attempts}${why}${extra}`
}

export function renderSummary(counts: Readonly<Record<SetResultStatus, number>>, c: ChalkInstance): string {
  const parts = (Object.keys(counts) as SetResultStatus[]).filter((status) => counts[status] > 0).map((status) => colourOf(status, c)(`${counts[status]} ${status}`))
  return parts.length === 0 ? 'nothing sent' : parts.join(', ')
}

/** The --json record for a received SET (`{type: 'set' | 'rejected', ...}`), or undefined for deferred ones. */
export function receivedRecord(peer: string, outcome: ReceiveOutcome): Record<string, unknown> | undefined {
  if (outcome.status === 'new' || outcome.status === 'duplicate') {
    const {claims} = outcome.set
    const uri = Object.keys(claims.events)[0]
    return {
      claims,
      event: uri === undefined ? undefined : (shortNameOf(uri) ?? uri),
      iss: claims.iss,
      jti: claims.jti,
      peer,
      status: outcome.status,
      subject: claims.sub_id === undefined ? undefined : describeSubject(claims.sub_id),
      type: 'set',
      verified: outcome.set.verified,
    }
  }

  if (outcome.status === 'rejected') {
    return {description: outcome.setErr.description, err: outcome.setErr.err, jti: outcome.key, peer, type: 'rejected'}
  }

  return undefined
}

/** One readable line per received SET. */
export function renderReceived(outcome: ReceiveOutcome, c: ChalkInstance): string {
  const key = sanitizeText(outcome.key, 200)
  if (outcome.status === 'new' || outcome.status === 'duplicate') {
    const {claims} = outcome.set
    const uri = Object.keys(claims.events)[0] ?? ''
    const event = sanitizeText(shortNameOf(uri) ?? uri, 200)
    const subject = claims.sub_id === undefined ? '' : ` ${sanitizeText(describeSubject(claims.sub_id), 200)}`
    const label = outcome.set.verified ? c.green('verified') : c.red.bold('UNVERIFIED')
    const status = outcome.status === 'new' ? c.green.bold('new      ') : c.dim('duplicate')
    const undecided = outcome.status === 'new' && outcome.verdict === 'undecided' ? c.yellow(' (undecided: pushpull ack)') : ''
    return `${status} ${c.magenta.bold(event)}${subject} ${c.dim(`jti ${key} iss ${sanitizeText(claims.iss, 200)}`)} ${label}${undecided}`
  }

  if (outcome.status === 'rejected') {
    return `${c.red.bold('rejected ')} ${key} ${c.bold(sanitizeText(outcome.setErr.err, 100))}: ${sanitizeText(outcome.setErr.description, 300)}`
  }

  return `${c.yellow('deferred ')} ${key} ${sanitizeText(outcome.error.message, 300)} (not acked; the peer will redeliver it)`
}
