import {createServer, type Server} from 'node:http'
import {mkdtempSync, rmSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'

import {afterAll, afterEach, beforeAll, describe, expect, it} from 'vitest'

import {generateKeyPair, JwksUrlKeySource, readSigningKey, type Signer, StaticKeySource, verificationKeysFromJson} from '../../src/lib/keys.js'
import {Ledger} from '../../src/lib/ledger.js'
import {mintSet} from '../../src/lib/mint.js'
import {SetReceiver, type ReceiveOutcome} from '../../src/lib/receiver.js'
import {MemoryLedgerStorage, openLedger} from '../../src/lib/store.js'
import {createVerifier} from '../../src/lib/verify.js'

const ISS = 'https://tx.example'
const AUD = 'https://rx.example'
const SESSION_REVOKED = 'https://schemas.openid.net/secevent/caep/event-type/session-revoked'
const PEER = 'peer-a'

let signer: Signer
let otherSigner: Signer
let jwks: {keys: unknown[]}
const dirs: string[] = []

beforeAll(async () => {
  const pair = await generateKeyPair('ES256', 'k1')
  const other = await generateKeyPair('ES256', 'k1')
  const dir = mkdtempSync(join(tmpdir(), 'pp-recv-'))
  dirs.push(dir)
  const {writeFileSync} = await import('node:fs')
  writeFileSync(join(dir, 'k1.json'), JSON.stringify(pair.privateJwk))
  writeFileSync(join(dir, 'other.json'), JSON.stringify(other.privateJwk))
  signer = await readSigningKey(join(dir, 'k1.json'))
  otherSigner = await readSigningKey(join(dir, 'other.json'))
  jwks = pair.publicJwks
})

afterAll(() => {
  for (const dir of dirs) rmSync(dir, {force: true, recursive: true})
})

async function mint(overrides: {jti?: string; iss?: string; reason?: string} = {}, key: Signer = signer): Promise<{jti: string; token: string}> {
  const minted = await mintSet(
    {
      aud: AUD,
      events: {[SESSION_REVOKED]: overrides.reason === undefined ? {} : {reason_admin: {en: overrides.reason}}},
      iss: overrides.iss ?? ISS,
      jti: overrides.jti,
      sub_id: {email: 'ana@example.com', format: 'email'},
    },
    key,
  )
  return {jti: minted.claims.jti, token: minted.token}
}

function verifier() {
  return createVerifier({audience: AUD, issuer: ISS, keys: [new StaticKeySource(verificationKeysFromJson(jwks, 'test JWKS'))]})
}

const storages = {
  memory: () => new Ledger({storage: new MemoryLedgerStorage()}),
  sqlite: () => {
    const dir = mkdtempSync(join(tmpdir(), 'pp-recv-db-'))
    dirs.push(dir)
    return openLedger({path: join(dir, 'state.db')})
  },
}

function byKey(outcomes: ReceiveOutcome[]): Record<string, ReceiveOutcome> {
  return Object.fromEntries(outcomes.map((o) => [o.key, o]))
}

describe.each(Object.entries(storages))('SetReceiver on %s storage', (_name, makeLedger) => {
  let ledger: Ledger
  afterEach(() => ledger?.close())

  it('accepts valid SETs, rejects bad ones per SET, and owes acks only after recording', async () => {
    ledger = makeLedger()
    const receiver = new SetReceiver({ledger, verifier: verifier()})
    const good = await mint()
    const wrongKey = await mint({}, otherSigner)
    const wrongIss = await mint({iss: 'https://evil.example'})
    const result = await receiver.receive(PEER, {
      invalidSets: new Map([['not-a-string', {description: 'the "sets" value under "not-a-string" is not a string', err: 'invalid_request'}]]),
      sets: new Map([
        [good.jti, good.token],
        [wrongKey.jti, wrongKey.token],
        [wrongIss.jti, wrongIss.token],
        ['garbage', 'not.a.jwt!'],
      ]),
    })
    const outcomes = byKey(result.outcomes)
    expect(outcomes[good.jti]).toMatchObject({status: 'new', verdict: 'accepted'})
    expect(outcomes[wrongKey.jti]).toMatchObject({setErr: {err: 'invalid_key'}, status: 'rejected'})
    expect((outcomes[wrongKey.jti] as {error: {code: string}}).error.code).toBe('ERR_SET_SIGNATURE')
    expect(outcomes[wrongIss.jti]).toMatchObject({iss: 'https://evil.example', setErr: {err: 'invalid_issuer'}, status: 'rejected'})
    expect(outcomes.garbage).toMatchObject({setErr: {err: 'invalid_request'}, status: 'rejected'})
    expect(outcomes['not-a-string']).toMatchObject({setErr: {err: 'invalid_request'}, status: 'rejected'})

    const owed = receiver.owed(PEER, 100)
    expect(owed.ack).toEqual([good.jti])
    expect([...owed.setErrs.keys()].sort()).toEqual([wrongKey.jti, wrongIss.jti, 'garbage', 'not-a-string'].sort())
    receiver.delivered(PEER, owed)
    const after = receiver.owed(PEER, 100)
    expect(after.ack).toEqual([])
    expect(after.setErrs.size).toBe(0)
  })

  it('rejects a SET whose sets key differs from its jti, under the key', async () => {
    ledger = makeLedger()
    const receiver = new SetReceiver({ledger, verifier: verifier()})
    const set = await mint()
    const {outcomes} = await receiver.receive(PEER, {sets: new Map([['other-key', set.token]])})
    expect(outcomes).toHaveLength(1)
    expect(outcomes[0]).toMatchObject({key: 'other-key', status: 'rejected', setErr: {err: 'invalid_request'}})
    expect((outcomes[0] as {setErr: {description: string}}).setErr.description).toBe(
      `the "sets" key "other-key" differs from the SET's jti "${set.jti}"`,
    )
    expect([...receiver.owed(PEER, 10).setErrs.keys()]).toEqual(['other-key'])
  })

  it('acks a redelivered SET again without reporting it as new', async () => {
    ledger = makeLedger()
    const receiver = new SetReceiver({ledger, verifier: verifier()})
    const set = await mint()
    const first = await receiver.receive(PEER, {sets: new Map([[set.jti, set.token]])})
    expect(first.outcomes[0]?.status).toBe('new')
    receiver.delivered(PEER, receiver.owed(PEER, 10))
    const second = await receiver.receive(PEER, {sets: new Map([[set.jti, set.token]])})
    expect(second.outcomes[0]?.status).toBe('duplicate')
    expect(receiver.owed(PEER, 10).ack).toEqual([set.jti])
  })

  it('answers a reused (iss, jti) with a different payload with an immediate invalid_request', async () => {
    ledger = makeLedger()
    const receiver = new SetReceiver({ledger, verifier: verifier()})
    const original = await mint({jti: 'fixed-jti', reason: 'one'})
    const impostor = await mint({jti: 'fixed-jti', reason: 'two'})
    await receiver.receive(PEER, {sets: new Map([[original.jti, original.token]])})
    receiver.delivered(PEER, receiver.owed(PEER, 10))
    const result = await receiver.receive(PEER, {sets: new Map([[impostor.jti, impostor.token]])})
    expect(result.outcomes[0]).toMatchObject({status: 'rejected', setErr: {err: 'invalid_request'}})
    expect((result.outcomes[0] as {error: {code: string}}).error.code).toBe('ERR_SET_CONFLICT')
    expect(result.immediate.get('fixed-jti')?.err).toBe('invalid_request')
    const owed = receiver.owed(PEER, 10, result.immediate)
    expect(owed.ack).toEqual([])
    expect(owed.setErrs.get('fixed-jti')?.err).toBe('invalid_request')
  })

  it('stores SETs undecided in manual mode and owes nothing until decided', async () => {
    ledger = makeLedger()
    const receiver = new SetReceiver({decide: 'manual', ledger, verifier: verifier()})
    const set = await mint()
    const {outcomes} = await receiver.receive(PEER, {sets: new Map([[set.jti, set.token]])})
    expect(outcomes[0]).toMatchObject({status: 'new', verdict: 'undecided'})
    expect(receiver.owed(PEER, 10).ack).toEqual([])
    ledger.decide(PEER, [{jti: set.jti, verdict: 'accepted'}])
    expect(receiver.owed(PEER, 10).ack).toEqual([set.jti])
  })
})

describe('SetReceiver with an unreachable JWKS', () => {
  let server: Server
  let url: string
  beforeAll(async () => {
    server = createServer((_req, res) => {
      res.writeHead(200, {'content-type': 'text/html'})
      res.end('<html>maintenance</html>')
    })
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
    const address = server.address()
    if (address === null || typeof address === 'string') throw new Error('no port')
    url = `http://127.0.0.1:${address.port}/jwks.json`
  })
  afterAll(async () => new Promise<void>((resolve) => server.close(() => resolve())))

  it('defers the SET: no ack, no setErr, nothing recorded', async () => {
    const ledger = new Ledger({storage: new MemoryLedgerStorage()})
    const receiver = new SetReceiver({ledger, verifier: createVerifier({keys: [new JwksUrlKeySource(url)]})})
    const set = await mint()
    const {outcomes} = await receiver.receive(PEER, {sets: new Map([[set.jti, set.token]])})
    expect(outcomes).toHaveLength(1)
    expect(outcomes[0]?.status).toBe('deferred')
    expect((outcomes[0] as {error: {code: string}}).error.code).toBe('ERR_JWKS_FETCH')
    const owed = receiver.owed(PEER, 10)
    expect(owed.ack).toEqual([])
    expect(owed.setErrs.size).toBe(0)
    expect(ledger.stats(PEER)).toEqual([])
    ledger.close()
  })
})

describe('SetReceiver when storage fails', () => {
  it('owes nothing for a batch it could not store', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'pp-recv-full-'))
    dirs.push(dir)
    // A tiny page cap stands in for a full disk.
    const ledger = openLedger({maxPageCount: 12, path: join(dir, 'state.db')})
    const receiver = new SetReceiver({ledger, verifier: verifier()})
    const sets = await Promise.all(Array.from({length: 200}, async () => mint({reason: 'x'.repeat(500)})))
    await expect(receiver.receive(PEER, {sets: new Map(sets.map((s) => [s.jti, s.token]))})).rejects.toMatchObject({code: 'ERR_STATE_IO'})
    expect(receiver.owed(PEER, 1000).ack).toEqual([])
    ledger.close()
  })
})
