/**
 * Nothing is acknowledged before it was handed off: receivers print a SET, wait until the printed
 * line has left the process, and only then answer the peer. A gate stands in for stdout here.
 */
import {request as httpRequest} from 'node:http'

import {afterEach, describe, expect, it} from 'vitest'

import {stdoutFlushed, writeOut} from '../../src/cli/stdout.js'
import {wsPeerIdOf, WsSessionClient} from '../../src/lib/bindings/ws.js'
import {StaticKeySource, verificationKeysFromJson} from '../../src/lib/keys.js'
import {Ledger} from '../../src/lib/ledger.js'
import {SetReceiver} from '../../src/lib/receiver.js'
import {createListener, type ListenerEvent} from '../../src/lib/server.js'
import {MemoryLedgerStorage} from '../../src/lib/store.js'
import {createVerifier} from '../../src/lib/verify.js'
import {generatePeerKey, makeSetClaims, mintSets, publicJwks, signSet, startPushpullWsPeer} from '../helpers/peers/index.js'

const key = generatePeerKey('ES256', 'k1')
const closers: Array<() => Promise<unknown> | unknown> = []
afterEach(async () => {
  while (closers.length > 0) await closers.pop()?.()
})

/** A hand-off that stays pending until `open()`; `calls` counts how often it was consulted. */
function gate() {
  let release: () => void = () => {}
  const opened = new Promise<void>((resolve) => {
    release = resolve
  })
  let isOpen = false
  const waiters: Array<() => void> = []
  const state = {
    calls: 0,
    handoff: (): Promise<void> | undefined => {
      state.calls++
      for (const wake of waiters.splice(0)) wake()
      return isOpen ? undefined : opened
    },
    open() {
      isOpen = true
      release()
    },
    /** Resolves once the hand-off has been consulted at least `n` times. */
    async consulted(n: number): Promise<void> {
      while (state.calls < n) await new Promise<void>((resolve) => waiters.push(resolve))
    },
  }
  return state
}

function receiverFor(ledger: Ledger): SetReceiver {
  const verifier = createVerifier({keys: [new StaticKeySource(verificationKeysFromJson(publicJwks([key]), 'test JWKS'))]})
  return new SetReceiver({ledger, verifier})
}

describe('stdoutFlushed', () => {
  it('is undefined when nothing is pending, and resolves only once every write was flushed', async () => {
    expect(stdoutFlushed()).toBeUndefined()
    const original = process.stdout.write
    const callbacks: Array<() => void> = []
    const written: string[] = []
    process.stdout.write = ((text: string, _encoding: string, callback: () => void) => {
      written.push(text)
      callbacks.push(callback)
      return true
    }) as typeof process.stdout.write
    try {
      writeOut('one\n')
      writeOut('two\n')
      const flushed = stdoutFlushed()
      expect(flushed).toBeInstanceOf(Promise)
      let done = false
      void flushed?.then(() => {
        done = true
      })
      callbacks[0]?.()
      await Promise.resolve()
      expect(done).toBe(false)
      callbacks[1]?.()
      await flushed
      expect(done).toBe(true)
      expect(written).toEqual(['one\n', 'two\n'])
      expect(stdoutFlushed()).toBeUndefined()

      // Writes issued after the wait began do not hold it back.
      writeOut('three\n')
      const waiting = stdoutFlushed()
      writeOut('four\n')
      callbacks[2]?.()
      await waiting
      expect(stdoutFlushed()).toBeInstanceOf(Promise)
      callbacks[3]?.()
      expect(stdoutFlushed()).toBeUndefined()
    } finally {
      process.stdout.write = original
    }
  })
})

describe('listener hand-off', () => {
  it('answers an RFC 8935 push (202 = ack) only after the reported SET was handed off', async () => {
    const ledger = new Ledger({storage: new MemoryLedgerStorage()})
    const events: ListenerEvent[] = []
    const g = gate()
    const listener = createListener({handoff: g.handoff, ledger, onEvent: (event) => events.push(event), port: 0, receiver: receiverFor(ledger)})
    const {address} = await listener.listen()
    closers.push(async () => {
      await listener.close(200)
      ledger.close()
    })

    const token = signSet(makeSetClaims({jti: 'push-1'}), key)
    let status: number | undefined
    const answered = new Promise<number>((resolve, reject) => {
      const req = httpRequest(
        {headers: {'content-type': 'application/secevent+jwt', host: `127.0.0.1:${address.port}`}, host: '127.0.0.1', method: 'POST', path: '/events', port: address.port},
        (res) => {
          res.resume()
          status = res.statusCode
          resolve(res.statusCode ?? 0)
        },
      )
      req.on('error', reject)
      req.end(token)
    })

    await g.consulted(1)
    // The SET is stored and reported, but no answer has gone out while the hand-off is pending.
    expect(events.some((e) => e.type === 'set' && e.jti === 'push-1')).toBe(true)
    expect(status).toBeUndefined()
    g.open()
    expect(await answered).toBe(202)
  })
})

describe('WebSocket session hand-off', () => {
  it('sends no ack for received SETs until they were handed off', async () => {
    const peer = await startPushpullWsPeer({})
    closers.push(() => peer.close())
    const ledger = new Ledger({retry: {ackTimeoutMs: 60_000}, storage: new MemoryLedgerStorage()})
    closers.push(() => ledger.close())
    const theirs = mintSets(3, key)
    peer.queue(theirs)
    const g = gate()
    const client = new WsSessionClient({
      ackDelayMs: 1,
      batchDelayMs: 1,
      handoff: g.handoff,
      ledger,
      receiver: receiverFor(ledger),
      url: peer.url,
    })
    const running = client.run()
    running.catch(() => {})
    closers.push(async () => {
      await client.stop()
      await running.catch(() => {})
    })

    // Consulted after the batch was reported, and again by the ack flush, which is now waiting.
    await g.consulted(2)
    expect(ledger.stats(wsPeerIdOf(peer.url))[0]?.inbox.accepted).toBe(3)
    expect(peer.ackedByClient).toEqual([])
    g.open()
    await peer.waitFor(() => peer.ackedByClient.length === 3)
    expect(peer.ackedByClient.sort()).toEqual(theirs.map((s) => s.jti).sort())
  })
})
