/**
 * Figure 4 alone (focused, quicker than `npm run bench`): WebSocket throughput with both ledgers on
 * SQLite vs both in memory, alternating per round, verification off. Prints the medians and the
 * ratio. `tsx bench/fig4.ts [rounds] [count]`.
 */
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
  let batch = 0
  const fresh = async (): Promise<Minted[]> => {
    const out: Minted[] = []
    const prefix = `f4-${batch++}`
    for (let i = 0; i < count; i++) {
      const {claims, token} = await mintSet(TEMPLATE, signer, {randomUUID: () => `${prefix}-${i}`})
      out.push({jti: claims.jti, token})
    }

    return out
  }

  const memory: number[] = []
  const disk: number[] = []
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
