import {Flags} from '@oclif/core'

import {BaseCommand} from '../cli/base-command.js'
import {boundHeapGrowth} from '../cli/heap.js'
import {stdoutFlushed} from '../cli/stdout.js'
import {assertInteractive, reviewReceived} from '../cli/interactive.js'
import {issuerFlags, openVerification} from '../cli/issuer-flag.js'
import {openLedgerWithSsfStreams, ssfListenFlags, ssfSigningKey} from '../cli/ssf-listen.js'
import {formatCounts, formatRecord, forwardRecordOf, type ListenRecord, recordsOf, replayUnhandedOff} from '../cli/listen-output.js'
import {createStatusLine} from '../cli/status-line.js'
import {completeTemplate, readSetInputs} from '../cli/set-input.js'
import {buildSigner, signFlags} from '../cli/sign-flags.js'
import {openStateLedger, stateFlags} from '../cli/state-flags.js'
import {DEFAULT_TOKEN_FILE_MAX_BYTES, httpClientOptionsFrom, parseDuration, readFlagFile, transportFlags, warnIfOthersCanRead} from '../cli/transport-flags.js'
import {verifyFlags, verifyWorkersFlag} from '../cli/verify-flags.js'
import {attachListenerSessions, type SessionServerHandle} from '../lib/session-server.js'
import {PushpullError} from '../lib/errors.js'
import {shortNameOf} from '../lib/events.js'
import {Forwarder} from '../lib/forwarder.js'
import type {Ledger, OutgoingSet} from '../lib/ledger.js'
import {mintSet} from '../lib/mint.js'
import {mountSsfTransmitter} from '../lib/ssf/mount.js'
import type {SsfStreamStore} from '../lib/ssf/store.js'
import type {SsfTransmitter} from '../lib/ssf/transmitter.js'
import {SetReceiver} from '../lib/receiver.js'
import {
  createListener,
  DEFAULT_LISTEN_HOST,
  DEFAULT_LISTEN_PORT,
  DEFAULT_LONG_POLL_TIMEOUT_MS,
  DEFAULT_RESPONSE_EVENTS,
  type Listener,
  type ListenerCounts,
  type ListenerEvent,
  type ListenerToken,
} from '../lib/server.js'
import {decodeToken} from '../lib/set.js'
import {describeSubject} from '../lib/subject.js'
import type {Signer} from '../lib/keys.js'
import {DEFAULT_MESSAGE_RATE, DEFAULT_REQUEST_RATE} from '../lib/rate-limit.js'
import {
  DEFAULT_MAX_BODY_BYTES,
  DEFAULT_MAX_SERVER_CONNECTIONS,
  DEFAULT_MAX_SERVER_CONNECTIONS_PER_ADDRESS,
  DEFAULT_SERVER_HEADERS_TIMEOUT_MS,
  DEFAULT_SERVER_REQUEST_TIMEOUT_MS,
} from '../lib/transport/http-server.js'
import type {HttpClient} from '../lib/transport/http.js'
import type {VerifiedSet} from '../lib/verify.js'

/**
 * Test-only: when this environment variable is `1`, the process kills itself with SIGKILL right
 * after a received batch was committed to the state and reported, before the answer (the ack) is
 * written; with `before-print`, right after a new SET was stored and before its line is printed.
 * The crash-safety tests use it; it does nothing otherwise.
 */
export const CRASH_AFTER_STORE_ENV = 'PUSHPULL_TEST_CRASH_AFTER_STORE'

const durationFlag = Flags.custom<number>({
  async parse(input, _context, options) {
    return parseDuration(input, options.name)
  },
})

const {cacert, 'connect-timeout': connectTimeout, insecure, timeout} = transportFlags
const {aud, iss, kid, 'signing-key': signingKey, txn, unsigned} = signFlags

export interface ListenSummary {
  type: 'summary'
  url: string
  counts: ListenerCounts
  /** Why it stopped: `max-events`, or `signal` (then the exit code is 130 and this is not printed). */
  stopped: 'max-events' | 'signal'
}

/** Parse `--token NAME=TOKEN` / `--token TOKEN` (and token-file lines). Never echoes a token. */
export function parseListenToken(value: string, where: string): ListenerToken {
  const trimmed = value.trim()
  const match = /^([A-Za-z][\w.@-]{0,63})=(.+)$/.exec(trimmed)
  const token = match === null ? {token: trimmed} : {name: match[1], token: match[2] ?? ''}
  if (token.token === '' || !/^[\u0021-\u007E]+$/.test(token.token)) {
    throw new PushpullError('ERR_USAGE', `${where}: the token is empty or holds spaces, control or non-ASCII characters`)
  }

  return token
}

export default class Listen extends BaseCommand<typeof Listen> {
  static override description = `Run a local SET receiver and transmitter.

Endpoints: POST /events (RFC 8935 push: 202, or 400 {err, description}), POST /pushpull (pushpull
HTTP Communication Object, and multi-SET push when Content-Type is application/secevents+json) and
POST /poll (RFC 8936 poll, with long polling). Incoming SETs are verified with the verification
flags (without keys every SET is shown UNVERIFIED), stored in the state, then acknowledged; a
redelivered SET is acknowledged again and not reported as new. --emit queues SETs (tokens, or
event files signed with --signing-key/--secret) that pollers and pushpull peers receive, resent
until acknowledged.

Peers are told apart by their bearer token (--token NAME=TOKEN, repeatable): each token is one
peer whose owed acks and queued SETs follow it across requests. Without tokens every client is one
peer, "anonymous", and anyone who can reach the port may send SETs.

--ack manual stores new SETs undecided: they are not acknowledged until decided (-i asks on the
terminal as they arrive); the decisions go out with the peer's next pushpull exchange. RFC 8935
push has no later answer, so /events answers 202 as soon as a valid SET is stored.

At start-up, SETs that were stored but never printed (the process was killed in between) are
printed first as REPLAYED ("status":"replayed", "verified":null under --json): output is
at-least-once, so a replayed line may repeat one printed just before a crash.

SIGINT/SIGTERM: stop accepting, finish requests in flight, flush the state, exit 130.`

  static override examples = [
    {command: '<%= config.bin %> listen --port 0 --memory-state --max-events 1', description: 'Receive one SET on a free port (the address is printed on stderr), without keeping state'},
    {
      command: '<%= config.bin %> listen --jwks https://idp.example/jwks.json --expect-iss https://idp.example --token tx=s3cr3t-token --max-events 1 --port 0 --memory-state',
      description: 'Verify SETs against a JWKS and require a bearer token from the transmitter "tx"',
    },
    {
      command: "echo '{\"event\":\"caep.session-revoked\",\"subject\":\"email:ana@example.com\"}' > ev.json && <%= config.bin %> listen --port 0 --memory-state --emit ev.json --secret s3cret --iss https://tx.example --max-events 1",
      description: 'Offer a signed SET to pollers (POST /poll) and pushpull peers (POST /pushpull)',
    },
    {command: '<%= config.bin %> listen --port 0 --memory-state --forward-to https://rp.example/events --json --max-events 1', description: 'Relay every accepted SET downstream, NDJSON output'},
    {
      command: '<%= config.bin %> listen --ssf --port 8080 --token rx=s3cr3t-token',
      description: 'Also be an SSF transmitter: receivers discover http://127.0.0.1:8080, create poll streams and verify them ("pushpull ssf ...")',
    },
    {
      command: '<%= config.bin %> listen --issuer https://tx.example.com --port 0 --memory-state --max-events 1',
      description: "Verify received SETs with an SSF transmitter's discovered jwks_uri and expect its issuer",
    },
  ]

  static override flags = {
    ...verifyFlags,
    'verify-workers': verifyWorkersFlag,
    ...issuerFlags,
    ...ssfListenFlags,
    ...stateFlags,
    ack: Flags.string({
      default: 'auto',
      description: 'auto: acknowledge every valid SET once stored. manual: store new SETs undecided; they are answered once decided (-i).',
      options: ['auto', 'manual'],
    }),
    'allow-host': Flags.string({
      description: 'Also accept this Host name (for example the name in the TLS certificate). Repeatable. Other Host headers are refused (421).',
      multiple: true,
    }),
    'allow-origin': Flags.string({
      description: 'Accept requests carrying this Origin (browsers send one; by default such requests are refused 403). Repeatable.',
      multiple: true,
    }),
    emit: Flags.string({
      description: 'Queue SETs for pollers and pushpull peers: compact tokens or event files (signed with --signing-key/--secret), NDJSON; "-" reads stdin as it arrives. Repeatable.',
      helpGroup: 'EMIT',
      helpValue: 'FILE|-',
      multiple: true,
    }),
    aud,
    iss,
    kid,
    'signing-key': signingKey,
    txn,
    unsigned,
    'forward-to': Flags.string({
      description: 'Relay every accepted new SET to this RFC 8935 push endpoint and print the downstream status.',
      helpGroup: 'FORWARD',
      helpValue: 'URL',
    }),
    'forward-token': Flags.string({
      description: 'Bearer token for --forward-to (prefer the PUSHPULL_FORWARD_TOKEN environment variable).',
      env: 'PUSHPULL_FORWARD_TOKEN',
      helpGroup: 'FORWARD',
    }),
    cacert,
    'connect-timeout': connectTimeout,
    insecure,
    timeout,
    'headers-timeout': durationFlag({
      description: `Request headers must be complete within this long, else 408. [default: ${DEFAULT_SERVER_HEADERS_TIMEOUT_MS / 1000}s]`,
      helpGroup: 'LIMITS',
    }),
    host: Flags.string({default: DEFAULT_LISTEN_HOST, description: 'Address to bind. 0.0.0.0 or :: listen on every interface (use --token then).'}),
    interactive: Flags.boolean({
      char: 'i',
      default: false,
      description: 'Ask on the terminal what to do with each new SET (ack, reject with a code, defer). Implies --ack manual.',
    }),
    'long-poll-timeout': durationFlag({
      description: `How long a POST /poll without returnImmediately is held when nothing is queued. [default: ${DEFAULT_LONG_POLL_TIMEOUT_MS / 1000}s]`,
      helpGroup: 'LIMITS',
    }),
    'max-body-bytes': Flags.integer({
      default: DEFAULT_MAX_BODY_BYTES,
      description: 'Largest request body, in bytes; more is answered 413 without reading it.',
      helpGroup: 'LIMITS',
      min: 1,
    }),
    'max-events': Flags.integer({description: 'Exit 0 after this many new SETs were received and acknowledged.', min: 1}),
    'max-connections': Flags.integer({
      default: DEFAULT_MAX_SERVER_CONNECTIONS,
      description: 'Most open connections in total (WebSocket sessions included); more are answered 503 before being read.',
      helpGroup: 'LIMITS',
      min: 1,
    }),
    'max-connections-per-address': Flags.integer({
      default: DEFAULT_MAX_SERVER_CONNECTIONS_PER_ADDRESS,
      description: 'Most open connections from one remote address; more are answered 429 before being read.',
      helpGroup: 'LIMITS',
      min: 1,
    }),
    'max-message-rate': Flags.integer({
      default: DEFAULT_MESSAGE_RATE,
      description: 'With --ws: WebSocket messages per second from one peer (bursts of twice that); over it the session is closed with 1008.',
      helpGroup: 'WEBSOCKET',
      min: 1,
    }),
    'max-request-rate': Flags.integer({
      default: DEFAULT_REQUEST_RATE,
      description: 'HTTP requests per second from one remote address (bursts of twice that); more are answered 429 with Retry-After.',
      helpGroup: 'LIMITS',
      min: 1,
    }),
    'ping-interval': durationFlag({
      description: 'With --ws: WebSocket ping period; two missed pongs end a zombie session (0 turns pings off). [default: 30s]',
      helpGroup: 'WEBSOCKET',
    }),
    ws: Flags.boolean({
      default: false,
      description: 'Also accept pushpull WebSocket sessions (GET upgrade, subprotocol pushpull) on the pushpull path: several peers at once, SETs and acks both ways.',
      helpGroup: 'WEBSOCKET',
    }),
    'max-response-events': Flags.integer({
      default: DEFAULT_RESPONSE_EVENTS,
      description: 'Most SETs in one poll or pushpull response (a peer may ask for fewer).',
      helpGroup: 'LIMITS',
      min: 1,
    }),
    'max-sets': Flags.integer({default: 1000, description: 'Most SETs in one Communication Object or multi-SET push; more is answered 413.', helpGroup: 'LIMITS', min: 1}),
    port: Flags.integer({default: DEFAULT_LISTEN_PORT, description: 'Port to bind; 0 picks a free one (printed at start).', max: 65_535, min: 0}),
    'request-timeout': durationFlag({
      description: `A whole request (headers and body) must arrive within this long, else 408. [default: ${DEFAULT_SERVER_REQUEST_TIMEOUT_MS / 1000}s]`,
      helpGroup: 'LIMITS',
    }),
    'tls-cert': Flags.string({description: 'Serve https with this PEM certificate chain (needs --tls-key).', helpValue: 'FILE'}),
    'tls-key': Flags.string({description: 'PEM private key for --tls-cert.', helpValue: 'FILE'}),
    token: Flags.string({
      description: 'Require this bearer token from peers; NAME=TOKEN names the peer (shown as token:NAME). Repeat for several peers. Prefer --token-file.',
      multiple: true,
    }),
    'token-file': Flags.string({
      description: 'Read required bearer tokens from this file, one TOKEN or NAME=TOKEN per line.',
      helpValue: 'FILE',
    }),
  }

  public async run(): Promise<ListenSummary> {
    // A long session: keep the heap near what is live (src/cli/heap.ts).
    boundHeapGrowth()
    const flags = this.flags
    const manual = flags.ack === 'manual' || flags.interactive
    if (flags.interactive) assertInteractive(this.jsonEnabled(), '--ack manual (and decide later) or --ack auto')
    if ((flags['tls-cert'] === undefined) !== (flags['tls-key'] === undefined)) {
      throw new PushpullError('ERR_USAGE', '--tls-cert and --tls-key go together; give both to serve https')
    }

    const tokens = await this.readTokens()
    if (flags['tls-key'] !== undefined) await warnIfOthersCanRead(flags['tls-key'], 'TLS private key file', (m) => this.warnLoud(m))
    const tls = flags['tls-cert'] === undefined ? undefined : {cert: await readPem(flags['tls-cert'], '--tls-cert'), key: await readPem(flags['tls-key']!, '--tls-key')}
    // --token / --token-file here are the tokens peers present to us, never sent to a transmitter.
    const verification = await openVerification(
      {...flags, token: undefined, 'token-file': undefined},
      {signal: this.signal, userAgent: `pushpull/${this.config.version}`, warn: (m) => this.warnLoud(m), workers: flags['verify-workers']},
    )
    const {verifier} = verification

    const ssfKey = flags.ssf ? await ssfSigningKey({kid: flags.kid, 'signing-key': flags['signing-key']}) : undefined
    const crashAfterStore = process.env[CRASH_AFTER_STORE_ENV] === '1'
    const crashBeforePrint = process.env[CRASH_AFTER_STORE_ENV] === 'before-print'
    const json = this.jsonEnabled()
    // The listener is created after the replay below, so the line may be drawn before it exists.
    const status = createStatusLine(process.stderr, () => (listener === undefined ? '' : formatCounts(listener.counts, this.theme.err)))
    const print = (record: ListenRecord): void => {
      status.clear()
      if (json) this.emitJson(record)
      else this.log(formatRecord(record, this.theme.out))
      status.update()
    }

    let client: HttpClient | undefined
    let forwarder: Forwarder | undefined
    let ledger: Ledger | undefined
    let listener!: Listener
    let sessions: SessionServerHandle | undefined
    let ssfStreams: SsfStreamStore | undefined
    let transmitter: SsfTransmitter | undefined
    const stopper = new AbortController()
    let failure: unknown
    let received = 0
    const review = new ReviewQueue()
    try {
      if (flags.ssf) ({ledger, streams: ssfStreams} = openLedgerWithSsfStreams(flags))
      else ledger = openStateLedger(flags)
      if (flags['forward-to'] !== undefined) {
        const {createHttpClient} = await import('../lib/transport/http.js')
        client = createHttpClient(
          await httpClientOptionsFrom(
            {...flags, token: flags['forward-token']},
            {userAgent: `pushpull/${this.config.version}`, warn: (message) => this.warnLoud(message)},
          ),
        )
        forwarder = new Forwarder({client, onResult: (result) => print(forwardRecordOf(result)), url: flags['forward-to']})
      }

      // SETs stored before a crash but never printed: print them before serving (at-least-once).
      const replayed = await replayUnhandedOff(ledger, print, stdoutFlushed)
      if (replayed > 0) this.note(this.theme.err.dim(`replayed ${replayed} SET(s) stored before a restart but never printed`))
      const receiver = new SetReceiver({decide: manual ? 'manual' : 'auto', ledger, verifier})
      let errorSecond = 0
      let errorsShown = 0
      let suppressedErrors = 0
      const onEvent = (event: ListenerEvent): void => {
        if (event.type === 'http-error') {
          // A flooding peer must not flood the operator's terminal: at most 10 lines a second.
          const second = Math.floor(Date.now() / 1000)
          if (second !== errorSecond) {
            if (suppressedErrors > 0) this.note(this.theme.err.dim(`(${suppressedErrors} more refused requests not shown)`))
            errorSecond = second
            errorsShown = 0
            suppressedErrors = 0
          }

          if (errorsShown >= 10) {
            suppressedErrors++
            return
          }

          errorsShown++
          status.clear()
          this.note(this.theme.err.dim(`${event.method} ${event.path} -> ${event.status} ${event.message}`))
          return
        }

        if (crashBeforePrint && event.type === 'set' && event.status === 'new') process.kill(process.pid, 'SIGKILL')
        for (const record of recordsOf(event)) print(record)
        if (event.type === 'set' && event.status === 'new') {
          if (event.verdict === 'undecided' && flags.interactive) review.add(event.peer, event.set)
          received++
          if (flags['max-events'] !== undefined && received >= flags['max-events']) stopper.abort()
        }
      }

      listener = createListener({
        afterStore: crashAfterStore ? () => process.kill(process.pid, 'SIGKILL') : undefined,
        allowHosts: flags['allow-host'],
        allowOrigins: flags['allow-origin'],
        forwarder,
        handoff: stdoutFlushed,
        headersTimeoutMs: flags['headers-timeout'],
        host: flags.host,
        ledger,
        limits: {maxBytes: flags['max-body-bytes'], maxSetBytes: flags['max-set-bytes'], maxSets: flags['max-sets']},
        longPollTimeoutMs: flags['long-poll-timeout'],
        maxConnections: flags['max-connections'],
        maxConnectionsPerAddress: flags['max-connections-per-address'],
        maxResponseEvents: flags['max-response-events'],
        onEvent,
        port: flags.port,
        receiver,
        requestRate: {perSecond: flags['max-request-rate']},
        requestTimeoutMs: flags['request-timeout'],
        tls,
        tokens,
      })
      const {url} = await listener.listen()
      if (flags.ws) {
        sessions = attachListenerSessions(listener, {
          handoff: stdoutFlushed,
          limits: {maxSetBytes: flags['max-set-bytes'], maxSets: flags['max-sets']},
          maxConnections: flags['max-connections'],
          maxConnectionsPerAddress: flags['max-connections-per-address'],
          maxPayload: flags['max-body-bytes'],
          messageRate: {perSecond: flags['max-message-rate']},
          pingIntervalMs: flags['ping-interval'],
        })
      }
      if (ssfKey !== undefined && ssfStreams !== undefined) {
        const audience = flags['ssf-audience']
        transmitter = mountSsfTransmitter(listener, {
          audience: audience === undefined || audience.length === 0 ? undefined : audience.length === 1 ? audience[0] : audience,
          jwks: ssfKey.jwks,
          minVerificationIntervalSec: flags['ssf-min-verification-interval'],
          signer: ssfKey.signer,
          store: ssfStreams,
        })
        this.note(`SSF transmitter: issuer ${url}, metadata ${transmitter.metadataUrl}, ${ssfStreams.list().length} stream(s); signing key ${ssfKey.signer.kid ?? '(no kid)'}${ssfKey.generated ? ' (generated for this run)' : ''}`)
      }

      const endpoints = {events: `${url}${listener.paths.events}`, poll: `${url}${listener.paths.poll}`, pushpull: `${url}${listener.paths.pushpull}`}
      this.note(`listening on ${url}`)
      if (json) this.emitJson({ack: manual ? 'manual' : 'auto', endpoints, peers: listener.peers, type: 'listening', url, verified: verifier.hasKeys} satisfies ListenRecord)
      else this.note(this.theme.err.dim(`  push ${endpoints.events} · pushpull ${endpoints.pushpull}${flags.ws ? " (+ WebSocket)" : ""} · poll ${endpoints.poll} · peers: ${listener.peers.join(', ')}`))
      if (!verifier.hasKeys) {
        this.warnLoud('no verification keys (--jwks, --verify-key, --secret): SET signatures are NOT checked; every SET is shown UNVERIFIED')
      }

      if (tokens.length === 0 && !isLoopback(flags.host)) {
        this.warnLoud(`listening on ${flags.host} without --token: anyone who can reach this port can send SETs`)
      }

      status.update()
      const onAbort = (): void => stopper.abort()
      this.signal.addEventListener('abort', onAbort, {once: true})
      const tasks: Array<Promise<void>> = []
      if (flags.emit !== undefined && flags.emit.length > 0) {
        tasks.push(
          this.emitFrom(flags.emit, listener, stopper.signal).catch((error: unknown) => {
            failure ??= error
            stopper.abort()
          }),
        )
      }

      if (flags.interactive) {
        tasks.push(
          review.run(stopper.signal, async (peer, sets) => {
            // The status line stays quiet while a prompt owns the terminal.
            status.pause(true)
            try {
              await reviewReceived(sets, {ledger: ledger!, peer, signal: stopper.signal, theme: this.theme})
            } finally {
              status.pause(false)
            }
          }).catch((error: unknown) => {
            if (!stopper.signal.aborted) {
              failure ??= error
              stopper.abort()
            }
          }),
        )
      }

      await new Promise<void>((resolve) => {
        if (stopper.signal.aborted) resolve()
        else stopper.signal.addEventListener('abort', () => resolve(), {once: true})
      })
      this.signal.removeEventListener('abort', onAbort)
      await sessions?.close()
      await listener.close()
      await Promise.all(tasks)
    } finally {
      status.stop()
      transmitter?.close()
      await verification.close()
      await sessions?.close()
      // listener may be unset when start-up failed before it was created.
      if (listener !== undefined) await listener.close()
      forwarder?.abort()
      await client?.close()
      ledger?.close()
    }

    if (failure !== undefined) throw failure
    if (this.signal.aborted) {
      this.note(`stopped: ${formatCounts(listener.counts, this.theme.err)}`)
      throw this.signal.reason
    }

    if (!json) this.note(`done: ${formatCounts(listener.counts, this.theme.err)}`)
    return {counts: {...listener.counts}, stopped: 'max-events', type: 'summary', url: listener.url}
  }

  private async readTokens(): Promise<ListenerToken[]> {
    const tokens = (this.flags.token ?? []).map((value, index) => parseListenToken(value, `--token #${index + 1}`))
    const file = this.flags['token-file']
    if (file !== undefined) {
      await warnIfOthersCanRead(file, 'token file', (m) => this.warnLoud(m))
      const text = (await readFlagFile(file, '--token-file', {maxBytes: DEFAULT_TOKEN_FILE_MAX_BYTES})).toString('utf8')

      for (const [index, line] of text.split(/\r?\n/).entries()) {
        if (line.trim() === '' || line.trim().startsWith('#')) continue
        tokens.push(parseListenToken(line, `--token-file ${file} line ${index + 1}`))
      }

      if (tokens.length === 0) throw new PushpullError('ERR_USAGE', `--token-file ${file} holds no token`)
    }

    return tokens
  }

  /** Read --emit inputs (lazily: "-" keeps streaming) and queue each SET for every peer. */
  private async emitFrom(files: readonly string[], listener: Listener, signal: AbortSignal): Promise<void> {
    let signer: Signer | undefined
    const defaults = {aud: this.flags.aud, iss: this.flags.iss, txn: this.flags.txn}
    for await (const item of readSetInputs({files})) {
      if (signal.aborted) return
      let outgoing: OutgoingSet
      if (item.kind === 'token') {
        outgoing = describeToken(item.token, item.source)
      } else {
        signer ??= await buildSigner({...this.flags, alg: undefined}, (m) => this.warnLoud(m))
        const minted = await mintSet(completeTemplate(item.template, defaults, item.source), signer)
        outgoing = describeToken(minted.token, item.source)
      }

      listener.emit([outgoing])
    }
  }
}

/** jti, event and subject of a token to queue; ERR_USAGE when it has no jti. */
function describeToken(token: string, source: string): OutgoingSet {
  let payload: Record<string, unknown>
  try {
    payload = decodeToken(token).payload
  } catch (error) {
    throw new PushpullError('ERR_USAGE', `${source}: not a SET that can be emitted: ${(error as Error).message}`, {cause: error})
  }

  if (typeof payload.jti !== 'string' || payload.jti === '') throw new PushpullError('ERR_USAGE', `${source}: the SET has no "jti"; it cannot be tracked or acknowledged`)
  const events = payload.events
  const uri = events !== null && typeof events === 'object' ? Object.keys(events)[0] : undefined
  return {
    event: uri === undefined ? undefined : (shortNameOf(uri) ?? uri),
    jti: payload.jti,
    subject: payload.sub_id === undefined ? undefined : describeSubject(payload.sub_id),
    token,
  }
}

async function readPem(path: string, flag: string): Promise<string> {
  return (await readFlagFile(path, flag)).toString('utf8')
}

function isLoopback(host: string): boolean {
  const bare = host.replace(/^\[|\]$/g, '').toLowerCase()
  return bare === 'localhost' || bare === '::1' || bare.startsWith('127.')
}

/** New undecided SETs waiting for the interactive view, one peer at a time, in arrival order. */
class ReviewQueue {
  private readonly items: Array<{peer: string; set: VerifiedSet}> = []
  private wakeUp: (() => void) | undefined

  add(peer: string, set: VerifiedSet): void {
    this.items.push({peer, set})
    this.wakeUp?.()
  }

  async run(signal: AbortSignal, review: (peer: string, sets: VerifiedSet[]) => Promise<void>): Promise<void> {
    while (!signal.aborted) {
      if (this.items.length === 0) {
        await new Promise<void>((resolve) => {
          this.wakeUp = resolve
          signal.addEventListener('abort', () => resolve(), {once: true})
        })
        this.wakeUp = undefined
        continue
      }

      const peer = this.items[0]!.peer
      const batch: VerifiedSet[] = []
      for (let index = 0; index < this.items.length; ) {
        if (this.items[index]!.peer === peer) batch.push(this.items.splice(index, 1)[0]!.set)
        else index++
      }

      await review(peer, batch)
    }
  }
}
