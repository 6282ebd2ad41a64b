/**
 * WebSocket figures (issue 5), in process on loopback, through the library paths of `listen --ws`
 * (createListener + attachListenerSessions + SetReceiver) and `stream` (WsSessionClient):
 *
 *  1. throughput of the pushpull WebSocket binding (batches of 100), verification off and ES256 on;
 *  4. the same with both ledgers on disk (SQLite, as `listen --state` / `stream --state`) vs in memory;
 *  6. latency from "queued in the sender's ledger" to "ack applied" at a fixed 5,000 SETs/s.
 *
 * SETs are pre-minted (figure 6 mints nothing either: tokens are queued at the fixed rate).
 */
import {mkdtempSync, rmSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {performance} from 'node:perf_hooks'

import {WsSessionClient} from '../src/lib/bindings/ws.js'
import {StaticKeySource, verificationKeysFromJson} from '../src/lib/keys.js'
import {Ledger} from '../src/lib/ledger.js'
import {SetReceiver} from '../src/lib/receiver.js'
import {attachListenerSessions} from '../src/lib/session-server.js'
import {createListener} from '../src/lib/server.js'
import {MemoryLedgerStorage, openLedger} from '../src/lib/store.js'
import {createVerifier, type SetVerifier} from '../src/lib/verify.js'
import {UNLIMITED} from './delivery.js'
import {startLink} from './link.js'
import {percentile} from './util.js'

export interface Minted {
  jti: string
  token: string
}

export interface WsRunOptions {
  /** null: no verification keys. */
  jwks: object | null
  /** Directory for SQLite ledgers; undefined: both ledgers in memory. */
  diskDir?: string | undefined
  /** Build the verifier (e.g. with a worker pool); default createVerifier with the JWKS. */
  verifier?: SetVerifier
  /** Connect through a link adding this much latency each way (bench/link.ts). Default none. */
  linkDelayMs?: number
}

function memoryLedger(): Ledger {
  return new Ledger({storage: new MemoryLedgerStorage()})
}

let dbSerial = 0

function ledgerFor(diskDir: string | undefined, name: string): Ledger {
  if (diskDir === undefined) return memoryLedger()
  return openLedger({path: join(diskDir, `${name}-${dbSerial++}.db`)})
}

interface Harness {
  client: WsSessionClient
  clientLedger: Ledger
  running: Promise<void>
  close(): Promise<void>
}

/** A listener with WebSocket sessions and a connected stream client; `onAck` per acked batch. */
async function harness(options: WsRunOptions, onAck: (jtis: readonly string[]) => void): Promise<Harness> {
  const serverLedger = ledgerFor(options.diskDir, 'listen')
  const verifier =
    options.verifier ??
    createVerifier(options.jwks === null ? {} : {keys: [new StaticKeySource(verificationKeysFromJson(options.jwks, 'bench JWKS'))]})
  const receiver = new SetReceiver({ledger: serverLedger, verifier})
  const link = options.linkDelayMs ? await startLink(options.linkDelayMs) : undefined
  const listener = createListener({checkHost: link === undefined, ledger: serverLedger, port: 0, receiver, requestRate: UNLIMITED})
  const {url} = await listener.listen()
  if (link !== undefined) link.target = url
  const sessions = attachListenerSessions(listener, {messageRate: UNLIMITED, pingIntervalMs: 0})
  const clientLedger = ledgerFor(options.diskDir, 'stream')
  let failure: Error | undefined
  const client = new WsSessionClient({
    ledger: clientLedger,
    maxReconnects: 0,
    onEvent(event) {
      if (event.type === 'report') onAck(event.result.acked)
      else if (event.type === 'close' && event.error !== undefined) failure ??= event.error
    },
    pingIntervalMs: 0,
    url: new URL(listener.paths.pushpull, link?.url ?? url).href,
  })
  const running = client.run()
  running.catch(() => {})
  return {
    client,
    clientLedger,
    async close() {
      await client.stop()
      await running.catch(() => {})
      await link?.close()
      await sessions.close()
      await listener.close(500)
      clientLedger.close()
      serverLedger.close()
      if (failure !== undefined) throw failure
    },
    running,
  }
}

/** SETs acknowledged per second end to end for `tokens` queued at once. */
export async function wsThroughput(tokens: readonly Minted[], options: WsRunOptions): Promise<number> {
  let acked = 0
  let done!: () => void
  const finished = new Promise<void>((resolve) => {
    done = resolve
  })
  const h = await harness(options, (jtis) => {
    acked += jtis.length
    if (acked >= tokens.length) done()
  })
  const start = performance.now()
  h.clientLedger.enqueue(h.client.peer, tokens.map(({jti, token}) => ({event: 'bench', jti, token})))
  h.client.kick()
  const timeout = setTimeout(done, 120_000)
  await Promise.race([finished, h.running])
  clearTimeout(timeout)
  const elapsed = (performance.now() - start) / 1000
  await h.close()
  if (acked < tokens.length) throw new Error(`WebSocket run: ${acked} of ${tokens.length} acked`)
  return tokens.length / elapsed
}

export interface LatencyFigures {
  p50: number
  p99: number
  max: number
  /** The rate actually reached, SETs/s. */
  achieved: number
  samples: number
}

/**
 * Queue `perTick` SETs every `tickMs` (a fixed rate) and measure, per SET, the time from queueing
 * to the ack being applied to the sender's ledger. Tick times are absolute, so a late tick queues
 * its SETs late and counts the delay.
 */
export async function wsLatency(tokens: readonly Minted[], options: WsRunOptions & {ratePerSec: number; tickMs?: number}): Promise<LatencyFigures> {
  const tickMs = options.tickMs ?? 10
  const perTick = Math.max(1, Math.round((options.ratePerSec * tickMs) / 1000))
  const queuedAt = new Map<string, number>()
  const latencies: number[] = []
  let done!: () => void
  const finished = new Promise<void>((resolve) => {
    done = resolve
  })
  const h = await harness(options, (jtis) => {
    const now = performance.now()
    for (const jti of jtis) {
      const at = queuedAt.get(jti)
      if (at === undefined) continue
      queuedAt.delete(jti)
      latencies.push(now - at)
    }

    if (latencies.length >= tokens.length) done()
  })
  const start = performance.now()
  let next = 0
  let tick = 0
  const timer = setInterval(() => {
    // Catch up on every tick that is due (timers fire late under load).
    while (next < tokens.length && start + tick * tickMs <= performance.now()) {
      const batch = tokens.slice(next, next + perTick)
      next += batch.length
      tick++
      const at = start + (tick - 1) * tickMs
      for (const item of batch) queuedAt.set(item.jti, at)
      h.clientLedger.enqueue(h.client.peer, batch.map(({jti, token}) => ({event: 'bench', jti, token})))
      h.client.kick()
    }

    if (next >= tokens.length) clearInterval(timer)
  }, 1)
  const timeout = setTimeout(done, 120_000)
  await Promise.race([finished, h.running])
  clearTimeout(timeout)
  clearInterval(timer)
  const elapsed = (performance.now() - start) / 1000
  await h.close()
  const sorted = latencies.sort((a, b) => a - b)
  return {
    achieved: sorted.length / elapsed,
    max: sorted.at(-1) ?? Number.NaN,
    p50: percentile(sorted, 50),
    p99: percentile(sorted, 99),
    samples: sorted.length,
  }
}

/** A scratch directory for SQLite ledgers, removed by the returned function. */
export function scratchDir(): {dir: string; remove: () => void} {
  const dir = mkdtempSync(join(tmpdir(), 'pushpull-bench-ws-'))
  return {dir, remove: () => rmSync(dir, {force: true, recursive: true})}
}
