/**
 * Figure 1c: the delivery comparison of figure 1 (verification off) repeated across a link that
 * adds LINK_DELAY_MS each way (bench/link.ts), so every request pays a round trip the way it does
 * between two hosts. On bare loopback a request costs only CPU; here RFC 8935 push is bounded by
 * round trips (a few connections, one SET each), which is the load the pushpull draft addresses.
 * Context for figure 1, not one of the targets.
 */
import {writeFileSync} from 'node:fs'
import {join} from 'node:path'

import {generateKeyPair, readSigningKey} from '../src/lib/keys.js'
import {mintSet} from '../src/lib/mint.js'
import {TEMPLATE} from './crypto.js'
import {BINDINGS, runOnce} from './delivery.js'
import {type BenchConfig, fmtRate, fmtRatio, median, type Row} from './util.js'
import {type Minted, scratchDir, wsThroughput} from './ws.js'

export const LINK_DELAY_MS = 1

export async function measureLink(config: BenchConfig): Promise<{figures: Record<string, number>; rows: Row[]}> {
  const scratch = scratchDir()
  try {
    const pair = await generateKeyPair('ES256', 'bench')
    writeFileSync(join(scratch.dir, 'k.pem'), pair.privatePem)
    const signer = await readSigningKey(join(scratch.dir, 'k.pem'), {kid: 'bench'})
    const rounds = config.quick ? 1 : 3
    const mint = async (count: number): Promise<Minted[]> =>
      Promise.all(
        Array.from({length: count}, async () => {
          const {claims, token} = await mintSet(TEMPLATE, signer)
          return {jti: claims.jti, token}
        }),
      )
    const push = BINDINGS.find((b) => b.name === 'push')
    const pushpull = BINDINGS.find((b) => b.name === 'pushpull')
    if (push === undefined || pushpull === undefined) throw new Error('bench bindings changed')
    // Push is round-trip bound here, so it gets fewer SETs per round (its rate, not its count, is compared).
    const pushCount = config.quick ? 400 : 1500
    const batchCount = config.quick ? 5000 : 20_000
    const samples = {push: [] as number[], pushpull: [] as number[], ws: [] as number[]}
    for (let round = 0; round < rounds; round++) {
      samples.push.push(await runOnce(push, await mint(pushCount), false, pair.publicJwks, LINK_DELAY_MS))
      samples.pushpull.push(await runOnce(pushpull, await mint(batchCount), false, pair.publicJwks, LINK_DELAY_MS))
      samples.ws.push(await wsThroughput(await mint(batchCount), {jwks: null, linkDelayMs: LINK_DELAY_MS}))
    }

    const figures = {push: median(samples.push), pushpull: median(samples.pushpull), ws: median(samples.ws)}
    const note = `${LINK_DELAY_MS} ms added each way (bench/link.ts); verification off`
    const rows: Row[] = [
      {figure: '1c', note, ratio: fmtRatio(1), value: fmtRate(figures.push), what: 'push (4 connections), across a link'},
      {figure: '1c', note, ratio: fmtRatio(figures.pushpull / figures.push), value: fmtRate(figures.pushpull), what: 'pushpull (batches of 100), across a link'},
      {figure: '1c', note, ratio: fmtRatio(figures.ws / figures.push), value: fmtRate(figures.ws), what: 'pushpull WebSocket (batches of 100), across a link'},
    ]
    return {figures, rows}
  } finally {
    scratch.remove()
  }
}
