/**
 * Figures 1 (WebSocket), 4, 5, 6 and the 17,000 SETs/s check, as table rows. The push baseline
 * (figure 1's RFC 8935 push rate from delivery.ts, same run) is passed in for the ratio.
 */
import {randomUUID} from 'node:crypto'
import {writeFileSync} from 'node:fs'
import {join} from 'node:path'

import {generateKeyPair, readSigningKey, type Signer} from '../src/lib/keys.js'
import {mintSet} from '../src/lib/mint.js'
import {TEMPLATE} from './crypto.js'
import {type BenchConfig, fmtMs, fmtRate, fmtRatio, median, type Row} from './util.js'
import {builtCli, hs256Factory, listenEs256Rate, listenMemory} from './ws-spawn.js'
import {type Minted, scratchDir, wsLatency, wsThroughput} from './ws.js'

const SUSTAIN_TARGET = 17_000

/**
 * `count` SETs with the jtis pushpull mints (time-ordered UUID v7), or with random UUID v4 jtis
 * as some transmitters send (`v4`), which cost an SQLite ledger more: see figure 4b.
 */
async function mintMany(signer: Signer, count: number, v4 = false): Promise<Minted[]> {
  const out: Minted[] = []
  for (let i = 0; i < count; i++) {
    const {claims, token} = await mintSet(TEMPLATE, signer, v4 ? {randomUUID} : {})
    out.push({jti: claims.jti, token})
  }

  return out
}

export async function measureWs(config: BenchConfig, pushRates: {off: number; es256: number}): Promise<{figures: Record<string, unknown>; rows: Row[]}> {
  const scratch = scratchDir()
  const rows: Row[] = []
  const figures: Record<string, unknown> = {}
  try {
    const pair = await generateKeyPair('ES256', 'bench')
    writeFileSync(join(scratch.dir, 'k.pem'), pair.privatePem)
    const signer = await readSigningKey(join(scratch.dir, 'k.pem'), {kid: 'bench'})
    const count = config.quick ? 5000 : 20_000
    const rounds = config.quick ? 1 : 3
    const fresh = async (n = count, v4 = false): Promise<Minted[]> => mintMany(signer, n, v4)

    // Figure 1 (WebSocket) and figure 4, side by side per round.
    const samples = {disk: [] as number[], diskV4: [] as number[], es256: [] as number[], memory: [] as number[]}
    // Warm-up, not measured (JIT compilation of the session, ledger and SQLite paths).
    await wsThroughput(await fresh(), {jwks: null})
    await wsThroughput(await fresh(), {diskDir: scratch.dir, jwks: null})
    for (let round = 0; round < rounds; round++) {
      samples.memory.push(await wsThroughput(await fresh(), {jwks: null}))
      samples.es256.push(await wsThroughput(await fresh(), {jwks: pair.publicJwks}))
      samples.disk.push(await wsThroughput(await fresh(), {diskDir: scratch.dir, jwks: null}))
      samples.diskV4.push(await wsThroughput(await fresh(count, true), {diskDir: scratch.dir, jwks: null}))
    }

    const off = median(samples.memory)
    const es256 = median(samples.es256)
    const disk = median(samples.disk)
    const diskV4 = median(samples.diskV4)
    Object.assign(figures, {wsDisk: disk, wsDiskV4: diskV4, wsEs256: es256, wsOff: off})
    rows.push(
      {
        figure: '1',
        met: off / pushRates.off >= 25,
        ratio: fmtRatio(off / pushRates.off),
        target: '>= 25x push',
        value: fmtRate(off),
        what: 'pushpull WebSocket (batches of 100), verification off',
      },
      {figure: '1', ratio: fmtRatio(es256 / pushRates.es256), value: fmtRate(es256), what: 'pushpull WebSocket (batches of 100), verification ES256'},
      {
        figure: '4',
        met: disk / off >= 0.8,
        note: 'both ledgers SQLite (listen --state, stream --state) vs both in memory; jtis as pushpull mints them (UUID v7)',
        ratio: fmtRatio(disk / off),
        target: '>= 0.8x memory',
        value: `${fmtRate(disk)} (memory ${fmtRate(off)})`,
        what: 'WebSocket, ledgers on disk vs in memory',
      },
      {
        figure: '4b',
        note: 'the same with random UUID v4 jtis: every SET lands on a random page of both jti indexes',
        ratio: fmtRatio(diskV4 / off),
        value: `${fmtRate(diskV4)} (memory ${fmtRate(off)})`,
        what: 'WebSocket, ledgers on disk, random jtis',
      },
    )

    // Figure 6: latency at a fixed 5,000 SETs/s.
    const latency = await wsLatency(await fresh(config.quick ? 10_000 : 25_000), {jwks: pair.publicJwks, ratePerSec: 5000})
    figures.latency = latency
    rows.push({
      figure: '6',
      note: `ES256 verification on; ${latency.samples} SETs at ${fmtRate(latency.achieved)}; max ${fmtMs(latency.max)}; default batch/ack delays 10 ms each`,
      value: `p50 ${fmtMs(latency.p50)}, p99 ${fmtMs(latency.p99)}`,
      what: 'latency send -> ack over WebSocket at 5,000 SETs/s',
    })

    if (!builtCli()) {
      rows.push({figure: '5', note: 'not measured: run `npm run build` first', value: 'n/a', what: 'peak RSS, listen --ws'})
      return {figures, rows}
    }

    // Figure 5: one session, fresh SETs, listen --ws as a child process with state on disk.
    const secret = 'bench-hs256-secret-0123456789abcdef'
    const total = config.quick ? 100_000 : 1_000_000
    const memory = await listenMemory(total, secret, scratch.dir, hs256Factory(secret, TEMPLATE))
    figures.memory = memory
    rows.push({
      figure: '5',
      met: memory.peakRssMiB < 200,
      note: `RSS at 10% ${memory.rssAt10.toFixed(0)} MiB, 50% ${memory.rssAt50.toFixed(0)} MiB, end ${memory.rssAtEnd.toFixed(0)} MiB; HS256 verified, state on disk; ${fmtRate(memory.rate)}`,
      target: '< 200 MiB',
      value: `${memory.peakRssMiB.toFixed(0)} MiB`,
      what: `peak RSS, listen --ws, ${total.toLocaleString('en-US')} SETs in one session`,
    })

    // 17,000 SETs/s with ES256 verification: listen --ws child, --verify-workers 0, 1, 2.
    const perRun = config.quick ? 20_000 : 60_000
    const sustained: Record<string, number> = {}
    for (const workers of [0, 1, 2]) sustained[workers] = await listenEs256Rate(await fresh(perRun), pair.publicJwks, workers, scratch.dir)
    figures.listenEs256 = sustained
    const best = Math.max(...Object.values(sustained))
    rows.push({
      figure: '1b',
      met: best >= SUSTAIN_TARGET,
      note: `--verify-workers 0: ${fmtRate(sustained[0])}, 1: ${fmtRate(sustained[1])}, 2: ${fmtRate(sustained[2])}; state on disk; sender in the same machine`,
      ratio: fmtRatio(best / SUSTAIN_TARGET),
      target: '>= 17k/s',
      value: fmtRate(best),
      what: 'listen --ws (child process), ES256 verification',
    })
    return {figures, rows}
  } finally {
    scratch.remove()
  }
}
