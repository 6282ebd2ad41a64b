import {Args, Flags} from '@oclif/core'
import Table from 'cli-table3'

import {BaseCommand} from '../cli/base-command.js'
import {boundHeapGrowth} from '../cli/heap.js'
import {createStatusLine} from '../cli/status-line.js'
import {stdoutFlushed} from '../cli/stdout.js'
import {assertInteractive, reviewReceived} from '../cli/interactive.js'
import {formatRecord, type ListenRecord, recordsOf, replayUnhandedOff} from '../cli/listen-output.js'
import {completeTemplate, readSetInputs, setInputFlags} from '../cli/set-input.js'
import {buildSigner, signFlags} from '../cli/sign-flags.js'
import {openStateLedger, stateFlags} from '../cli/state-flags.js'
import {inputStream, stdinIsTty} from '../cli/stdin.js'
import {httpClientOptionsFrom, parseDuration, readCaFile, transportFlags} from '../cli/transport-flags.js'
import {verifyFlags, verifyWorkersFlag} from '../cli/verify-flags.js'
import {issuerFlags, openVerification} from '../cli/issuer-flag.js'
import {type ClientEvent, WsSessionClient} from '../lib/bindings/ws.js'
import {PushpullError, toPushpullError} from '../lib/errors.js'
import {shortNameOf} from '../lib/events.js'
import type {Ledger} from '../lib/ledger.js'
import {mintSet} from '../lib/mint.js'
import {SetReceiver} from '../lib/receiver.js'
import {listenerEventsOf} from '../lib/session-server.js'
import {decodeToken} from '../lib/set.js'
import {describeSubject} from '../lib/subject.js'
import type {VerifiedSet} from '../lib/verify.js'

/** The `--json` summary record printed when the session ends. */
export interface StreamSummary {
  type: 'summary'
  peer: string
  binding: 'ws' | 'http'
  received: number
  duplicates: number
  rejected: number
  acksSent: number
  owed: number
  undecided: number
  sent: number
  ackedByPeer: number
  rejectedByPeer: number
  pending: number
  reconnects: number
  rttMs?: number
}

const durationFlag = Flags.custom<number>({
  async parse(input, _context, options) {
    return parseDuration(input, options.name)
  },
})

export default class Stream extends BaseCommand<typeof Stream> {
  static override args = {
    url: Args.string({description: 'The peer pushpull endpoint: ws://, wss://, or http(s):// (upgraded).', required: true}),
  }

  static override description = `Open a live pushpull session over WebSocket and keep it: SETs and acks both ways.

Outgoing SETs come from event files (arguments after the URL), NDJSON or compact tokens on stdin
(kept open: a pipeline can feed the session for hours) and the mint flags (--event, --subject).
They are sent in batches and resent until the peer acks or rejects them; the state database keeps
them across runs. Incoming SETs are verified with the decode flags, printed as they arrive (one
line each, or NDJSON with --json), stored, then acked (--ack auto), left owed (--ack manual; decide
with pushpull ack) or decided interactively (-i). The connection reconnects with backoff; after a
reconnect owed acks go first, then unacked SETs. The end of the input does not end the session
unless --exit-on-eof. --max-events and --duration end it with exit 0; SIGINT flushes owed acks,
closes with 1001 and exits 130. A live status line shows on stderr when it is a terminal.

At start-up, SETs that were stored but never printed (the process was killed in between) are
printed first as REPLAYED ("status":"replayed", "verified":null under --json): output is
at-least-once, so a replayed line may repeat one printed just before a crash.`

  static override examples = [
    {
      command:
        'keys=$(mktemp -d) && <%= config.bin %> keys generate --out "$keys" --force >/dev/null && (<%= config.bin %> listen --port 18936 --memory-state --max-events 1 >/dev/null &) && sleep 1 && <%= config.bin %> stream ws://127.0.0.1:18936/pushpull --memory-state --signing-key "$keys/private.jwk.json" --iss https://tx.example --event caep.session-revoked --subject email:ana@example.com --exit-on-eof',
      description: 'Send one CAEP SET over a session to a local listener and exit once it is acked',
    },
    {
      command: '<%= config.bin %> stream wss://rx.example/pushpull --token-file token.txt --jwks https://tx.example/jwks.json --json < /dev/null',
      description: 'Receive and auto-ack SETs for as long as the session lasts, as NDJSON',
    },
    {
      command: 'tail -f events.ndjson | <%= config.bin %> stream wss://rx.example/pushpull --token-file token.txt --signing-key key.jwk.json --iss https://tx.example -i',
      description: 'Feed a session from a pipeline and decide incoming SETs interactively',
    },
    {
      command: '<%= config.bin %> stream wss://rx.example/pushpull --token-file token.txt --issuer https://tx.example --json < /dev/null',
      description: "Verify incoming SETs with an SSF transmitter's discovered jwks_uri and expect it as the issuer",
    },
  ]

  static override flags = {
    ...signFlags,
    ...verifyFlags,
    'verify-workers': verifyWorkersFlag,
    ...setInputFlags,
    ...stateFlags,
    ...transportFlags,
    ...issuerFlags,
    ack: Flags.string({
      default: 'auto',
      description: 'auto: ack each valid SET once stored. manual: store it undecided and ack nothing until decided (pushpull ack, or -i).',
      options: ['auto', 'manual'],
    }),
    'ack-batch': Flags.integer({default: 1000, description: 'Most acks plus setErrs in one message.', helpGroup: 'SESSION', min: 1}),
    'ack-delay': durationFlag({description: 'Wait this long for more owed acks before sending them (10ms, 1s). [default: 10ms]', helpGroup: 'SESSION'}),
    aud: Flags.string({description: 'Audience of minted SETs (repeat for several).', helpGroup: 'INPUT', multiple: true}),
    batch: Flags.integer({default: 100, description: 'Most SETs in one message.', helpGroup: 'SESSION', min: 1}),
    'batch-delay': durationFlag({description: 'Wait this long for more SETs before sending a message. [default: 10ms]', helpGroup: 'SESSION'}),
    duration: durationFlag({description: 'End the session (exit 0) after this long: 30s, 5m, 2h.'}),
    'exit-on-eof': Flags.boolean({
      default: false,
      description: 'Close once the outgoing input has ended and everything sent is acked or rejected (otherwise the session keeps receiving).',
    }),
    fallback: Flags.string({
      default: 'none',
      description: 'http: when the WebSocket upgrade is refused, continue the same session over the pushpull HTTP binding.',
      helpGroup: 'SESSION',
      options: ['none', 'http'],
    }),
    'http-poll': durationFlag({description: 'With --fallback http: time between exchanges when idle. [default: 1s]', helpGroup: 'SESSION'}),
    interactive: Flags.boolean({char: 'i', default: false, description: 'Show each batch of incoming SETs and decide: ack all, pick, reject with a code, or defer (needs a terminal).'}),
    iss: Flags.string({description: 'Issuer of minted SETs (overrides the input).', helpGroup: 'INPUT'}),
    'max-events': Flags.integer({description: 'End the session (exit 0) after receiving this many new SETs.', min: 1}),
    'max-message-bytes': Flags.integer({default: 1024 * 1024, description: 'Largest WebSocket message sent or accepted, in bytes (bigger incoming ones close with 1009).', helpGroup: 'LIMITS', min: 1024}),
    'max-reconnects': Flags.integer({description: 'Give up after this many failed connections in a row (default: keep trying).', helpGroup: 'SESSION', min: 0}),
    'max-sets': Flags.integer({default: 1000, description: 'Most SETs accepted in one incoming message (more closes with 1009).', helpGroup: 'LIMITS', min: 1}),
    'ping-interval': durationFlag({description: 'WebSocket ping period; two missed pongs end a zombie session (0 turns pings off). [default: 30s]', helpGroup: 'SESSION'}),
    txn: Flags.string({description: 'Transaction id ("txn") of minted SETs.', helpGroup: 'INPUT'}),
  }

  static override strict = false

  public async run(): Promise<StreamSummary> {
    // A long session: keep the heap near what is live (src/cli/heap.ts).
    boundHeapGrowth()
    const {argv} = await this.parse(Stream)
    const flags = this.flags
    const files = argv.slice(1).map(String)
    if (flags.interactive) assertInteractive(this.jsonEnabled(), '--ack manual (and decide later with pushpull ack) or --ack auto')
    const manual = flags.ack === 'manual' || flags.interactive
    const json = this.jsonEnabled()
    const http = await httpClientOptionsFrom(flags, {userAgent: `pushpull/${this.config.version}`, warn: (message) => this.warnLoud(message)})
    const verification = await openVerification(flags, {
      signal: this.signal,
      userAgent: `pushpull/${this.config.version}`,
      warn: (message) => this.warnLoud(message),
      workers: flags['verify-workers'],
    })
    const {verifier} = verification

    if (!verifier.hasKeys) this.warnLoud('no verification keys (--jwks, --verify-key, --secret): incoming SET signatures are NOT checked; every SET is shown UNVERIFIED')
    const hasInput = files.length > 0 || flags.event !== undefined || !stdinIsTty()
    let ledger: Ledger | undefined
    let client: WsSessionClient | undefined
    const stopper = new AbortController()
    let failure: unknown
    let stopReason: 'max-events' | 'duration' | 'eof' | undefined
    let received = 0
    let inputDone = !hasInput
    const reviewQueue: VerifiedSet[] = []
    let reviewing: Promise<void> | undefined
    const status = createStatusLine(process.stderr, () => (client === undefined ? '' : this.statusText(client, ledger!)))
    const print = (record: ListenRecord): void => {
      status.clear()
      if (json) this.emitJson(record)
      else this.log(formatRecord(record, this.theme.out))
      status.update()
    }

    let durationTimer: NodeJS.Timeout | undefined
    const stopWith = (reason: typeof stopReason): void => {
      stopReason ??= reason
      stopper.abort()
    }

    const checkEof = (): void => {
      if (!flags['exit-on-eof'] || !inputDone || ledger === undefined || client === undefined) return
      const stats = ledger.stats(client.peer)[0]
      if (stats === undefined || stats.outbox.pending + stats.outbox.in_flight === 0) stopWith('eof')
    }

    try {
      ledger = openStateLedger(flags)
      // SETs stored before a crash but never printed: print them before the session starts.
      const replayed = await replayUnhandedOff(ledger, print, stdoutFlushed)
      if (replayed > 0) this.note(this.theme.err.dim(`replayed ${replayed} SET(s) stored before a restart but never printed`))
      const receiver = new SetReceiver({decide: manual ? 'manual' : 'auto', ledger, verifier})
      const onEvent = (event: ClientEvent): void => {
        switch (event.type) {
          case 'connected': {
            status.clear()
            this.note(this.theme.err.dim(`connected to ${event.url} (${event.binding === 'ws' ? 'WebSocket' : 'pushpull HTTP'})`))
            break
          }

          case 'reconnect-wait': {
            status.clear()
            this.note(this.theme.err.yellow(`${event.error.message}; reconnecting in ${event.delayMs} ms`))
            break
          }

          case 'fallback': {
            status.clear()
            this.warnLoud(`${event.error.message}; continuing over the pushpull HTTP binding (--fallback http)`)
            break
          }

          case 'error': {
            status.clear()
            this.note(this.theme.err.red(`${event.error.message} [${event.error.code}]`))
            break
          }

          case 'connecting': {
            break
          }

          default: {
            for (const listenerEvent of listenerEventsOf(event)) for (const record of recordsOf(listenerEvent)) print(record)
          }
        }

        if (event.type === 'received') {
          for (const outcome of event.outcomes) {
            if (outcome.status !== 'new') continue
            received++
            if (outcome.verdict === 'undecided' && flags.interactive) reviewQueue.push(outcome.set)
          }

          if (flags.interactive && reviewQueue.length > 0 && reviewing === undefined) {
            reviewing = this.review(reviewQueue, ledger!, client!, status, stopper.signal)
              .catch((error: unknown) => {
                if (!stopper.signal.aborted) {
                  failure ??= error
                  stopper.abort()
                }
              })
              .finally(() => {
                reviewing = undefined
              })
          }
          if (flags['max-events'] !== undefined && received >= flags['max-events']) stopWith('max-events')
        }

        if (event.type === 'report' || event.type === 'abandoned') checkEof()
        status.update()
      }

      client = new WsSessionClient({
        ackDelayMs: flags['ack-delay'],
        batchDelayMs: flags['batch-delay'],
        ca: http.ca ?? (http.caFile === undefined ? undefined : await readCaFile(http.caFile)),
        fallback: flags.fallback as 'none' | 'http',
        handoff: stdoutFlushed,
        handshakeTimeoutMs: http.connectTimeoutMs,
        headers: http.headers,
        httpPollMs: flags['http-poll'],
        insecure: http.insecure,
        ledger,
        limits: {maxBytes: flags['max-message-bytes'], maxSetBytes: flags['max-set-bytes'], maxSets: flags['max-sets']},
        maxAcksPerMessage: flags['ack-batch'],
        maxPayload: flags['max-message-bytes'],
        maxReconnects: flags['max-reconnects'],
        maxSetsPerMessage: flags.batch,
        onEvent,
        pingIntervalMs: flags['ping-interval'],
        receiver,
        token: http.token,
        url: this.args.url,
      })
      const sessionClient = client
      const onAbort = (): void => stopper.abort()
      this.signal.addEventListener('abort', onAbort, {once: true})
      if (flags.duration !== undefined) durationTimer = setTimeout(() => stopWith('duration'), flags.duration)
      const running = client.run(stopper.signal).then(
        () => stopper.abort(),
        (error: unknown) => {
          failure ??= error
          stopper.abort()
        },
      )
      const feeding = hasInput
        ? this.feed(files, sessionClient, ledger, stopper.signal).then(
            () => {
              inputDone = true
              checkEof()
            },
            (error: unknown) => {
              failure ??= error
              stopper.abort()
            },
          )
        : Promise.resolve()
      checkEof()
      await new Promise<void>((resolve) => {
        if (stopper.signal.aborted) resolve()
        else stopper.signal.addEventListener('abort', () => resolve(), {once: true})
      })
      this.signal.removeEventListener('abort', onAbort)
      await client.stop()
      await running
      // Stop reading a stdin that may stay open for hours; the reader then ends.
      if (!inputDone && files.length === 0 && flags.event === undefined) inputStream().destroy()
      await Promise.race([feeding.catch(() => {}), new Promise((resolve) => setTimeout(resolve, 200))])
      await reviewing?.catch(() => {})
    } finally {
      clearTimeout(durationTimer)
      status.stop()
      await verification.close()
    }

    try {
      const summary = this.summaryOf(client, ledger)
      // Under --json the returned summary is the final record (printed once, by the base command).
      if (!json) this.note(this.summaryTable(summary))
      if (failure !== undefined) throw toPushpullError(failure)
      if (this.signal.aborted) throw this.signal.reason
      if (stopReason !== undefined && !json) this.note(this.theme.err.dim(`session ended: ${stopReason === 'eof' ? 'input ended and every SET was answered' : stopReason === 'duration' ? '--duration reached' : '--max-events reached'}`))
      return summary
    } finally {
      ledger?.close()
    }
  }

  /** Read the outgoing input (files, stdin, flags), mint templates, queue everything for the peer. */
  private async feed(files: string[], client: WsSessionClient, ledger: Ledger, signal: AbortSignal): Promise<void> {
    const flags = this.flags
    let signer: Awaited<ReturnType<typeof buildSigner>> | undefined
    const defaults = {aud: flags.aud, iss: flags.iss, txn: flags.txn}
    for await (const item of readSetInputs({assignments: flags.set, count: flags.count, event: flags.event, files, subject: flags.subject})) {
      if (signal.aborted) return
      let jti: string
      let token: string
      let event: string | undefined
      let subject: string | undefined
      if (item.kind === 'token') {
        let payload: Record<string, unknown>
        try {
          payload = decodeToken(item.token).payload as Record<string, unknown>
        } catch (error) {
          throw new PushpullError('ERR_USAGE', `${item.source}: not a SET that can be sent: ${(error as Error).message}`, {cause: error})
        }

        if (typeof payload.jti !== 'string' || payload.jti === '') throw new PushpullError('ERR_USAGE', `${item.source}: the SET has no jti`)
        jti = payload.jti
        token = item.token
        const events = payload.events as Record<string, unknown> | undefined
        const uri = events === undefined ? undefined : Object.keys(events)[0]
        event = uri === undefined ? undefined : (shortNameOf(uri) ?? uri)
        subject = payload.sub_id === undefined ? undefined : describeSubject(payload.sub_id)
      } else {
        signer ??= await buildSigner({...flags, alg: undefined}, (m) => this.warnLoud(m))
        const minted = await mintSet(completeTemplate(item.template, defaults, item.source), signer)
        jti = minted.claims.jti
        token = minted.token
        const uri = Object.keys(minted.claims.events)[0]
        event = uri === undefined ? undefined : (shortNameOf(uri) ?? uri)
        subject = minted.claims.sub_id === undefined ? undefined : describeSubject(minted.claims.sub_id)
      }

      const [result] = ledger.enqueue(client.peer, [{event, jti, subject, token}])
      if (result?.status === 'jti-reused') this.warnLoud(`${item.source}: jti ${jti} was already sent to this peer and answered; not sent again (mint a new SET)`)
      client.kick()
    }
  }

  private async review(queue: VerifiedSet[], ledger: Ledger, client: WsSessionClient, status: {pause(paused: boolean): void}, signal: AbortSignal): Promise<void> {
    // The status line stays quiet while a prompt is open.
    status.pause(true)
    try {
      while (queue.length > 0 && !signal.aborted) {
        const batch = queue.splice(0)
        await reviewReceived(batch, {ledger, peer: client.peer, signal, theme: this.theme})
        client.kick()
      }
    } finally {
      status.pause(false)
    }
  }

  private statusText(client: WsSessionClient, ledger: Ledger): string {
    const c = this.theme.err
    const counters = client.counters
    const stats = ledger.stats(client.peer)[0]
    const owed = stats === undefined ? 0 : stats.inbox.owed + stats.inbox.undecided
    const pending = stats === undefined ? 0 : stats.outbox.pending + stats.outbox.in_flight
    const rtt = client.rttMs === undefined ? '-' : `${client.rttMs}ms`
    return [
      `${client.connected ? c.green('●') : c.red('○')} ${client.peer}`,
      `in ${counters.received} · acked ${counters.acksSent} · owed ${owed}`,
      `out ${counters.sent} · acked by peer ${counters.ackedByPeer} · pending ${pending}`,
      `reconnects ${client.reconnects} · rtt ${rtt}`,
    ].join('  |  ')
  }

  private summaryOf(client: WsSessionClient | undefined, ledger: Ledger | undefined): StreamSummary {
    const counters = client?.counters
    const stats = client === undefined ? undefined : ledger?.stats(client.peer)[0]
    const summary: StreamSummary = {
      ackedByPeer: counters?.ackedByPeer ?? 0,
      acksSent: counters?.acksSent ?? 0,
      binding: client?.binding ?? 'ws',
      duplicates: counters?.duplicates ?? 0,
      owed: stats?.inbox.owed ?? 0,
      peer: client?.peer ?? this.args.url,
      pending: stats === undefined ? 0 : stats.outbox.pending + stats.outbox.in_flight,
      received: counters?.received ?? 0,
      reconnects: client?.reconnects ?? 0,
      rejected: counters?.rejected ?? 0,
      rejectedByPeer: counters?.rejectedByPeer ?? 0,
      sent: counters?.sent ?? 0,
      type: 'summary',
      undecided: stats?.inbox.undecided ?? 0,
    }
    if (client?.rttMs !== undefined) summary.rttMs = client.rttMs
    return summary
  }

  private summaryTable(summary: StreamSummary): string {
    const table = new Table({head: ['', 'received from peer', 'sent to peer'], style: {border: [], head: []}})
    table.push(
      ['SETs', `${summary.received} new, ${summary.duplicates} duplicate, ${summary.rejected} rejected`, `${summary.sent} sends`],
      ['acks', `${summary.acksSent} sent, ${summary.owed} owed, ${summary.undecided} undecided`, `${summary.ackedByPeer} acked, ${summary.rejectedByPeer} rejected, ${summary.pending} pending`],
    )
    return `session with ${summary.peer} (${summary.binding}), ${summary.reconnects} reconnects${summary.rttMs === undefined ? '' : `, rtt ${summary.rttMs} ms`}\n${table.toString()}`
  }
}
