/**
 * The interactive view shared by `stream -i`, `listen -i` and `poll -i`.
 *
 * When SETs arrive the operator sees each one decoded (event short name, subject, issuer, time,
 * verdict) and decides: ack all, pick which to ack, reject some with an error code and
 * description, or defer (they stay undecided in the ledger; `pushpull ack` or a later review
 * decides them). A menu entry prints the table of pending acks in both directions.
 *
 * Prompts and the SET blocks go to stderr (stdout carries data only). Callers check first that a
 * terminal is there: `assertInteractive(this.jsonEnabled(), '--ack manual')`.
 *
 * Usage (a receiver in manual mode, so new SETs are stored `undecided`):
 *
 *   const result = await receiver.receive(peer, batch)
 *   const decisions = await reviewReceived(result.outcomes, {ledger, peer, theme: this.theme, signal: this.signal})
 *   // decisions are already applied with ledger.decide (pass apply: false to apply them yourself);
 *   // what is now owed goes out with the next message: receiver.owed(peer, n)
 */
import {Writable} from 'node:stream'

import {checkbox, input, select} from '@inquirer/prompts'
import type {ChalkInstance} from 'chalk'
import Table from 'cli-table3'

import {isPushpullError, PushpullError, SET_ERR_CODES} from '../lib/errors.js'
import {shortNameOf} from '../lib/events.js'
import type {Decision, Ledger, LedgerEntry} from '../lib/ledger.js'
import type {ReceiveOutcome} from '../lib/receiver.js'
import {describeSubject} from '../lib/subject.js'
import {sanitizeText} from '../lib/text.js'
import type {VerifiedSet} from '../lib/verify.js'
import {assertCanPrompt} from './prompts.js'
import {verificationLabel} from './render-set.js'
import type {Theme} from './theme.js'

export type {Decision} from '../lib/ledger.js'

/** What the view accepts: receiver outcomes (as they come back from `SetReceiver.receive`) or verified SETs. */
export type ReviewItem = ReceiveOutcome | VerifiedSet

export interface ReviewOptions {
  ledger: Ledger
  /** The ledger peer id the SETs came from. */
  peer: string
  theme: Theme
  /** Apply the decisions with `ledger.decide` before returning them. Default true. */
  apply?: boolean
  /** Aborts an open prompt (ERR_ABORTED). */
  signal?: AbortSignal
  /** Where prompts read keys. Default process.stdin. */
  input?: NodeJS.ReadableStream
  /** Where SET blocks, tables and prompts are written. Default process.stderr. */
  output?: NodeJS.WritableStream
  /** Rows per direction in the pending table. Default 20. */
  tableLimit?: number
}

/** The err codes the view offers when rejecting (RFC 8935 plus SSF `invalid_state`). */
export const REJECT_CODES: readonly string[] = SET_ERR_CODES

/** One SET as the view shows it. */
export interface ReviewRow {
  jti: string
  iss?: string | undefined
  event?: string | undefined
  subject?: string | undefined
  /** `iat` (or `toe`) as ISO time. */
  time?: string | undefined
  /** One-line verdict: VERIFIED / UNVERIFIED / rejected err / deferred. */
  verdict: string
  /** The operator can decide it (it is undecided in the ledger). */
  decidable: boolean
  /** Already decided or answered without the operator. */
  note?: string | undefined
}

/** Fail with a clear message naming the non-interactive flag when there is no terminal. */
export function assertInteractive(jsonEnabled: boolean, alternative = '--ack auto or --ack manual'): void {
  assertCanPrompt(jsonEnabled, 'the interactive view (-i)', alternative)
}

function clean(text: string, max = 200): string {
  return sanitizeText(text, max)
}

function isOutcome(item: ReviewItem): item is ReceiveOutcome {
  return typeof (item as ReceiveOutcome).status === 'string' && typeof (item as ReceiveOutcome).key === 'string'
}

function isoTime(seconds: unknown): string | undefined {
  if (typeof seconds !== 'number' || !Number.isFinite(seconds)) return undefined
  const date = new Date(seconds * 1000)
  return Number.isNaN(date.getTime()) ? undefined : date.toISOString()
}

function eventOf(set: VerifiedSet): string | undefined {
  const uri = Object.keys(set.claims.events)[0]
  return uri === undefined ? undefined : (shortNameOf(uri) ?? clean(uri))
}

function rowOfSet(set: VerifiedSet, c: ChalkInstance, decidable: boolean, note?: string): ReviewRow {
  const claims = set.claims as Record<string, unknown>
  return {
    decidable,
    event: eventOf(set),
    iss: clean(set.claims.iss),
    jti: set.claims.jti,
    note,
    subject: claims.sub_id === undefined ? undefined : describeSubject(claims.sub_id),
    time: isoTime(claims.toe) ?? isoTime(set.claims.iat),
    verdict: verificationLabel(set, c),
  }
}

/**
 * Turn what the caller received into rows. `undecidedJtis` holds the jtis the ledger still has
 * undecided for this peer: only those can be decided (a duplicate of a SET decided earlier cannot).
 */
export function reviewRows(items: readonly ReviewItem[], undecidedJtis: ReadonlySet<string>, c: ChalkInstance): ReviewRow[] {
  const rows: ReviewRow[] = []
  for (const item of items) {
    if (!isOutcome(item)) {
      rows.push(rowOfSet(item, c, undecidedJtis.has(item.claims.jti)))
      continue
    }

    switch (item.status) {
      case 'new':
      case 'duplicate': {
        const decidable = undecidedJtis.has(item.set.claims.jti)
        const note = decidable ? (item.status === 'duplicate' ? 'redelivered, still undecided' : undefined) : item.status === 'duplicate' ? 'duplicate, answered again' : 'acked automatically'
        rows.push(rowOfSet(item.set, c, decidable, note))
        break
      }

      case 'rejected': {
        rows.push({
          decidable: false,
          event: item.event,
          iss: item.iss === undefined ? undefined : clean(item.iss),
          jti: clean(item.key),
          note: item.repeat ? 'rejected again' : undefined,
          verdict: `${c.red.bold('REJECTED')} ${c.red(`${clean(item.setErr.err, 60)}: ${clean(item.setErr.description)}`)}`,
        })
        break
      }

      case 'deferred': {
        rows.push({
          decidable: false,
          jti: clean(item.key),
          note: 'the peer will redeliver it',
          verdict: `${c.yellow.bold('DEFERRED')} ${c.yellow(clean(item.error.message))}`,
        })
        break
      }
    }
  }

  return rows
}

/** The block one SET gets in the view. */
export function renderReviewRow(row: ReviewRow, index: number, c: ChalkInstance): string {
  const head = `${c.bold(`#${index + 1}`)} ${c.magenta.bold(row.event ?? '(no event)')}  ${c.dim('jti')} ${clean(row.jti)}`
  const lines = [head, `   ${row.verdict}`]
  if (row.subject !== undefined) lines.push(`   ${c.cyan('subject')} ${row.subject}`)
  if (row.iss !== undefined) lines.push(`   ${c.cyan('issuer ')} ${row.iss}`)
  if (row.time !== undefined) lines.push(`   ${c.cyan('time   ')} ${row.time}`)
  if (row.note !== undefined) lines.push(`   ${c.dim(row.note)}`)
  return lines.join('\n')
}

/** A short age that fits the table's column (at most four characters below 10,000 days). */
export function ageOf(ms: number): string {
  if (ms < 1000) return '<1s'
  const s = Math.floor(ms / 1000)
  if (s < 120) return `${s}s`
  const m = Math.floor(s / 60)
  if (m < 120) return `${m}m`
  const h = Math.floor(m / 60)
  if (h < 48) return `${h}h`
  return `${Math.floor(h / 24)}d`
}

/**
 * The pending acks with `peer`, both directions, as a cli-table3 drawing (humans only):
 * "we owe" = SETs received and undecided or decided but not yet answered; "peer owes" = SETs we
 * sent that are pending or in flight. `limit` rows per direction (default 20).
 */
export function pendingTable(ledger: Ledger, peer: string, options: {limit?: number; color?: ChalkInstance} = {}): string {
  const limit = options.limit ?? 20
  const weOwe: LedgerEntry[] = [
    ...ledger.list({direction: 'in', limit, owed: true, peer}),
    ...ledger.list({direction: 'in', limit, peer, states: ['undecided']}),
  ].slice(0, limit)
  const theyOwe = ledger.list({direction: 'out', limit, peer, states: ['pending', 'in_flight']})
  const stats = ledger.stats(peer)[0]
  const table = new Table({
    head: ['direction', 'jti', 'event', 'subject', 'state', 'age'],
    style: {head: options.color?.level ? ['cyan'] : [], border: []},
    wordWrap: true,
    colWidths: [12, 26, 30, 30, 14, 6],
  })
  for (const entry of weOwe) {
    const state = entry.state === 'undecided' ? 'undecided' : entry.state === 'rejected' ? `setErr ${clean(entry.err ?? '', 20)}` : 'ack owed'
    table.push(['we owe', clean(entry.jti, 60), clean(entry.event ?? '', 80), clean(entry.subject ?? '', 80), state, ageOf(entry.ageMs)])
  }

  for (const entry of theyOwe) {
    table.push(['peer owes', clean(entry.jti, 60), clean(entry.event ?? '', 80), clean(entry.subject ?? '', 80), `${entry.state} x${entry.attempts ?? 0}`, ageOf(entry.ageMs)])
  }

  const owedIn = stats === undefined ? 0 : stats.inbox.owed + stats.inbox.undecided
  const owedOut = stats === undefined ? 0 : stats.outbox.pending + stats.outbox.in_flight
  const title = `pending acks with ${clean(peer)}: we owe ${owedIn} (${stats?.inbox.undecided ?? 0} undecided), the peer owes ${owedOut}`
  if (weOwe.length === 0 && theyOwe.length === 0) return `${title}\n(nothing pending)`
  const shown = weOwe.length + theyOwe.length
  const more = owedIn + owedOut > shown ? `\n(${owedIn + owedOut - shown} more not shown)` : ''
  return `${title}\n${table.toString()}${more}`
}

/** A writable that forwards to `target` (with its terminal size) and never ends it. */
function keepOpen(target: NodeJS.WritableStream): NodeJS.WritableStream {
  if (target === process.stderr || target === process.stdout) return target
  const proxy = new Writable({
    write(chunk: Buffer | string, _encoding, done) {
      target.write(chunk)
      done()
    },
  })
  const size = target as {columns?: number; rows?: number; isTTY?: boolean}
  Object.defineProperties(proxy, {
    columns: {get: () => size.columns},
    isTTY: {get: () => size.isTTY},
    rows: {get: () => size.rows},
  })
  return proxy
}

type MenuChoice = 'ack-all' | 'pick-ack' | 'reject' | 'table' | 'defer'

function mapPromptError(error: unknown): unknown {
  if (isPushpullError(error)) return error
  const name = (error as {name?: string} | undefined)?.name
  if (name === 'AbortPromptError' || name === 'ExitPromptError' || name === 'CancelPromptError') {
    return new PushpullError('ERR_ABORTED', 'the interactive view was interrupted; undecided SETs stay undecided', {cause: error})
  }

  return error
}

/**
 * Show what arrived and let the operator decide the undecided SETs among `items`. Returns the
 * decisions taken (applied with `ledger.decide` unless `apply: false`); deferred SETs get none and
 * stay undecided. Items that need no decision (auto-acked, rejected, deferred) are shown for
 * context only. Resolves with [] at once when nothing is decidable.
 */
export async function reviewReceived(items: readonly ReviewItem[], options: ReviewOptions): Promise<Decision[]> {
  const {ledger, peer, theme} = options
  const c = theme.err
  const output = options.output ?? process.stderr
  const promptInput = options.input ?? process.stdin
  // Inquirer ends its output stream when a prompt is done; give it a fresh pass-through each time
  // so the caller's stream (a test's, or anything but stderr) stays open for the next prompt.
  const context = () => ({clearPromptOnDone: false, input: promptInput, output: keepOpen(output), signal: options.signal})
  const write = (text: string): void => {
    output.write(`${text}\n`)
  }

  const undecided = new Set(ledger.list({direction: 'in', limit: Math.max(1000, items.length * 2), peer, states: ['undecided']}).map((entry) => entry.jti))
  const rows = reviewRows(items, undecided, c)
  if (rows.length === 0) return []
  write(c.bold(`${rows.length} SET${rows.length === 1 ? '' : 's'} from ${clean(peer)}`))
  for (const [index, row] of rows.entries()) write(renderReviewRow(row, index, c))

  const decisions: Decision[] = []
  const seen = new Set<string>()
  let remaining = rows.filter((row) => {
    if (!row.decidable || seen.has(row.jti)) return false
    seen.add(row.jti)
    return true
  })
  const label = (row: ReviewRow): string => `${clean(row.jti, 60)}  ${row.event ?? ''}${row.subject === undefined ? '' : `  ${row.subject}`}`

  try {
    while (remaining.length > 0) {
      const choice = await select<MenuChoice>(
        {
          choices: [
            {name: `Ack all ${remaining.length}`, value: 'ack-all'},
            {name: 'Pick which to ack', value: 'pick-ack'},
            {name: 'Reject some (with an error code and description)', value: 'reject'},
            {name: 'Show pending acks (both directions)', value: 'table'},
            {name: `Defer ${remaining.length === 1 ? 'it' : 'the rest'} (decide later with pushpull ack)`, value: 'defer'},
          ],
          message: `${remaining.length} SET${remaining.length === 1 ? '' : 's'} to decide:`,
        },
        context(),
      )
      if (choice === 'defer') break
      if (choice === 'table') {
        write(pendingTable(ledger, peer, {color: c, limit: options.tableLimit}))
        continue
      }

      if (choice === 'ack-all') {
        for (const row of remaining) decisions.push({jti: row.jti, verdict: 'accepted'})
        remaining = []
        break
      }

      const picked = await checkbox<string>(
        {
          choices: remaining.map((row) => ({checked: choice === 'pick-ack', name: label(row), value: row.jti})),
          message: choice === 'pick-ack' ? 'Ack these (space toggles, enter confirms):' : 'Reject these (space toggles, enter confirms):',
        },
        context(),
      )
      if (picked.length === 0) continue
      const pickedSet = new Set(picked)
      if (choice === 'pick-ack') {
        for (const jti of picked) decisions.push({jti, verdict: 'accepted'})
      } else {
        const err = await select<string>({choices: REJECT_CODES.map((code) => ({name: code, value: code})), message: 'Error code:'}, context())
        const description = await input(
          {
            default: 'rejected by the operator',
            message: 'Description:',
            validate: (value) => (value.length <= 500 ? true : 'at most 500 characters'),
          },
          context(),
        )
        for (const jti of picked) decisions.push({description: clean(description, 500), err, jti, verdict: 'rejected'})
      }

      remaining = remaining.filter((row) => !pickedSet.has(row.jti))
    }
  } catch (error) {
    // What was decided before the interruption still counts.
    if (decisions.length > 0 && options.apply !== false) ledger.decide(peer, decisions)
    throw mapPromptError(error)
  }

  if (remaining.length > 0) write(c.yellow(`${remaining.length} SET${remaining.length === 1 ? '' : 's'} deferred: still undecided, no ack sent`))
  if (decisions.length > 0 && options.apply !== false) ledger.decide(peer, decisions)
  const acked = decisions.filter((d) => d.verdict === 'accepted').length
  const rejected = decisions.length - acked
  if (decisions.length > 0) write(c.dim(`decided: ${acked} to ack, ${rejected} to reject`))
  return decisions
}
