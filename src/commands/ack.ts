import {checkbox} from '@inquirer/prompts'
import {Args, Flags} from '@oclif/core'

import {BaseCommand} from '../cli/base-command.js'
import {pendingTable} from '../cli/interactive.js'
import {assertCanPrompt} from '../cli/prompts.js'
import {openStateLedger, stateFlags} from '../cli/state-flags.js'
import {httpClientOptionsFrom, transportFlags} from '../cli/transport-flags.js'
import {peerIdOf, pollerEntryFor, pollerNames} from '../lib/bindings/index.js'
import type {SetErr} from '../lib/communication.js'
import {PushpullError, SET_ERR_CODES} from '../lib/errors.js'
import type {Ledger, LedgerEntry, OwedReport} from '../lib/ledger.js'
import {sanitizeText} from '../lib/text.js'
import {checkPeerUrl, createHttpClient} from '../lib/transport/http.js'

/** Most rows read from the ledger per direction. */
const MAX_ROWS = 10_000

export interface AckListEntry {
  jti: string
  iss?: string | undefined
  event?: string | undefined
  subject?: string | undefined
  state: string
  ageMs: number
}

export interface AckList {
  type: 'list'
  peer: string
  /** SETs received from the peer that we have not answered yet (undecided, or ack/setErr owed). */
  weOwe: AckListEntry[]
  /** SETs we sent the peer that it has not acknowledged yet. */
  peerOwes: AckListEntry[]
}

export interface AckSummary {
  type: 'summary'
  peer: string
  via: string
  ack: string[]
  setErrs: Record<string, SetErr>
}

function entryOf(entry: LedgerEntry): AckListEntry {
  const state = entry.direction === 'in' ? (entry.state === 'undecided' ? 'undecided' : entry.state === 'rejected' ? 'setErr owed' : 'ack owed') : entry.state
  return {ageMs: entry.ageMs, event: entry.event, iss: entry.iss, jti: entry.jti, state, subject: entry.subject}
}

function weOwe(ledger: Ledger, peer: string): LedgerEntry[] {
  const seen = new Set<string>()
  const out: LedgerEntry[] = []
  for (const entry of [...ledger.list({direction: 'in', limit: MAX_ROWS, peer, states: ['undecided']}), ...ledger.list({direction: 'in', limit: MAX_ROWS, owed: true, peer})]) {
    const key = `${entry.iss ?? ''}\u0000${entry.jti}`
    if (seen.has(key)) continue
    seen.add(key)
    out.push(entry)
  }

  return out
}

export default class Ack extends BaseCommand<typeof Ack> {
  static override args = {
    jti: Args.string({description: 'jti of a SET received from the peer; several may be given. Default: every SET we owe the peer an answer for.', required: false}),
  }

  static override description = `Acknowledge (or reject) SETs received from a transmitter, and list what is pending in both directions.

Without JTIs, answers every SET the ledger says we owe the peer at --to, including SETs stored
undecided by "poll --ack manual". --err CODE --description TEXT sends them as setErrs instead of
acks. Over RFC 8936 (--via poll) this is one ack-only poll request (maxEvents 0, returnImmediately
true); over pushpull (--via pushpull) a Communication Object {ack, setErrs}.

--list prints what we owe the peer and what the peer owes us (jti, event, subject, age) and sends
nothing. -i picks the SETs to answer from a checkbox list (needs a terminal).`

  static override examples = [
    {command: '<%= config.bin %> ack --to http://127.0.0.1:8935/poll --list', description: 'What is pending with a transmitter'},
    {command: '<%= config.bin %> ack --to http://127.0.0.1:8935/poll', description: 'Acknowledge everything owed to it'},
    {command: '<%= config.bin %> ack 3d0c3cf3-1b3c-4a9e-9a57-6a3c2b0d8e11 --to http://127.0.0.1:8935/poll --err invalid_audience --description "not for us"', description: 'Reject one SET'},
  ]

  static override flags = {
    ...transportFlags,
    ...stateFlags,
    description: Flags.string({dependsOn: ['err'], description: 'Human-readable description sent with --err.'}),
    err: Flags.string({description: 'Send setErrs with this error code instead of acks.', options: [...SET_ERR_CODES]}),
    interactive: Flags.boolean({char: 'i', default: false, description: 'Pick the SETs to answer from a checkbox list (needs a terminal).', exclusive: ['list']}),
    list: Flags.boolean({default: false, description: 'List pending SETs in both directions; send nothing.'}),
    to: Flags.string({description: 'Transmitter endpoint URL (the one you polled).', required: true}),
    via: Flags.string({default: 'poll', description: 'Binding.', options: pollerNames()}),
  }

  static override strict = false

  public async run(): Promise<AckList | AckSummary> {
    const {argv} = await this.parse(Ack)
    const jtis = [...new Set(argv.map(String))]
    const {flags} = this
    const url = checkPeerUrl(flags.to)
    const peer = peerIdOf(url)
    const entry = pollerEntryFor(flags.via)
    if (flags.interactive) {
      if (jtis.length > 0) throw new PushpullError('ERR_USAGE', '-i picks the SETs itself; drop the JTI arguments or drop -i')
      assertCanPrompt(this.jsonEnabled(), 'ack -i', 'JTI arguments (or no arguments for every owed SET)')
    }

    const ledger = openStateLedger(flags)
    try {
      if (flags.list) return this.list(ledger, peer)
      const owedBefore = weOwe(ledger, peer)
      let selected = jtis
      if (flags.interactive) {
        if (owedBefore.length === 0) {
          this.note(`nothing is owed to ${peer}`)
          return {ack: [], peer, setErrs: {}, type: 'summary', via: entry.name}
        }

        selected = await checkbox(
          {
            choices: owedBefore.map((e) => ({
              name: `${sanitizeText(e.jti, 60)}  ${sanitizeText(e.event ?? '', 40)}  ${sanitizeText(e.subject ?? '', 40)}  ${entryOf(e).state}`,
              value: e.jti,
            })),
            message: `SETs to ${flags.err === undefined ? 'acknowledge' : `reject with ${flags.err}`}`,
          },
          {output: process.stderr, signal: this.signal},
        )
        if (selected.length === 0) {
          this.note('nothing selected; nothing sent')
          return {ack: [], peer, setErrs: {}, type: 'summary', via: entry.name}
        }
      }

      const report = this.decideAndCollect(ledger, peer, owedBefore, selected)
      if (report.ack.length === 0 && report.setErrs.size === 0) {
        this.note(`nothing is owed to ${peer}; nothing sent`)
        return {ack: [], peer, setErrs: {}, type: 'summary', via: entry.name}
      }

      const httpOptions = await httpClientOptionsFrom(flags, {userAgent: `pushpull/${this.config.version}`, warn: (m) => this.warnLoud(m)})
      const client = createHttpClient(httpOptions)
      try {
        const poller = entry.create({client, http: httpOptions, url: url.href})
        await poller.acknowledge(report, this.signal)
      } finally {
        await client.close()
      }

      ledger.markDelivered(peer, [...report.ack, ...report.setErrs.keys()])
      if (!this.jsonEnabled()) {
        for (const jti of report.ack) this.log(`${this.theme.out.green('✔ acked   ')} ${sanitizeText(jti, 200)}`)
        for (const [jti, setErr] of report.setErrs) this.log(`${this.theme.out.red('✘ setErr  ')} ${sanitizeText(jti, 200)} ${setErr.err}${setErr.description ? `: ${sanitizeText(setErr.description, 200)}` : ''}`)
        this.note(`sent ${report.ack.length} ack(s) and ${report.setErrs.size} setErr(s) to ${peer}`)
      }

      return {ack: report.ack, peer, setErrs: Object.fromEntries(report.setErrs), type: 'summary', via: entry.name}
    } finally {
      ledger.close()
    }
  }

  private list(ledger: Ledger, peer: string): AckList {
    const result: AckList = {
      peer,
      peerOwes: ledger.list({direction: 'out', limit: MAX_ROWS, peer, states: ['pending', 'in_flight']}).map((e) => entryOf(e)),
      type: 'list',
      weOwe: weOwe(ledger, peer).map((e) => entryOf(e)),
    }
    if (!this.jsonEnabled()) this.log(pendingTable(ledger, peer, {color: this.theme.out}))
    return result
  }

  /** Decide undecided SETs in scope, then collect the report for the selection (or everything owed). */
  private decideAndCollect(ledger: Ledger, peer: string, owedBefore: LedgerEntry[], selected: readonly string[]): OwedReport {
    const {flags} = this
    const rejected = flags.err !== undefined
    const setErr: SetErr = {description: flags.description ?? '', err: flags.err ?? 'invalid_request'}
    const scope = selected.length > 0 ? new Set(selected) : undefined
    const known = new Set(owedBefore.map((e) => e.jti))
    const toDecide = owedBefore.filter((e) => e.state === 'undecided' && (scope === undefined || scope.has(e.jti)))
    const decisions = [...new Set(toDecide.map((e) => e.jti))].map((jti) => ({
      description: rejected ? setErr.description : undefined,
      err: rejected ? setErr.err : undefined,
      jti,
      verdict: rejected ? ('rejected' as const) : ('accepted' as const),
    }))
    if (decisions.length > 0) ledger.decide(peer, decisions)

    const owed = ledger.owed(peer, MAX_ROWS)
    const report: OwedReport = {ack: [], setErrs: new Map()}
    for (const jti of owed.ack) if (scope === undefined || scope.has(jti)) report.ack.push(jti)
    for (const [jti, value] of owed.setErrs) if (scope === undefined || scope.has(jti)) report.setErrs.set(jti, value)
    // Explicit jtis the ledger does not owe (unknown, or answered before): send what the flags say.
    for (const jti of selected) {
      if (report.ack.includes(jti) || report.setErrs.has(jti)) continue
      if (!known.has(jti)) this.warnLoud(`${sanitizeText(jti, 100)} is not owed to ${peer} in the ledger; sending it anyway`)
      if (rejected) report.setErrs.set(jti, setErr)
      else report.ack.push(jti)
    }

    // An explicit --err overrides an owed ack for the selected SETs, and vice versa is not allowed silently.
    if (rejected && scope !== undefined) {
      for (const jti of [...report.ack]) {
        report.ack.splice(report.ack.indexOf(jti), 1)
        report.setErrs.set(jti, setErr)
      }
    }

    return report
  }
}
