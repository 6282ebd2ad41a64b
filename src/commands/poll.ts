import {Args, Flags} from '@oclif/core'

import {BaseCommand} from '../cli/base-command.js'
import {stdoutFlushed} from '../cli/stdout.js'
import {assertInteractive, reviewReceived} from '../cli/interactive.js'
import {issuerFlags, openVerification} from '../cli/issuer-flag.js'
import {receivedRecord, renderReceived} from '../cli/report.js'
import {openStateLedger, stateFlags} from '../cli/state-flags.js'
import {httpClientOptionsFrom, transportFlags} from '../cli/transport-flags.js'
import {verifyFlags} from '../cli/verify-flags.js'
import {peerIdOf, pollerEntryFor, pollerNames} from '../lib/bindings/index.js'
import {DEFAULT_MAX_DRAIN_POLLS, type PollSessionSummary, runPollSession} from '../lib/poll-session.js'
import {SetReceiver} from '../lib/receiver.js'
import {checkPeerUrl, createHttpClient} from '../lib/transport/http.js'
import type {SetVerifier} from '../lib/verify.js'

/** Headers timeout for long polls when --timeout is not given: a transmitter may hold the request this long. */
const LONG_POLL_TIMEOUT_MS = 60_000

/** The `--json` summary record: the session's counts, without its error objects. */
export interface PollSummary extends Omit<PollSessionSummary, 'flushError' | 'stoppedBy'> {
  type: 'summary'
  peer: string
  via: string
}

export default class Poll extends BaseCommand<typeof Poll> {
  static override args = {
    url: Args.string({description: 'Transmitter endpoint URL (RFC 8936 poll endpoint, or a pushpull endpoint with --via pushpull).', required: true}),
  }

  static override description = `Poll a transmitter for SETs (RFC 8936, or the pushpull HTTP binding), verify them, store them, and acknowledge them.

Every SET received is reported back: acked when valid, in setErrs with the matching err when not
(invalid_key for a bad signature, invalid_issuer, invalid_audience, invalid_request). A one-shot
poll sends a poll request; while the transmitter answers moreAvailable it polls again at once
(returnImmediately, acking the previous batch on the way) until moreAvailable is false, --max-events
SETs were received in total, or ${DEFAULT_MAX_DRAIN_POLLS} requests were made; then one ack-only request, so
nothing is left owed by accident.
--follow loops with long polls, backs off on errors (Retry-After honoured) and survives transmitter
restarts; Ctrl-C sends one last ack-only request and exits 130.

--ack manual stores valid SETs undecided: "pushpull ack --to URL" acknowledges them later.
-i shows each SET and asks: ack all, pick, reject with a code, or leave for later.
Without --jwks/--verify-key/--secret nothing is verified and SETs are shown UNVERIFIED.`

  static override examples = [
    {command: '<%= config.bin %> poll http://127.0.0.1:8935/poll --memory-state --return-immediately --secret s3cret', description: 'One RFC 8936 poll against a local "pushpull listen"'},
    {command: '<%= config.bin %> poll http://127.0.0.1:8935/poll --memory-state --follow --jwks https://idp.example/jwks.json --json', description: 'Keep polling, print received SETs as JSON lines'},
    {command: '<%= config.bin %> poll http://127.0.0.1:8935/pushpull --via pushpull --memory-state --secret s3cret', description: 'Poll over the pushpull HTTP binding'},
    {
      command: '<%= config.bin %> poll http://127.0.0.1:8935/poll --issuer http://127.0.0.1:8935 --allow-http --token-file rx.token --memory-state --return-immediately',
      description: 'Poll an SSF stream of "pushpull listen --ssf", verifying with the discovered jwks_uri and issuer',
    },
  ]

  static override flags = {
    ...verifyFlags,
    ...transportFlags,
    ...issuerFlags,
    ...stateFlags,
    ack: Flags.string({
      default: 'auto',
      description: 'auto: acknowledge valid SETs on the next request. manual: store them undecided for "pushpull ack".',
      options: ['auto', 'manual'],
    }),
    follow: Flags.boolean({char: 'f', default: false, description: 'Keep polling (long polls) until Ctrl-C; back off and retry on errors.'}),
    interactive: Flags.boolean({char: 'i', default: false, description: 'Decide each received SET in an interactive view (needs a terminal).'}),
    'max-events': Flags.integer({
      description:
        'Most SETs per response (RFC 8936 maxEvents, pushpull maxResponseEvents); a one-shot poll also stops following moreAvailable after this many in total. [default: the transmitter decides]',
      min: 0,
    }),
    'return-immediately': Flags.boolean({default: false, description: 'Ask the transmitter to answer at once instead of holding the request (RFC 8936 returnImmediately).'}),
    via: Flags.string({default: 'poll', description: 'Binding.', options: pollerNames()}),
  }

  public async run(): Promise<PollSummary> {
    const {flags} = this
    if (flags.interactive) assertInteractive(this.jsonEnabled(), '--ack auto or --ack manual')
    const url = checkPeerUrl(this.args.url)
    const entry = pollerEntryFor(flags.via)
    const peer = peerIdOf(url)
    const verification = await openVerification(flags, {signal: this.signal, userAgent: `pushpull/${this.config.version}`, warn: (m) => this.warnLoud(m)})
    try {
      return await this.pollWith(verification.flags, verification.verifier, url, entry, peer)
    } finally {
      await verification.close()
    }
  }

  private async pollWith(
    flags: Poll['flags'],
    verifier: SetVerifier,
    url: URL,
    entry: ReturnType<typeof pollerEntryFor>,
    peer: string,
  ): Promise<PollSummary> {
    const httpOptions = await httpClientOptionsFrom(flags, {userAgent: `pushpull/${this.config.version}`, warn: (m) => this.warnLoud(m)})
    if (flags.timeout === undefined && !flags['return-immediately'] && entry.name === 'poll') {
      httpOptions.headersTimeoutMs = LONG_POLL_TIMEOUT_MS
    }

    if (flags.jwks === undefined && flags['verify-key'] === undefined && flags.secret === undefined) {
      this.warnLoud('no --jwks, --verify-key or --secret: received SETs are NOT verified (shown UNVERIFIED)')
    }

    const ledger = openStateLedger(flags)
    const client = createHttpClient(httpOptions)
    const json = this.jsonEnabled()
    const manual = flags.ack === 'manual' || flags.interactive
    try {
      const receiver = new SetReceiver({decide: manual ? 'manual' : 'auto', ledger, verifier})
      const poller = entry.create({client, http: httpOptions, url: url.href})
      const summary = await runPollSession({
        follow: flags.follow,
        maxEvents: flags['max-events'],
        onDelivered: (report) => {
          if (json) return
          const parts = [report.ack.length > 0 ? `${report.ack.length} ack(s)` : '', report.setErrs.size > 0 ? `${report.setErrs.size} setErr(s)` : ''].filter(Boolean)
          this.note(`reported ${parts.join(' and ')} to ${peer}`)
        },
        onReceived: async (result) => {
          for (const outcome of result.outcomes) {
            const record = receivedRecord(peer, outcome)
            if (json) {
              if (record !== undefined) this.emitJson(record)
            } else {
              this.log(renderReceived(outcome, this.theme.out))
            }
          }

          // Acks go out on the next request: only once these lines have left the process.
          await stdoutFlushed()
          if (flags.interactive) await reviewReceived(result.outcomes, {ledger, peer, signal: this.signal, theme: this.theme})
        },
        onReport: (report) => {
          for (const jti of report.ack) if (json) this.emitJson({jti, peer, type: 'ack'})
          for (const [jti, setErr] of report.setErrs) if (json) this.emitJson({...setErr, jti, peer, type: 'setErr'})
        },
        onRetry: (error, delayMs) => this.note(`poll failed (${error.message}); retrying in ${(delayMs / 1000).toFixed(1)} s`),
        peer,
        poller,
        receiver,
        returnImmediately: flags['return-immediately'] ? true : undefined,
        signal: this.signal,
      })
      if (summary.flushError !== undefined) {
        this.warnLoud(`the final ack-only request failed (${summary.flushError.message}); the acks stay owed and go out with the next poll or "pushpull ack"`)
      }

      if (!json) {
        this.note(`${summary.received} new, ${summary.duplicates} duplicate, ${summary.rejected} rejected, ${summary.deferred} deferred SET(s) from ${peer}; acked ${summary.acked}, setErrs ${summary.setErrs}`)
        if (summary.moreAvailable && !flags.follow) this.note(`${peer} has more SETs: poll again to fetch them`)
      }

      if (summary.stoppedBy !== undefined) throw summary.stoppedBy
      const {flushError: _f, stoppedBy: _s, ...counts} = summary
      return {...counts, peer, type: 'summary', via: entry.name}
    } finally {
      await client.close()
      ledger.close()
    }
  }
}
