/**
 * Figure 4 alone (focused, quicker than `npm run bench`): WebSocket throughput with both ledgers on
 * SQLite vs both in memory, alternating per round, verification off. Prints the medians and the
 * ratio. `tsx bench/fig4.ts [rounds] [count]`; `FIG4_JTI=v4` mints random UUID v4 jtis (figure 4b).
 */
import {randomUUID} from 'node:crypto'

import {generateKeyPair, readSigningKey} from '../src/lib/keys.js'
import {mintSet} from '../src/lib/mint.js'
import {writeFileSync} from 'node:fs'
import {join} from 'node:path'

import {TEMPLATE} from './crypto.js'
import {fmtRate, median} from './util.js'
import {type Minted, scratchDir, wsThroughput} from './ws.js'

const rounds = Number(process.argv[2] ?? 5)
const count = Number(process.argv[3] ?? 20_000)
const scratch = scratchDir()
try {
  const pair = await generateKeyPair('ES256', 'bench')
  writeFileSync(join(scratch.dir, 'k.pem'), pair.privatePem)
  const signer = await readSigningKey(join(scratch.dir, 'k.pem'), {kid: 'bench'})
  // jtis as pushpull mints them (UUID v7); FIG4_JTI=v4 for random ones (figure 4b).
  const v4 = process.env.FIG4_JTI === 'v4'
  const fresh = async (): Promise<Minted[]> => {
    const out: Minted[] = []
    for (let i = 0; i < count; i++) {
      const {claims, token} = await mintSet(TEMPLATE, signer, v4 ? {randomUUID} : {})
      out.push({jti: claims.jti, token})
    }

    return out
  }

  const memory: number[] = []
  const disk: number[] = []
  // Warm-up, not measured.
  await wsThroughput(await fresh(), {jwks: null})
  await wsThroughput(await fresh(), {diskDir: scratch.dir, jwks: null})
  for (let round = 0; round < rounds; round++) {
    if (process.env.FIG4_ONLY !== 'disk') memory.push(await wsThroughput(await fresh(), {jwks: null}))
    disk.push(await wsThroughput(await fresh(), {diskDir: scratch.dir, jwks: null}))
  }

  const m = median(memory)
  const d = median(disk)
  console.log(`memory ${fmtRate(m)} [${memory.map((r) => fmtRate(r)).join(', ')}]`)
  console.log(`disk   ${fmtRate(d)} [${disk.map((r) => fmtRate(r)).join(', ')}]`)
  console.log(`ratio  ${(d / m).toFixed(2)}x (target >= 0.8x)`)
} finally {
  scratch.remove()
}
