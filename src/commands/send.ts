import {Args, Flags} from '@oclif/core'

import {renderResult, renderSummary} from '../cli/report.js'
import {completeTemplate, readSetInputs, setInputFlags} from '../cli/set-input.js'
import {buildSigner, signFlags} from '../cli/sign-flags.js'
import {openStateLedger, stateFlags} from '../cli/state-flags.js'
import {stdinIsTty} from '../cli/stdin.js'
import {httpClientOptionsFrom, parseDuration, transportFlags} from '../cli/transport-flags.js'
import {BaseCommand} from '../cli/base-command.js'
import {delivererEntryFor, delivererNames, peerIdOf} from '../lib/bindings/index.js'
import {emptyOwed} from '../lib/bindings/types.js'
import {PushpullError} from '../lib/errors.js'
import {shortNameOf} from '../lib/events.js'
import type {Signer} from '../lib/keys.js'
import {Ledger, type OutgoingSet} from '../lib/ledger.js'
import {mintSet} from '../lib/mint.js'
import {DEFAULT_PUSH_CONCURRENCY} from '../lib/bindings/push.js'
import {DEFAULT_BATCH} from '../lib/bindings/multi-push.js'
import {deliverOutbox, DEFAULT_WAIT_MS, type SetResult, type SetResultStatus} from '../lib/sender.js'
import {decodeToken} from '../lib/set.js'
import {MemoryLedgerStorage} from '../lib/store.js'
import {describeSubject} from '../lib/subject.js'
import {EXPECTED_ERR, TAMPER_MODES, type TamperMode, tamperToken} from '../lib/tamper.js'
import {wsPeerIdOf} from '../lib/bindings/ws.js'
import {checkPeerUrl, createHttpClient} from '../lib/transport/http.js'
import {toWebSocketUrl} from '../lib/transport/ws-client.js'

const DEFAULT_ACK_TIMEOUT_MS = 10_000
const DEFAULT_RETRIES = 5

const duration = Flags.custom<number>({
  async parse(input, _context, options) {
    return parseDuration(input, options.name)
  },
})

export interface SendSummary {
  type: 'summary'
  peer: string
  via: string
  counts: Record<SetResultStatus, number>
}

interface Prepared extends OutgoingSet {
  claims: Record<string, unknown>
  tamper?: {mode: TamperMode; expectedErr: string}
}

export default class Send extends BaseCommand<typeof Send> {
  static override args = {
    file: Args.string({description: 'Event files or compact SETs (one per line); "-" for stdin. Tokens are sent unchanged.', ignoreStdin: true, required: false}),
  }

  static override description = `Send SETs to a receiver and report, per SET, whether it was accepted, acked, rejected or is still pending.

Input is what "mint" takes (event files, NDJSON, --event/--subject/--set, --count), plus ready-made
compact tokens, sent unchanged. SETs go through the durable outbox (--state): what is not
acknowledged when send gives up stays there, and the next send to the same URL resends it.

Bindings (--via): push (RFC 8935, default), pushpull (Communication Objects over HTTP; acks may
come late, send keeps asking until --wait ends) and multi-push (application/secevents+json).
Retries: network errors, timeouts, 429/5xx (Retry-After honoured, with jitter) and malformed
responses are retried with exponential backoff; 400 rejects that SET; 401/403 stop at once.

Exit status: 0 when every SET was accepted or acked; 5 when the peer rejected any (or any was
abandoned after --retries); 4 when some are still pending (no ack before --wait ended; they stay
in the outbox); 3 for credentials. With --tamper: 0 when the receiver rejected every broken SET.`

  static override examples = [
    {
      command: '<%= config.bin %> send --to http://127.0.0.1:8935/events --memory-state --secret s3cret --iss https://idp.example --aud https://rp.example --event caep.session-revoked --subject email:ana@example.com',
      description: 'Push one HS256 SET to a local "pushpull listen"',
    },
    {
      command: '<%= config.bin %> send --to http://127.0.0.1:8935/pushpull --via pushpull --memory-state --secret s3cret --iss https://idp.example --event caep.session-revoked --subject email:ana@example.com --count 5 --json',
      description: 'Five SETs in one Communication Object, results as JSON lines',
    },
    {
      command: '<%= config.bin %> send --to https://rp.example/events --dry-run --unsigned --iss https://idp.example --event risc.account-disabled --subject email:ana@example.com',
      description: 'Show the SETs and the requests without sending anything',
    },
    {
      command: '<%= config.bin %> send --to http://127.0.0.1:8935/events --memory-state --tamper signature --secret s3cret --iss https://idp.example --event caep.session-revoked --subject email:ana@example.com',
      description: 'Check that a receiver rejects a SET with a broken signature',
    },
  ]

  static override flags = {
    ...transportFlags,
    ...signFlags,
    ...setInputFlags,
    ...stateFlags,
    'ack-timeout': duration({
      description: `Resend a SET that was sent but not acknowledged after this long (pushpull, multi-push). [default: ${DEFAULT_ACK_TIMEOUT_MS / 1000}s]`,
    }),
    batch: Flags.integer({default: DEFAULT_BATCH, description: 'SETs per request for the batching bindings (pushpull, multi-push).', min: 1}),
    concurrency: Flags.integer({default: DEFAULT_PUSH_CONCURRENCY, description: 'Push requests in flight at once (--via push).', min: 1}),
    'dry-run': Flags.boolean({default: false, description: 'Print the SETs and the requests that would be sent (never the bearer token); send nothing, store nothing.'}),
    retries: Flags.integer({default: DEFAULT_RETRIES, description: 'Resends of a SET before it is abandoned.', min: 0}),
    tamper: Flags.string({
      description: 'Send deliberately broken SETs and report whether the receiver rejected each (signature, iss, aud, kid, typ: re-signed with the given key; unsigned). Uses an in-memory outbox.',
      options: [...TAMPER_MODES],
    }),
    to: Flags.string({description: 'Receiver endpoint URL (http:// or https://).', required: true}),
    via: Flags.string({description: 'Binding. [default: push]', options: delivererNames()}),
    wait: duration({description: `Give up waiting for acknowledgements after this long; what is left is reported pending and stays in the outbox. [default: ${DEFAULT_WAIT_MS / 1000}s]`}),
  }

  static override strict = false

  public async run(): Promise<SendSummary> {
    const {argv} = await this.parse(Send)
    const files = argv.map(String)
    const {flags} = this
    const url = /^wss?:\/\//i.test(flags.to) ? toWebSocketUrl(flags.to) : checkPeerUrl(flags.to)
    const entry = delivererEntryFor(url, flags.via)
    // WebSocket peers share the ledger peer id with the HTTP form of the URL (stream, --fallback http).
    const peer = entry.name === 'ws' ? wsPeerIdOf(url) : peerIdOf(url)
    if (files.length === 0 && flags.event === undefined && stdinIsTty()) {
      throw new PushpullError('ERR_USAGE', 'nothing to send: give --event, event files or tokens, or NDJSON on stdin')
    }

    const tamper = flags.tamper as TamperMode | undefined
    const sets = await this.prepare(files, tamper)
    if (sets.length === 0) throw new PushpullError('ERR_USAGE', 'the input held nothing to send')

    const httpOptions = await httpClientOptionsFrom(flags, {userAgent: `pushpull/${this.config.version}`, warn: (m) => this.warnLoud(m)})
    const client = createHttpClient(httpOptions)
    try {
      const deliverer = await entry.create({client, concurrency: flags.concurrency, http: httpOptions, maxBatch: flags.batch, signal: this.signal, url: url.href})
      try {
        if (flags['dry-run']) return this.dryRun(sets, deliverer.preview.bind(deliverer), deliverer.maxBatch, peer, entry.name)
        return await this.deliver(sets, deliverer, peer, entry.name, tamper)
      } finally {
        await deliverer.close()
      }
    } finally {
      await client.close()
    }
  }

  private async prepare(files: string[], tamper: TamperMode | undefined): Promise<Prepared[]> {
    const {flags} = this
    let signer: Signer | undefined
    const signerOf = async (): Promise<Signer> => {
      signer ??= await buildSigner(flags, (message) => this.warnLoud(message))
      return signer
    }

    const out: Prepared[] = []
    const defaults = {aud: flags.aud, iss: flags.iss, txn: flags.txn}
    for await (const item of readSetInputs({assignments: flags.set, count: flags.count, event: flags.event, files, subject: flags.subject})) {
      if (this.signal.aborted) throw this.signal.reason
      let token: string
      if (item.kind === 'token') {
        token = item.token
      } else {
        const s = await signerOf()
        token = (await mintSet(completeTemplate(item.template, defaults, item.source), s)).token
      }

      let tampered: Prepared['tamper']
      if (tamper !== undefined) {
        const needsKey = tamper !== 'signature' && tamper !== 'unsigned'
        const result = await tamperToken(token, tamper, needsKey ? await signerOf() : undefined)
        token = result.token
        tampered = {expectedErr: result.expectedErr, mode: tamper}
      }

      const {payload} = decodeToken(token)
      const jti = payload.jti
      if (typeof jti !== 'string' || jti === '') throw new PushpullError('ERR_SET_CLAIMS', `${item.source}: the SET has no "jti" string`)
      const events = payload.events !== null && typeof payload.events === 'object' ? Object.keys(payload.events) : []
      const event = events[0] === undefined ? undefined : (shortNameOf(events[0]) ?? events[0])
      const subject = payload.sub_id === undefined ? undefined : describeSubject(payload.sub_id)
      out.push({claims: payload, event, jti, subject, token, ...(tampered === undefined ? {} : {tamper: tampered})})
    }

    if (signer?.alg === 'none' && tamper === undefined) this.warnLoud('sending UNSIGNED SETs (alg "none"): receivers refuse them unless told to accept unsigned SETs')
    return out
  }

  private dryRun(sets: Prepared[], preview: (s: Array<{jti: string; token: string; attempt: number}>, owed: ReturnType<typeof emptyOwed>) => Array<{method: string; url: string; headers: Record<string, string>; body: string}>, maxBatch: number, peer: string, via: string): SendSummary {
    const json = this.jsonEnabled()
    for (const set of sets) {
      if (json) this.emitJson({claims: set.claims, jti: set.jti, token: set.token, type: 'set'})
      else this.log(`${this.theme.out.bold('SET')} ${set.jti}\n${set.token}\n${JSON.stringify(set.claims, null, 2)}\n`)
    }

    for (let start = 0; start < sets.length; start += maxBatch) {
      const chunk = sets.slice(start, start + maxBatch).map((set) => ({attempt: 1, jti: set.jti, token: set.token}))
      for (const request of preview(chunk, emptyOwed())) {
        if (json) this.emitJson({...request, type: 'request'})
        else {
          const headers = Object.entries(request.headers).map(([name, value]) => `${name}: ${value}`).join('\n')
          this.log(`${this.theme.out.bold(`${request.method} ${request.url}`)}\n${headers}\n\n${request.body}\n`)
        }
      }
    }

    this.note(`dry run: ${sets.length} SET(s) to ${peer} via ${via}; nothing was sent`)
    return {counts: {abandoned: 0, accepted: 0, acked: 0, pending: sets.length, rejected: 0}, peer, type: 'summary', via}
  }

  private async deliver(sets: Prepared[], deliverer: Parameters<typeof deliverOutbox>[0]['deliverer'], peer: string, via: string, tamper: TamperMode | undefined): Promise<SendSummary> {
    const {flags} = this
    const retry = {ackTimeoutMs: flags['ack-timeout'] ?? DEFAULT_ACK_TIMEOUT_MS, maxAttempts: flags.retries + 1}
    // Tampered SETs never enter the durable outbox: a later send must not resend them.
    const ledger = tamper === undefined ? openStateLedger(flags, {retry}) : new Ledger({retry, storage: new MemoryLedgerStorage()})
    const json = this.jsonEnabled()
    const byJti = new Map(sets.map((set) => [set.jti, set]))
    const emit = (result: SetResult): void => {
      const set = byJti.get(result.jti)
      const tamperInfo = set?.tamper === undefined ? undefined : {...set.tamper, asExpected: result.status === 'rejected', errMatches: result.err === set.tamper.expectedErr}
      if (json) this.emitJson(tamperInfo === undefined ? result : {...result, tamper: tamperInfo})
      else {
        const extra = tamperInfo === undefined ? '' : this.theme.out.dim(` [tamper ${tamperInfo.mode}: ${tamperInfo.asExpected ? 'rejected as it should be' : 'NOT REJECTED'}${tamperInfo.asExpected && !tamperInfo.errMatches ? `, expected err ${tamperInfo.expectedErr}` : ''}]`)
        this.log(renderResult(result, this.theme.out, extra))
      }
    }

    try {
      const enqueued = ledger.enqueue(peer, sets.map(({event, jti, subject, token}) => ({event, jti, subject, token})))
      const jtis: string[] = []
      const reused: SetResult[] = []
      for (const item of enqueued) {
        if (item.status === 'jti-reused') {
          reused.push({attempts: 0, description: 'this jti was already sent to this peer and finished (acked, rejected or abandoned); a new SET needs a new jti', err: 'jti_reused', jti: item.jti, status: 'rejected', type: 'result'})
        } else {
          jtis.push(item.jti)
        }
      }

      for (const result of reused) emit(result)
      const summary = await deliverOutbox({
        deliverer,
        jtis,
        ledger,
        onResult: emit,
        onRetry: ({delayMs, error, jtis: retried}) => this.note(`retrying ${retried.length} SET(s) in ${(delayMs / 1000).toFixed(1)} s: ${error.message}`),
        onUnhandledSets: (count) => this.warnLoud(`the peer sent ${count} SET(s) back; they are not acknowledged here (use "pushpull poll --via pushpull" to receive them)`),
        peer,
        signal: this.signal,
        waitMs: flags.wait ?? DEFAULT_WAIT_MS,
      })
      const counts = {...summary.counts}
      counts.rejected += reused.length
      if (!json) this.note(`${renderSummary(counts, this.theme.err)} (${peer} via ${via})`)
      if (summary.stoppedBy !== undefined) throw summary.stoppedBy
      this.failOn(counts, tamper, sets.length)
      return {counts, peer, type: 'summary', via}
    } finally {
      ledger.close()
    }
  }

  private failOn(counts: Record<SetResultStatus, number>, tamper: TamperMode | undefined, total: number): void {
    const taken = counts.accepted + counts.acked
    if (tamper !== undefined) {
      if (taken > 0) {
        throw new PushpullError('ERR_PEER_PROTOCOL', `the receiver accepted ${taken} of ${total} SET(s) broken with --tamper ${tamper} (a conforming receiver answers ${EXPECTED_ERR[tamper]})`, {details: {counts}})
      }

      if (counts.pending + counts.abandoned > 0) {
        throw new PushpullError('ERR_TIMEOUT', `${counts.pending + counts.abandoned} tampered SET(s) got no answer`, {details: {counts}})
      }

      return
    }

    if (counts.rejected > 0) throw new PushpullError('ERR_PEER_REJECTED', `the peer rejected ${counts.rejected} of ${total} SET(s)`, {details: {counts}})
    if (counts.abandoned > 0) {
      throw new PushpullError('ERR_RETRIES_EXHAUSTED', `${counts.abandoned} SET(s) abandoned after ${this.flags.retries + 1} attempts`, {details: {counts}})
    }

    if (counts.pending > 0) {
      throw new PushpullError('ERR_TIMEOUT', `${counts.pending} SET(s) not acknowledged before --wait ran out; they stay in the outbox and the next send to this URL resends them`, {details: {counts}})
    }
  }
}
