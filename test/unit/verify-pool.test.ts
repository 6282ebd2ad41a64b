/**
 * The worker-thread verification pool: option validation, batches of concurrent checks with the
 * verifier's verdicts, and a closed pool. (Every tampered case and random token also goes through
 * the pool in verify-differential.test.ts.)
 */
import {generateKeyPairSync} from 'node:crypto'

import {afterAll, describe, expect, it} from 'vitest'

import {PushpullError} from '../../src/lib/errors.js'
import {secretVerificationKey, StaticKeySource} from '../../src/lib/keys.js'
import {mintSet} from '../../src/lib/mint.js'
import {createVerifier} from '../../src/lib/verify.js'
import {createVerifyPool, MAX_VERIFY_WORKERS} from '../../src/lib/verify-pool.js'

const NOW = 1_760_000_000_000
const TEMPLATE = {events: {'https://schemas.openid.net/secevent/caep/event-type/session-revoked': {}}, iss: 'https://idp.example'}

async function caught(fn: () => unknown): Promise<PushpullError> {
  try {
    await fn()
  } catch (error) {
    if (error instanceof PushpullError) return error
    throw error
  }

  throw new Error('expected a PushpullError')
}

describe('createVerifyPool', () => {
  const pools: Array<{close(): Promise<void>}> = []
  afterAll(async () => Promise.all(pools.map(async (p) => p.close())))

  it('refuses a worker count outside 1..64 and a bad batch size', async () => {
    for (const workers of [0, -1, 1.5, MAX_VERIFY_WORKERS + 1, Number.NaN]) {
      const error = await caught(() => createVerifyPool({workers}))
      expect(error.code).toBe('ERR_CONFIG')
      expect(error.message).toBe(`verify workers must be an integer from 1 to ${MAX_VERIFY_WORKERS}, got ${String(workers)}`)
    }

    const error = await caught(() => createVerifyPool({maxBatch: 0, workers: 1}))
    expect(error).toMatchObject({code: 'ERR_CONFIG', message: 'verify batch size must be an integer from 1 to 65536, got 0'})
  })

  it('judges a batch of concurrent SETs (ES256 and HS256, good and tampered) exactly as the in-thread verifier', async () => {
    const pool = createVerifyPool({maxBatch: 7, workers: 2})
    pools.push(pool)
    const ec = generateKeyPairSync('ec', {namedCurve: 'P-256'})
    const secret = secretVerificationKey('a'.repeat(32), 'the HMAC secret')
    const keys = [new StaticKeySource([{key: ec.publicKey, kid: 'ec', source: 'ec.pem'}, {...secret, kid: 'hs'}])]
    const options = {algorithms: ['ES256', 'HS256'], keys, now: () => NOW}
    const inThread = createVerifier(options)
    const pooled = createVerifier({...options, signatures: pool})
    const tokens: string[] = []
    for (let i = 0; i < 150; i++) {
      const signer = i % 2 === 0 ? {alg: 'ES256' as const, key: ec.privateKey, kid: 'ec'} : {alg: 'HS256' as const, key: secret.key, kid: 'hs'}
      const {token} = await mintSet(TEMPLATE, signer, {now: () => NOW})
      // Every third one tampered: last signature character changed.
      tokens.push(i % 3 === 0 ? `${token.slice(0, -2)}${token.at(-2) === 'A' ? 'B' : 'A'}${token.at(-1)}` : token)
    }

    const verdict = async (v: typeof inThread, t: string) =>
      v.verify(t).then(
        (set) => ({ok: set.claims.jti, verified: set.verified}),
        (error: PushpullError) => ({code: error.code, message: error.message}),
      )
    const expected = await Promise.all(tokens.map(async (t) => verdict(inThread, t)))
    const actual = await Promise.all(tokens.map(async (t) => verdict(pooled, t)))
    expect(actual).toEqual(expected)
    expect(actual.filter((v) => 'ok' in v)).toHaveLength(100)
    expect(actual.filter((v) => 'code' in v && v.code === 'ERR_SET_SIGNATURE')).toHaveLength(50)
    expect(actual.find((v) => 'code' in v)).toEqual({code: 'ERR_SET_SIGNATURE', message: 'the SET signature does not verify with the key from ec.pem'})
  })

  it('a closed pool fails checks with ERR_INTERNAL, which the verifier passes on', async () => {
    const pool = createVerifyPool({workers: 1})
    const ec = generateKeyPairSync('ec', {namedCurve: 'P-256'})
    const verifier = createVerifier({keys: [new StaticKeySource([{key: ec.publicKey, source: 'ec.pem'}])], now: () => NOW, signatures: pool})
    const {token} = await mintSet(TEMPLATE, {alg: 'ES256' as const, key: ec.privateKey}, {now: () => NOW})
    expect((await verifier.verify(token)).verified).toBe(true)
    await pool.close()
    const error = await caught(async () => verifier.verify(token))
    expect(error).toMatchObject({code: 'ERR_INTERNAL', message: 'the signature verification pool is closed'})
  })

  it('refuses a key the fast path does not cover', async () => {
    const pool = createVerifyPool({workers: 1})
    pools.push(pool)
    const rsa = generateKeyPairSync('rsa', {modulusLength: 1024})
    const error = await caught(async () => pool.check(rsa.publicKey, 'RS256', 'a.b', Buffer.alloc(128)))
    expect(error).toMatchObject({code: 'ERR_INTERNAL', message: 'the signature verification pool cannot check RS256 with this key'})
  })
})
