/**
 * runPollSession (src/lib/poll-session.ts) on its own: the real RFC 8936 poll binding and HTTP
 * client against the spec poll transmitter (test/helpers/peers), a real SetReceiver on a memory
 * ledger, and injected sleep/random so backoff is checked without waiting.
 */
import {afterEach, beforeEach, describe, expect, it} from 'vitest'

import {createRfc8936Poller} from '../../src/lib/bindings/poll.js'
import type {Poller} from '../../src/lib/bindings/types.js'
import {StaticKeySource, verificationKeysFromJson} from '../../src/lib/keys.js'
import {Ledger} from '../../src/lib/ledger.js'
import {runPollSession} from '../../src/lib/poll-session.js'
import {SetReceiver} from '../../src/lib/receiver.js'
import {DEFAULT_BACKOFF, retryDelay} from '../../src/lib/retry.js'
import {MemoryLedgerStorage} from '../../src/lib/store/memory.js'
import {createHttpClient, type HttpClient} from '../../src/lib/transport/http.js'
import {createVerifier} from '../../src/lib/verify.js'
import {generatePeerKey, mintSets, type PollTransmitter, publicJwks, startPollTransmitter} from '../helpers/peers/index.js'

const key = generatePeerKey('ES256', 'poll-key')
const PEER = 'http://transmitter.test/poll'

let tx: PollTransmitter
let client: HttpClient
let receiver: SetReceiver

beforeEach(async () => {
  tx = await startPollTransmitter({longPollTimeoutMs: 300})
  client = createHttpClient({bodyTimeoutMs: 2000, connectTimeoutMs: 2000, headersTimeoutMs: 2000})
  const verifier = createVerifier({keys: [new StaticKeySource(verificationKeysFromJson(publicJwks([key]), 'test JWKS'))]})
  receiver = new SetReceiver({ledger: new Ledger({storage: new MemoryLedgerStorage()}), verifier})
})

afterEach(async () => {
  await client.close()
  await tx.close()
})

const poller = () => createRfc8936Poller({client, url: tx.url})

/** The sleeps the session asked for, resolved at once. */
function recordingSleep(): {sleeps: number[]; sleep: (ms: number) => Promise<void>} {
  const sleeps: number[] = []
  return {sleep: async (ms) => void sleeps.push(ms), sleeps}
}

describe('one-shot', () => {
  it('polls once, then sends one ack-only request for what it received', async () => {
    const sets = mintSets(2, key)
    tx.queue(sets)
    const summary = await runPollSession({peer: PEER, poller: poller(), receiver, returnImmediately: true, signal: new AbortController().signal})
    expect(summary).toMatchObject({acked: 2, polls: 1, received: 2, setErrs: 0})
    expect(summary.flushError).toBeUndefined()
    expect(tx.polls).toHaveLength(2)
    expect(tx.polls[0]).toMatchObject({ack: [], returnImmediately: true, returned: sets.map((s) => s.jti)})
    expect(tx.polls[1]).toMatchObject({ack: sets.map((s) => s.jti), maxEvents: 0, returnImmediately: true, returned: []})
    expect(tx.pending()).toEqual([])
    expect(receiver.owed(PEER, 10, new Map()).ack).toEqual([])
  })

  it('skips the ack-only request when nothing is owed', async () => {
    const summary = await runPollSession({peer: PEER, poller: poller(), receiver, returnImmediately: true, signal: new AbortController().signal})
    expect(summary).toMatchObject({acked: 0, polls: 1, received: 0})
    expect(tx.requestCount()).toBe(1)
  })

  it('throws a failed poll (no retry without --follow) and keeps what is owed', async () => {
    tx.script({body: '{"err":"invalid_request"}', headers: {'content-type': 'application/json'}, status: 503})
    await expect(runPollSession({peer: PEER, poller: poller(), receiver, returnImmediately: true, signal: new AbortController().signal})).rejects.toMatchObject({
      code: 'ERR_PEER_STATUS',
      details: {status: 503},
    })
    expect(tx.requestCount()).toBe(1)
  })
})

describe('one-shot drain (moreAvailable)', () => {
  /** The real poller, as seen through a transmitter that serves at most `cap` SETs per response (RFC 8936 allows fewer than maxEvents). */
  function capped(cap: number): {asked: Array<number | undefined>; poller: Poller} {
    const inner = poller()
    const asked: Array<number | undefined> = []
    return {
      asked,
      poller: {
        ...inner,
        async poll(params, signal) {
          asked.push(params.maxEvents)
          return inner.poll({...params, maxEvents: Math.min(cap, params.maxEvents ?? cap)}, signal)
        },
      },
    }
  }

  it('asks each follow-up request for the rest of maxEvents only', async () => {
    tx.queue(mintSets(5, key))
    const {asked, poller: p} = capped(2)
    const summary = await runPollSession({maxEvents: 3, peer: PEER, poller: p, receiver, returnImmediately: true, signal: new AbortController().signal})
    expect(asked).toEqual([3, 1])
    expect(tx.polls.map((poll) => [poll.maxEvents, poll.returned.length])).toEqual([[2, 2], [1, 1], [0, 0]])
    expect(summary).toMatchObject({acked: 3, moreAvailable: true, polls: 2, received: 3})
  })

  it('stops at maxDrainPolls, not at all with drain: false, else when moreAvailable ends', async () => {
    tx.queue(mintSets(6, key))
    const run = (extra: {drain?: boolean; maxDrainPolls?: number}) =>
      runPollSession({...extra, peer: PEER, poller: capped(1).poller, receiver, returnImmediately: true, signal: new AbortController().signal})
    expect(await run({maxDrainPolls: 2})).toMatchObject({acked: 2, moreAvailable: true, polls: 2, received: 2})
    expect(await run({drain: false})).toMatchObject({acked: 1, moreAvailable: true, polls: 1, received: 1})
    expect(await run({})).toMatchObject({acked: 3, moreAvailable: false, polls: 3, received: 3})
    expect(tx.pending()).toEqual([])
  })
})

describe('follow', () => {
  it('backs off on retryable failures (Retry-After honoured, jittered), then carries on', async () => {
    tx.script({headers: {'retry-after': '2'}, status: 503}, {destroy: true}, {status: 502})
    tx.queue(mintSets(1, key))
    const {sleep, sleeps} = recordingSleep()
    const retries: Array<{code: string; delayMs: number}> = []
    const summary = await runPollSession({
      follow: true,
      onRetry: (error, delayMs) => retries.push({code: error.code, delayMs}),
      peer: PEER,
      poller: poller(),
      random: () => 0.5,
      receiver,
      returnImmediately: true,
      signal: new AbortController().signal,
      sleep,
      stopAfter: 1,
    })
    expect(summary).toMatchObject({acked: 1, polls: 4, received: 1})
    expect(retries.map((r) => r.code)).toEqual(['ERR_PEER_STATUS', 'ERR_CONNECT', 'ERR_PEER_STATUS'])
    // Retry-After: 2 -> 2000 ms plus jitter; then exponential backoff for attempts 1 and 2.
    expect(sleeps).toEqual([retryDelay(0, 2000, DEFAULT_BACKOFF, () => 0.5), retryDelay(1, undefined, DEFAULT_BACKOFF, () => 0.5), retryDelay(2, undefined, DEFAULT_BACKOFF, () => 0.5)])
    expect(sleeps[0]).toBeGreaterThanOrEqual(2000)
    expect(sleeps[2]!).toBeGreaterThan(sleeps[1]!)
    expect(retries.map((r) => r.delayMs)).toEqual(sleeps)
  })

  it('stops at a credentials failure instead of retrying', async () => {
    tx.script({body: '{"err":"authentication_failed"}', headers: {'content-type': 'application/json'}, status: 401})
    const {sleep, sleeps} = recordingSleep()
    await expect(runPollSession({follow: true, peer: PEER, poller: poller(), receiver, signal: new AbortController().signal, sleep})).rejects.toMatchObject({code: 'ERR_CREDENTIALS'})
    expect(sleeps).toEqual([])
    expect(tx.requestCount()).toBe(1)
  })

  it('abort (SIGINT) stops polling and sends one final ack-only request for what was decided', async () => {
    const sets = mintSets(3, key)
    tx.queue(sets)
    const controller = new AbortController()
    const summary = await runPollSession({
      follow: true,
      onReceived: () => controller.abort(),
      peer: PEER,
      poller: poller(),
      receiver,
      signal: controller.signal,
    })
    expect(summary).toMatchObject({acked: 3, polls: 1, received: 3})
    expect(summary.stoppedBy).toMatchObject({code: 'ERR_ABORTED'})
    expect(tx.polls).toHaveLength(2)
    expect(tx.polls[1]).toMatchObject({ack: sets.map((s) => s.jti), maxEvents: 0, returnImmediately: true})
    expect(tx.pending()).toEqual([])
  })

  it('abort during a held long poll ends it without an ack-only request when nothing is owed', async () => {
    const controller = new AbortController()
    const running = runPollSession({follow: true, peer: PEER, poller: poller(), receiver, signal: controller.signal})
    await tx.waitFor(() => tx.waiting() === 1, 2000)
    controller.abort()
    const summary = await running
    expect(summary.stoppedBy).toMatchObject({code: 'ERR_ABORTED'})
    expect(summary.polls).toBe(1)
    expect(tx.polls).toHaveLength(1)
  })
})
