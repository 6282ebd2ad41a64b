/**
 * Figure 1 (HTTP bindings): SETs acknowledged per second end to end on loopback, the library's
 * send path (ledger outbox + deliverOutbox + a binding) against the library's `listen` server
 * (createListener + SetReceiver), once with signature verification off and once with ES256 on.
 * SETs are pre-minted, every binding is warmed up first, and each round sends the same number of
 * SETs over every binding. The WebSocket rows of figure 1 come from ws-figures.ts.
 */
import {performance} from 'node:perf_hooks'

import {DELIVERERS} from '../src/lib/bindings/index.js'
import {generateKeyPair, readSigningKey, StaticKeySource, verificationKeysFromJson} from '../src/lib/keys.js'
import {Ledger} from '../src/lib/ledger.js'
import {mintSet} from '../src/lib/mint.js'
import {SetReceiver} from '../src/lib/receiver.js'
import {deliverOutbox} from '../src/lib/sender.js'
import {createListener} from '../src/lib/server.js'
import {MemoryLedgerStorage} from '../src/lib/store.js'
import {createHttpClient} from '../src/lib/transport/http.js'
import {createVerifier} from '../src/lib/verify.js'
import {TEMPLATE} from './crypto.js'
import {startLink} from './link.js'
import {type BenchConfig, fmtRate, fmtRatio, median, type Row} from './util.js'
import {mkdtempSync, rmSync, writeFileSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'

const BINDINGS = [
  {maxBatch: undefined, name: 'push', path: '/events'},
  {maxBatch: 100, name: 'pushpull', path: '/pushpull'},
  {maxBatch: 100, name: 'multi-push', path: '/pushpull'},
] as const

/**
 * The listener's per-address request rate limit (1000/s by default, a defence for real use) would
 * cap push at about that rate and turn the figure into a measure of the limiter: raised here.
 */
export const UNLIMITED = {perSecond: 1_000_000_000}

export type HttpBinding = (typeof BINDINGS)[number]
export {BINDINGS}

/**
 * SETs acknowledged per second for `tokens` sent over `binding` to a fresh listener; with
 * `linkDelayMs`, through a link adding that much latency each way (bench/link.ts).
 */
export async function runOnce(binding: HttpBinding, tokens: readonly {jti: string; token: string}[], verify: boolean, jwks: object, linkDelayMs = 0): Promise<number> {
  const serverLedger = new Ledger({storage: new MemoryLedgerStorage()})
  const verifier = createVerifier(verify ? {keys: [new StaticKeySource(verificationKeysFromJson(jwks, 'bench JWKS'))]} : {})
  const receiver = new SetReceiver({ledger: serverLedger, verifier})
  const link = linkDelayMs > 0 ? await startLink(linkDelayMs) : undefined
  const listener = createListener({checkHost: link === undefined, ledger: serverLedger, port: 0, receiver, requestRate: UNLIMITED})
  const {url} = await listener.listen()
  if (link !== undefined) link.target = url
  const target = new URL(binding.path, link?.url ?? url).href
  const entry = DELIVERERS.find((d) => d.name === binding.name)
  if (!entry) throw new Error(`no deliverer ${binding.name}`)
  const client = createHttpClient({})
  const deliverer = await entry.create({client, concurrency: 4, http: {}, maxBatch: binding.maxBatch, url: target})
  const ledger = new Ledger({storage: new MemoryLedgerStorage()})
  const peer = target
  ledger.enqueue(peer, tokens.map(({jti, token}) => ({event: 'bench', jti, token})) as never)
  const controller = new AbortController()
  const start = performance.now()
  const summary = await deliverOutbox({deliverer, jtis: tokens.map((t) => t.jti), ledger, peer, signal: controller.signal, waitMs: 120_000})
  const elapsed = (performance.now() - start) / 1000
  await client.close()
  await link?.close()
  await listener.close(500)
  ledger.close()
  serverLedger.close()
  if (summary.counts.acked + summary.counts.accepted !== tokens.length) {
    throw new Error(`${binding.name}: ${JSON.stringify(summary.counts)} of ${tokens.length}${summary.stoppedBy ? ` (${summary.stoppedBy.message})` : ''}`)
  }

  return tokens.length / elapsed
}

export async function measureDelivery(config: BenchConfig): Promise<{figures: Record<string, number>; rows: Row[]}> {
  const pair = await generateKeyPair('ES256', 'bench')
  const dir = mkdtempSync(join(tmpdir(), 'pushpull-bench-'))
  writeFileSync(join(dir, 'k.pem'), pair.privatePem)
  const signer = await readSigningKey(join(dir, 'k.pem'), {kid: 'bench'})
  rmSync(dir, {force: true, recursive: true})
  const count = config.quick ? 1000 : 4000
  const rounds = config.quick ? 1 : 3
  const mint = async () =>
    Promise.all(Array.from({length: count}, async () => {
      const {claims, token} = await mintSet(TEMPLATE, signer)
      return {jti: claims.jti, token}
    }))
  const figures: Record<string, number> = {}
  const rows: Row[] = []
  // Warm-up, not measured: a cold process runs the first thousand requests several times slower
  // (JIT compilation), which would flatter every ratio to push, the contender measured first.
  for (const verify of [false, true]) for (const binding of BINDINGS) await runOnce(binding, await mint(), verify, pair.publicJwks)
  for (const verify of [false, true]) {
    const samples: Record<string, number[]> = {}
    for (let round = 0; round < rounds; round++) {
      for (const binding of BINDINGS) {
        ;(samples[binding.name] ??= []).push(await runOnce(binding, await mint(), verify, pair.publicJwks))
      }
    }

    const push = median(samples.push ?? [])
    for (const binding of BINDINGS) {
      const value = median(samples[binding.name] ?? [])
      figures[`${binding.name}${verify ? '+ES256' : ''}`] = value
      const target = !verify && binding.name === 'pushpull' ? 15 : undefined
      rows.push({
        figure: '1',
        met: target === undefined ? undefined : value / push >= target,
        ratio: fmtRatio(value / push),
        target: target === undefined ? undefined : `>= ${target}x push`,
        value: fmtRate(value),
        what: `${binding.name}${binding.maxBatch ? ` (batches of ${binding.maxBatch})` : ' (4 connections)'}, verification ${verify ? 'ES256' : 'off'}`,
      })
    }
  }

  return {figures, rows}
}
