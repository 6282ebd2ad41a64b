import {createPrivateKey} from 'node:crypto'
import {PassThrough, Writable} from 'node:stream'

import {Chalk} from 'chalk'
import {afterEach, beforeAll, describe, expect, it} from 'vitest'

import {pendingTable, reviewReceived} from '../../src/cli/interactive.js'
import type {Theme} from '../../src/cli/theme.js'
import {generateKeyPair, type Signer, StaticKeySource, verificationKeysFromJson} from '../../src/lib/keys.js'
import {Ledger} from '../../src/lib/ledger.js'
import {mintSet} from '../../src/lib/mint.js'
import {SetReceiver} from '../../src/lib/receiver.js'
import {MemoryLedgerStorage} from '../../src/lib/store/memory.js'
import {createVerifier} from '../../src/lib/verify.js'

const ISS = 'https://tx.example'
const PEER = 'token:alice'
const REVOKED = 'https://schemas.openid.net/secevent/caep/event-type/session-revoked'
const plain = new Chalk({level: 0})
const theme: Theme = {err: plain, out: plain}

let signer: Signer
let jwks: {keys: unknown[]}

beforeAll(async () => {
  const pair = await generateKeyPair('ES256', 'k1')
  signer = {alg: 'ES256', key: createPrivateKey(pair.privatePem), kid: 'k1'}
  jwks = pair.publicJwks
})

/** Keystrokes for inquirer: written one by one after the prompt has rendered. */
class Keys {
  readonly input = new PassThrough()
  text = ''
  readonly output = new Writable({
    write: (chunk: Buffer, _enc, done) => {
      this.text += chunk.toString('utf8')
      done()
    },
  })

  async press(...keys: string[]): Promise<void> {
    for (const key of keys) {
      await new Promise((resolve) => setTimeout(resolve, 15))
      this.input.write(key)
    }
  }
}

const ENTER = '\r'
const DOWN = '\u001B[B'
const SPACE = ' '

async function setup(count: number): Promise<{ledger: Ledger; outcomes: Awaited<ReturnType<SetReceiver['receive']>>['outcomes']; jtis: string[]}> {
  const ledger = new Ledger({storage: new MemoryLedgerStorage()})
  const verifier = createVerifier({keys: [new StaticKeySource(verificationKeysFromJson(jwks, 'test'))]})
  const receiver = new SetReceiver({decide: 'manual', ledger, verifier})
  const sets = new Map<string, string>()
  for (let i = 0; i < count; i++) {
    const minted = await mintSet({events: {[REVOKED]: {}}, iss: ISS, jti: `jti-${i}`, sub_id: {email: `u${i}@example.com`, format: 'email'}}, signer)
    sets.set(minted.claims.jti, minted.token)
  }

  const {outcomes} = await receiver.receive(PEER, {sets})
  return {jtis: [...sets.keys()], ledger, outcomes}
}

describe('reviewReceived', () => {
  let ledger: Ledger | undefined
  afterEach(() => ledger?.close())

  it('ack all: every undecided SET becomes an owed ack', async () => {
    const s = await setup(2)
    ledger = s.ledger
    const keys = new Keys()
    const review = reviewReceived(s.outcomes, {input: keys.input, ledger, output: keys.output, peer: PEER, theme})
    await keys.press(ENTER)
    const decisions = await review
    expect(decisions).toEqual([
      {jti: 'jti-0', verdict: 'accepted'},
      {jti: 'jti-1', verdict: 'accepted'},
    ])
    expect(ledger.owed(PEER, 10).ack.sort()).toEqual(['jti-0', 'jti-1'])
    expect(keys.text).toContain('caep.session-revoked')
    expect(keys.text).toContain('email:u0@example.com')
    expect(keys.text).toContain('VERIFIED ES256')
  })

  it('reject some with a code and description, defer the rest', async () => {
    const s = await setup(3)
    ledger = s.ledger
    const keys = new Keys()
    const review = reviewReceived(s.outcomes, {input: keys.input, ledger, output: keys.output, peer: PEER, theme})
    // menu: down twice -> "Reject some"; checkbox: space on the first, enter; err: down once (invalid_key); description
    await keys.press(DOWN, DOWN, ENTER, SPACE, ENTER, DOWN, ENTER, 'bad', ENTER)
    // back at the menu with 2 left: down x4 -> Defer
    await keys.press(DOWN, DOWN, DOWN, DOWN, ENTER)
    const decisions = await review
    expect(decisions).toEqual([{description: 'bad', err: 'invalid_key', jti: 'jti-0', verdict: 'rejected'}])
    const owed = ledger.owed(PEER, 10)
    expect(owed.ack).toEqual([])
    expect([...owed.setErrs]).toEqual([['jti-0', {description: 'bad', err: 'invalid_key'}]])
    expect(ledger.stats(PEER)[0]?.inbox.undecided).toBe(2)
    expect(keys.text).toContain('2 SETs deferred')
  })

  it('pick which to ack, and the pending table shows both directions', async () => {
    const s = await setup(2)
    ledger = s.ledger
    ledger.enqueue(PEER, [{event: 'risc.account-disabled', jti: 'out-1', subject: 'email:x@example.com', token: 'a.b.c'}])
    const keys = new Keys()
    const review = reviewReceived(s.outcomes, {input: keys.input, ledger, output: keys.output, peer: PEER, theme})
    // menu: "Show pending acks" (down x3), then "Pick which to ack": un-tick the second
    await keys.press(DOWN, DOWN, DOWN, ENTER)
    await keys.press(DOWN, ENTER, DOWN, SPACE, ENTER)
    await keys.press(DOWN, DOWN, DOWN, DOWN, ENTER)
    const decisions = await review
    expect(decisions).toEqual([{jti: 'jti-0', verdict: 'accepted'}])
    expect(keys.text).toContain('we owe 2 (2 undecided), the peer owes 1')
    expect(keys.text).toContain('out-1')
    expect(keys.text).toContain('peer owes')
  })

  it('nothing decidable (auto mode): shows nothing and asks nothing', async () => {
    ledger = new Ledger({storage: new MemoryLedgerStorage()})
    const keys = new Keys()
    expect(await reviewReceived([], {input: keys.input, ledger, output: keys.output, peer: PEER, theme})).toEqual([])
    expect(keys.text).toBe('')
  })

  it('an abort while a prompt is open is ERR_ABORTED and keeps the SETs undecided', async () => {
    const s = await setup(1)
    ledger = s.ledger
    const keys = new Keys()
    const controller = new AbortController()
    const review = reviewReceived(s.outcomes, {input: keys.input, ledger, output: keys.output, peer: PEER, signal: controller.signal, theme})
    setTimeout(() => controller.abort(), 20)
    await expect(review).rejects.toMatchObject({code: 'ERR_ABORTED', message: 'the interactive view was interrupted; undecided SETs stay undecided'})
    expect(ledger.stats(PEER)[0]?.inbox.undecided).toBe(1)
  })
})

describe('pendingTable', () => {
  it('says when nothing is pending', () => {
    const ledger = new Ledger({storage: new MemoryLedgerStorage()})
    expect(pendingTable(ledger, PEER)).toBe('pending acks with token:alice: we owe 0 (0 undecided), the peer owes 0\n(nothing pending)')
  })
})
