/**
 * Figures 2 and 3: library verification and signing throughput (one core, one SET at a time)
 * next to the raw node:crypto limit for the same algorithm and key, measured in the same run.
 * jose 6 (what the library used before the node:crypto fast path) is measured too, for reference.
 */
import {constants, createHmac, createPrivateKey, createPublicKey, createSecretKey, type KeyObject, randomBytes, sign, timingSafeEqual, verify} from 'node:crypto'

import {CompactSign, compactVerify} from 'jose'

import {generateKeyPair, type Signer, StaticKeySource} from '../src/lib/keys.js'
import {mintSet, type SetTemplate} from '../src/lib/mint.js'
import {createVerifier} from '../src/lib/verify.js'
import {type BenchConfig, fmtRate, fmtRatio, type Row, sideBySide} from './util.js'

export const CRYPTO_ALGORITHMS = ['ES256', 'RS256', 'EdDSA', 'HS256'] as const
type Alg = (typeof CRYPTO_ALGORITHMS)[number]

/** Target ratio library / raw (issue 5). */
export const TARGET: Record<Alg, number> = {ES256: 0.8, EdDSA: 0.8, HS256: 0.5, RS256: 0.8}

export const TEMPLATE: SetTemplate = {
  aud: 'https://receiver.example',
  events: {'https://schemas.openid.net/secevent/caep/event-type/session-presented': {event_timestamp: 1_760_000_000}},
  iss: 'https://idp.example',
  sub_id: {email: 'user@example.com', format: 'email'},
}

interface KeyPair {
  alg: Alg
  privateKey: KeyObject
  publicKey: KeyObject
}

async function keyPairFor(alg: Alg): Promise<KeyPair> {
  if (alg === 'HS256') {
    const secret = createSecretKey(randomBytes(32))
    return {alg, privateKey: secret, publicKey: secret}
  }

  const pair = await generateKeyPair(alg, 'bench')
  const privateKey = createPrivateKey(pair.privatePem)
  return {alg, privateKey, publicKey: createPublicKey(privateKey)}
}

function hashOf(alg: Alg): string | null {
  return alg === 'EdDSA' ? null : 'sha256'
}

function rawVerifier(pair: KeyPair, input: Buffer, signature: Buffer): () => boolean {
  if (pair.alg === 'HS256') {
    return () => {
      const mac = createHmac('sha256', pair.publicKey).update(input).digest()
      return mac.length === signature.length && timingSafeEqual(mac, signature)
    }
  }

  const key = pair.alg === 'ES256' ? {dsaEncoding: 'ieee-p1363' as const, key: pair.publicKey} : pair.publicKey
  const hash = hashOf(pair.alg)
  return () => verify(hash, input, key, signature)
}

function rawSigner(pair: KeyPair, input: Buffer): () => Buffer {
  if (pair.alg === 'HS256') return () => createHmac('sha256', pair.privateKey).update(input).digest()
  const key = pair.alg === 'ES256' ? {dsaEncoding: 'ieee-p1363' as const, key: pair.privateKey} : pair.privateKey
  const hash = hashOf(pair.alg)
  return () => sign(hash, input, key)
}

void constants

export interface CryptoFigures {
  verify: Record<Alg, {raw: number; library: number; jose: number; ratio: number}>
  sign: Record<Alg, {raw: number; library: number; jose: number; ratio: number}>
}

export async function measureCrypto(config: BenchConfig): Promise<{figures: CryptoFigures; rows: Row[]}> {
  const figures = {sign: {}, verify: {}} as CryptoFigures
  const rows: Row[] = []
  const now = Date.now()
  for (const alg of CRYPTO_ALGORITHMS) {
    const pair = await keyPairFor(alg)
    const signer: Signer = {alg, key: pair.privateKey, kid: 'bench'}
    // Pre-minted SETs, cycled, so minting is not counted.
    const tokens = await Promise.all(Array.from({length: 64}, async () => (await mintSet(TEMPLATE, signer, {now: () => now})).token))
    const first = tokens[0] as string
    const [h, p, s] = first.split('.') as [string, string, string]
    const input = Buffer.from(`${h}.${p}`)
    const signature = Buffer.from(s, 'base64url')
    const verifier = createVerifier({
      algorithms: [alg],
      keys: [new StaticKeySource([{alg, key: pair.publicKey, kid: 'bench', source: 'bench key'}])],
      now: () => now,
    })
    let i = 0
    const next = (): string => tokens[i++ % tokens.length] as string
    const verifyRates = await sideBySide(
      {
        jose: async () => compactVerify(next(), pair.publicKey, {algorithms: [alg]}),
        library: async () => verifier.verify(next()),
        raw: rawVerifier(pair, input, signature),
      },
      config,
    )
    const v = {jose: verifyRates.jose ?? 0, library: verifyRates.library ?? 0, ratio: (verifyRates.library ?? 0) / (verifyRates.raw ?? 1), raw: verifyRates.raw ?? 0}
    figures.verify[alg] = v
    rows.push({
      figure: '2',
      met: v.ratio >= TARGET[alg],
      note: `jose 6: ${fmtRate(v.jose)}`,
      ratio: fmtRatio(v.ratio),
      target: `>= ${TARGET[alg]}x raw`,
      value: `${fmtRate(v.library)} (raw ${fmtRate(v.raw)})`,
      what: `verify ${alg}`,
    })

    const payload = new TextEncoder().encode(JSON.stringify({...TEMPLATE, iat: 1, jti: 'x'}))
    const signRates = await sideBySide(
      {
        jose: async () => new CompactSign(payload).setProtectedHeader({alg, kid: 'bench', typ: 'secevent+jwt'}).sign(pair.privateKey),
        library: async () => mintSet(TEMPLATE, signer),
        raw: rawSigner(pair, input),
      },
      config,
    )
    const g = {jose: signRates.jose ?? 0, library: signRates.library ?? 0, ratio: (signRates.library ?? 0) / (signRates.raw ?? 1), raw: signRates.raw ?? 0}
    figures.sign[alg] = g
    rows.push({
      figure: '3',
      met: g.ratio >= TARGET[alg],
      note: `jose 6: ${fmtRate(g.jose)}`,
      ratio: fmtRatio(g.ratio),
      target: `>= ${TARGET[alg]}x raw`,
      value: `${fmtRate(g.library)} (raw ${fmtRate(g.raw)})`,
      what: `sign ${alg}`,
    })
  }

  return {figures, rows}
}
