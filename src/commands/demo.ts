import {mkdtemp, rm, writeFile} from 'node:fs/promises'
import {tmpdir} from 'node:os'
import {join} from 'node:path'

import {Flags} from '@oclif/core'
import Table from 'cli-table3'

import {BaseCommand} from '../cli/base-command.js'
import {formatRecord, type ListenRecord, recordsOf} from '../cli/listen-output.js'
import {type ClientEvent, WsSessionClient} from '../lib/bindings/ws.js'
import {PushpullError} from '../lib/errors.js'
import {resolveEventUri, shortNameOf} from '../lib/events.js'
import {generateKeyPair, readSigningKey, type Signer, StaticKeySource, verificationKeysFromJson} from '../lib/keys.js'
import {Ledger} from '../lib/ledger.js'
import {mintSet} from '../lib/mint.js'
import {SetReceiver} from '../lib/receiver.js'
import {createListener, type Listener, type ListenerEvent} from '../lib/server.js'
import {attachListenerSessions, listenerEventsOf, type SessionServerHandle} from '../lib/session-server.js'
import {MemoryLedgerStorage} from '../lib/store/memory.js'
import {describeSubject} from '../lib/subject.js'
import {createVerifier} from '../lib/verify.js'

const TX_ISS = 'https://idp.demo.example'
const RX_ISS = 'https://rp.demo.example'

/** What each side sends: CAEP and RISC events with realistic payloads. */
const FROM_CLIENT = [
  {event: 'caep.session-revoked', payload: {reason_admin: {en: 'Suspicious sign-in'}}, subject: {email: 'ana@example.com', format: 'email'}},
  {event: 'caep.credential-change', payload: {change_type: 'update', credential_type: 'password'}, subject: {email: 'ben@example.com', format: 'email'}},
  {event: 'risc.account-disabled', payload: {reason: 'hijacking'}, subject: {iss: TX_ISS, sub: 'u-1234', format: 'iss_sub'}},
] as const
const FROM_LISTENER = [
  {event: 'risc.credential-compromise', payload: {credential_type: 'password'}, subject: {email: 'ana@example.com', format: 'email'}},
  {event: 'caep.device-compliance-change', payload: {current_status: 'not-compliant', previous_status: 'compliant'}, subject: {format: 'opaque', id: 'device-42'}},
  {event: 'risc.account-enabled', payload: {}, subject: {phone_number: '+15555550100', format: 'phone_number'}},
] as const

export interface DemoRecord {
  side: 'listener' | 'stream'
  record: ListenRecord
}

export interface DemoSummary {
  type: 'summary'
  url: string
  streamToListener: {sent: number; acked: number}
  listenerToStream: {sent: number; acked: number}
  ok: boolean
}

export default class Demo extends BaseCommand<typeof Demo> {
  static override description = `Run a complete pushpull exchange on this machine, in a few seconds: the README's "run it".

Generates two ES256 key pairs in a temporary directory, starts a listener with WebSocket sessions
(the same code as "listen --ws", in memory, on a free loopback port), opens a "stream" session
against it, and sends three CAEP/RISC SETs each way. Both sides verify what they receive, store
it, and acknowledge it asynchronously over the same connection; each SET is shown decoded as it
arrives, then each ack. Ends with a summary and exit 0 once every SET is acknowledged.`

  static override examples = [
    {command: '<%= config.bin %> demo', description: 'Watch SETs and acks flow both ways over one WebSocket session'},
    {command: '<%= config.bin %> demo --json', description: 'The same as NDJSON records (side, record), then a summary record'},
  ]

  static override flags = {
    timeout: Flags.integer({default: 15_000, description: 'Give up (exit 4) if the exchange is not complete after this many milliseconds.', min: 100}),
  }

  public async run(): Promise<DemoSummary> {
    const json = this.jsonEnabled()
    const c = this.theme.out
    const dir = await mkdtemp(join(tmpdir(), 'pushpull-demo-'))
    let listener: Listener | undefined
    let sessions: SessionServerHandle | undefined
    let client: WsSessionClient | undefined
    let running: Promise<void> | undefined
    const listenerLedger = new Ledger({storage: new MemoryLedgerStorage()})
    const streamLedger = new Ledger({storage: new MemoryLedgerStorage()})
    const show = (side: DemoRecord['side'], record: ListenRecord): void => {
      if (record.type === 'sent' || record.type === 'queued') return
      if (json) this.emitJson({record, side} satisfies DemoRecord)
      else this.log(`${side === 'listener' ? c.blue.bold('[listen]') : c.yellow.bold('[stream]')} ${formatRecord(record, c)}`)
    }

    try {
      // 1. keys
      const txPair = await generateKeyPair('ES256', 'demo-stream')
      const rxPair = await generateKeyPair('ES256', 'demo-listener')
      await writeFile(join(dir, 'stream.private.jwk.json'), JSON.stringify(txPair.privateJwk), {mode: 0o600})
      await writeFile(join(dir, 'listener.private.jwk.json'), JSON.stringify(rxPair.privateJwk), {mode: 0o600})
      const txSigner = await readSigningKey(join(dir, 'stream.private.jwk.json'))
      const rxSigner = await readSigningKey(join(dir, 'listener.private.jwk.json'))
      this.note(this.theme.err.dim(`keys: two ES256 key pairs in ${dir} (removed at the end)`))

      // 2. the listener, with WebSocket sessions
      const listenerVerifier = createVerifier({keys: [new StaticKeySource(verificationKeysFromJson(txPair.publicJwks, 'stream public key'))]})
      listener = createListener({
        ledger: listenerLedger,
        onEvent: (event: ListenerEvent) => {
          for (const record of recordsOf(event)) show('listener', record)
        },
        port: 0,
        receiver: new SetReceiver({ledger: listenerLedger, verifier: listenerVerifier}),
      })
      const {url} = await listener.listen()
      sessions = attachListenerSessions(listener)
      const wsUrl = `${url.replace(/^http/, 'ws')}${listener.paths.pushpull}`
      this.note(this.theme.err.dim(`listen --ws: ${wsUrl}`))

      // 3. the stream client
      const streamVerifier = createVerifier({keys: [new StaticKeySource(verificationKeysFromJson(rxPair.publicJwks, 'listener public key'))]})
      client = new WsSessionClient({
        ledger: streamLedger,
        maxReconnects: 3,
        onEvent: (event: ClientEvent) => {
          if (event.type === 'connected') this.note(this.theme.err.dim(`stream: connected to ${event.url}`))
          if (event.type === 'error') this.note(this.theme.err.red(`stream: ${event.error.message}`))
          if ('peer' in event) for (const item of listenerEventsOf(event)) for (const record of recordsOf(item)) show('stream', record)
        },
        receiver: new SetReceiver({ledger: streamLedger, verifier: streamVerifier}),
        url: wsUrl,
      })
      const streamClient = client
      running = client.run(this.signal)

      // 4. SETs both ways
      const outgoing = await Promise.all(FROM_CLIENT.map(async (item) => this.mint(item, TX_ISS, RX_ISS, txSigner)))
      streamLedger.enqueue(streamClient.peer, outgoing)
      client.kick()
      const incoming = await Promise.all(FROM_LISTENER.map(async (item) => this.mint(item, RX_ISS, TX_ISS, rxSigner)))
      listener.emit(incoming)

      // 5. wait until every SET is acked both ways
      const done = (): boolean => {
        const out = streamLedger.stats(streamClient.peer)[0]?.outbox.acked ?? 0
        const back = listenerLedger.stats('anonymous')[0]?.outbox.acked ?? 0
        return out === outgoing.length && back === incoming.length
      }

      await waitUntil(done, this.flags.timeout, this.signal, running)
      const summary: DemoSummary = {
        listenerToStream: {acked: listenerLedger.stats('anonymous')[0]?.outbox.acked ?? 0, sent: incoming.length},
        ok: true,
        streamToListener: {acked: streamLedger.stats(streamClient.peer)[0]?.outbox.acked ?? 0, sent: outgoing.length},
        type: 'summary',
        url: wsUrl,
      }
      if (!json) {
        const table = new Table({head: ['direction', 'SETs sent', 'acked', 'events'], style: {border: [], head: []}})
        table.push(
          ['stream -> listener', summary.streamToListener.sent, summary.streamToListener.acked, FROM_CLIENT.map((e) => e.event).join(', ')],
          ['listener -> stream', summary.listenerToStream.sent, summary.listenerToStream.acked, FROM_LISTENER.map((e) => e.event).join(', ')],
        )
        this.log('')
        this.log(table.toString())
        this.log(c.green.bold('every SET was verified, stored and acknowledged, both ways, over one WebSocket session'))
        this.log(c.dim('next: pushpull listen --ws --port 8935   and, in another terminal:   pushpull stream ws://127.0.0.1:8935/pushpull --help'))
      }

      return summary
    } finally {
      await client?.stop()
      await running?.catch(() => {})
      await sessions?.close()
      await listener?.close()
      listenerLedger.close()
      streamLedger.close()
      await rm(dir, {force: true, recursive: true})
    }
  }

  private async mint(item: {event: string; payload: object; subject: object}, iss: string, aud: string, signer: Signer): Promise<{jti: string; token: string; event: string; subject: string}> {
    const uri = resolveEventUri(item.event)
    const minted = await mintSet({aud, events: {[uri]: {...item.payload}}, iss, sub_id: {...item.subject} as {format: string}}, signer)
    return {event: shortNameOf(uri) ?? uri, jti: minted.claims.jti, subject: describeSubject(item.subject), token: minted.token}
  }
}

async function waitUntil(predicate: () => boolean, timeoutMs: number, signal: AbortSignal, running: Promise<void>): Promise<void> {
  let failed: unknown
  void running.catch((error: unknown) => {
    failed = error
  })
  const deadline = Date.now() + timeoutMs
  while (!predicate()) {
    if (signal.aborted) throw signal.reason
    if (failed !== undefined) throw failed
    if (Date.now() > deadline) throw new PushpullError('ERR_TIMEOUT', `the demo exchange did not complete within ${timeoutMs} ms`)
    await new Promise((resolve) => setTimeout(resolve, 10))
  }
}
