/**
 * The session verifies message k+1 while message k is stored and handed off, and still stores,
 * reports, hands off and acks strictly in message order, nothing acked before its hand-off.
 */
import {afterEach, describe, expect, it} from 'vitest'

import {type ClientEvent, wsPeerIdOf, WsSessionClient} from '../../src/lib/bindings/ws.js'
import {StaticKeySource, verificationKeysFromJson} from '../../src/lib/keys.js'
import {Ledger} from '../../src/lib/ledger.js'
import {SetReceiver} from '../../src/lib/receiver.js'
import {MemoryLedgerStorage} from '../../src/lib/store.js'
import {createVerifier, type SetVerifier} from '../../src/lib/verify.js'
import {generatePeerKey, mintSets, publicJwks, startPushpullWsPeer} from '../helpers/peers/index.js'

const key = generatePeerKey('ES256', 'k1')

async function until(predicate: () => boolean, what: string, ms = 5000): Promise<void> {
  const end = Date.now() + ms
  while (!predicate()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`)
    await new Promise((resolve) => setTimeout(resolve, 5))
  }
}
const closers: Array<() => Promise<unknown> | unknown> = []
afterEach(async () => {
  while (closers.length > 0) await closers.pop()?.()
})

describe('WebSocket session pipelining', () => {
  it('verifies the next message during the hand-off of the current one, and acks in order after each hand-off', async () => {
    const peer = await startPushpullWsPeer({setsPerMessage: 1})
    closers.push(() => peer.close())
    const ledger = new Ledger({retry: {ackTimeoutMs: 60_000}, storage: new MemoryLedgerStorage()})
    closers.push(() => ledger.close())
    const theirs = mintSets(3, key)
    const jtis = theirs.map((s) => s.jti)
    peer.queue(theirs)

    const real = createVerifier({keys: [new StaticKeySource(verificationKeysFromJson(publicJwks([key]), 'test JWKS'))]})
    const verified: string[] = []
    const verifier: SetVerifier = {
      ...real,
      async verify(token) {
        const set = await real.verify(token)
        verified.push(set.claims.jti)
        return set
      },
    }
    // A stand-in for stdout: each reported batch is "written" and stays unflushed until released;
    // like stdoutFlushed, the hand-off waits for everything written so far.
    const gates: Array<{promise: Promise<void>; release: () => void; released: boolean}> = []
    const handoff = (): Promise<void> | undefined => {
      while (gates.length < received.length) {
        let release!: () => void
        const promise = new Promise<void>((resolve) => (release = resolve))
        const gate = {promise, release: () => ((gate.released = true), release()), released: false}
        gates.push(gate)
      }

      const open = gates.filter((gate) => !gate.released)
      return open.length === 0 ? undefined : Promise.all(open.map((gate) => gate.promise)).then(() => {})
    }

    const pending = {
      get length() {
        return gates.filter((gate) => !gate.released).length
      },
      shift() {
        return gates.find((gate) => !gate.released)?.release
      },
      splice() {
        return gates.filter((gate) => !gate.released).map((gate) => gate.release)
      },
    }

    const received: string[][] = []
    const events: ClientEvent[] = []
    const client = new WsSessionClient({
      ackDelayMs: 0,
      batchDelayMs: 0,
      handoff,
      ledger,
      onEvent(event) {
        events.push(event)
        if (event.type === 'received') received.push(event.outcomes.map((o) => o.key))
      },
      receiver: new SetReceiver({ledger, verifier}),
      url: peer.url,
    })
    const running = client.run()
    running.catch(() => {})
    closers.push(async () => {
      for (const release of pending.splice()) release()
      await client.stop()
      await running.catch(() => {})
    })

    const handoffOpen = async (n: number): Promise<void> => until(() => pending.length >= n, `${n} hand-off(s) pending`)

    await handoffOpen(1)
    // Message 1 is stored and waits for its hand-off; message 2 was verified meanwhile, not stored.
    await until(() => verified.length >= 2, 'message 2 verified')
    expect(received).toEqual([[jtis[0]]])
    expect(verified.slice(0, 2)).toEqual([jtis[0], jtis[1]])
    expect(ledger.stats(wsPeerIdOf(peer.url))[0]?.inbox.accepted).toBe(1)
    expect(peer.ackedByClient).toEqual([])

    pending.shift()?.()
    await handoffOpen(1)
    expect(received).toEqual([[jtis[0]], [jtis[1]]])
    // Only what was handed off may have been acked (whether the ack of 1 already left is timing).
    await new Promise((resolve) => setTimeout(resolve, 20))
    expect(jtis.slice(0, 1)).toEqual(expect.arrayContaining(peer.ackedByClient))

    pending.shift()?.()
    await handoffOpen(1)
    expect(received).toEqual([[jtis[0]], [jtis[1]], [jtis[2]]])
    await new Promise((resolve) => setTimeout(resolve, 20))
    expect(jtis.slice(0, 2)).toEqual(expect.arrayContaining(peer.ackedByClient))

    pending.shift()?.()
    await until(() => peer.ackedByClient.length === 3, 'ack 3')
    expect([...peer.ackedByClient].sort()).toEqual([...jtis].sort())
    expect(events.filter((e) => e.type === 'error')).toEqual([])
  })
})
