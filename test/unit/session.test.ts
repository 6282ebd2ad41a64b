/**
 * The WebSocket session engine and client against the spec peer (test/helpers/peers, written
 * from the drafts) and against pushpull's own session server; WebSocket rows of bad-inputs.md;
 * faults through the TCP fault proxy.
 */
import {createServer, type Server} from 'node:http'

import {afterEach, describe, expect, it} from 'vitest'

import {type ClientEvent, WsSessionClient, wsPeerIdOf} from '../../src/lib/bindings/ws.js'
import {PushpullError} from '../../src/lib/errors.js'
import {StaticKeySource, verificationKeysFromJson} from '../../src/lib/keys.js'
import {Ledger} from '../../src/lib/ledger.js'
import {SetReceiver} from '../../src/lib/receiver.js'
import {attachSessionServer} from '../../src/lib/session-server.js'
import {MemoryLedgerStorage} from '../../src/lib/store/memory.js'
import {createVerifier} from '../../src/lib/verify.js'
import {startFaultProxy} from '../helpers/fault-proxy.js'
import {generatePeerKey, mintSets, publicJwks, type PushpullWsOptions, type PushpullWsPeer, startPushpullWsPeer} from '../helpers/peers/index.js'
import {listenLoopback} from '../helpers/ports.js'

const closers: Array<() => Promise<unknown> | unknown> = []
afterEach(async () => {
  while (closers.length > 0) await closers.pop()?.()
})

const peerKey = generatePeerKey('ES256', 'peer-k1')
const ourKey = generatePeerKey('ES256', 'our-k1')

function newLedger(): Ledger {
  const ledger = new Ledger({retry: {ackTimeoutMs: 60_000}, storage: new MemoryLedgerStorage()})
  closers.push(() => ledger.close())
  return ledger
}

function receiverFor(ledger: Ledger, key = peerKey): SetReceiver {
  const verifier = createVerifier({keys: [new StaticKeySource(verificationKeysFromJson(publicJwks([key]), 'test'))]})
  return new SetReceiver({ledger, verifier})
}

async function peerWith(options: PushpullWsOptions = {}): Promise<PushpullWsPeer> {
  const peer = await startPushpullWsPeer(options)
  closers.push(() => peer.close())
  return peer
}

/** Resolve when `predicate` holds, checking on every client event (no sleeps). */
function until(events: ClientEvent[], predicate: () => boolean, ms = 5000): Promise<void> {
  return new Promise((resolve, reject) => {
    let timedOut = false
    const timer = setTimeout(() => {
      timedOut = true
      reject(new Error(`timed out waiting; events: ${events.map((e) => e.type).join(',')}`))
    }, ms)
    const check = (): void => {
      if (timedOut) return
      if (predicate()) {
        clearTimeout(timer)
        resolve()
      } else setTimeout(check, 5)
    }

    check()
  })
}

function startClient(url: string, ledger: Ledger, extra: Partial<ConstructorParameters<typeof WsSessionClient>[0]> = {}) {
  const events: ClientEvent[] = []
  const client = new WsSessionClient({
    ackDelayMs: 1,
    batchDelayMs: 1,
    ledger,
    receiver: receiverFor(ledger),
    reconnect: {capMs: 50, initialMs: 10},
    url,
    ...extra,
    onEvent: (event) => events.push(event),
  })
  const running = client.run()
  running.catch(() => {})
  closers.push(async () => {
    await client.stop()
    await running.catch(() => {})
  })
  return {client, events, running}
}

describe('session against the spec WebSocket peer', () => {
  it('SETs both ways, acks both ways', async () => {
    const peer = await peerWith()
    const ledger = newLedger()
    const ours = mintSets(3, ourKey)
    const pid = wsPeerIdOf(peer.url)
    ledger.enqueue(pid, ours)
    const theirs = mintSets(2, peerKey)
    peer.queue(theirs)
    const {client, events} = startClient(peer.url, ledger)
    await until(events, () => peer.ackedByClient.length === 2 && ledger.stats(pid)[0]?.outbox.acked === 3)
    expect(peer.ackedByClient.sort()).toEqual(theirs.map((s) => s.jti).sort())
    expect(peer.processed().map((r) => r.jti).sort()).toEqual(ours.map((s) => s.jti).sort())
    expect(client.counters).toMatchObject({ackedByPeer: 3, received: 2})
    expect(peer.upgrades[0]).toMatchObject({offered: ['pushpull'], status: 101})
  })

  it('out-of-order acks (reversed batches) settle every SET', async () => {
    const peer = await peerWith({ack: 'batch', ackBatchSize: 5, ackDelayMs: 5, ackOrder: 'reverse'})
    const ledger = newLedger()
    const pid = wsPeerIdOf(peer.url)
    const ours = mintSets(12, ourKey)
    ledger.enqueue(pid, ours)
    const {events} = startClient(peer.url, ledger, {maxSetsPerMessage: 4})
    await until(events, () => ledger.stats(pid)[0]?.outbox.acked === 12)
    const sentSets = peer.objects.filter((o) => Object.keys(o.sets).length > 0)
    expect(sentSets.length).toBeGreaterThanOrEqual(3)
    expect(sentSets.every((o) => Object.keys(o.sets).length <= 4)).toBe(true)
  })

  it('a redelivered SET is acked again and not processed again', async () => {
    const peer = await peerWith()
    const ledger = newLedger()
    const [set] = mintSets(1, peerKey)
    const {client, events} = startClient(peer.url, ledger)
    await until(events, () => client.connected)
    peer.sendObject({sets: {[set!.jti]: set!.token}})
    await until(events, () => client.counters.acksSent === 1)
    peer.sendObject({sets: {[set!.jti]: set!.token}})
    await until(events, () => client.counters.acksSent === 2)
    expect(client.counters).toMatchObject({duplicates: 1, received: 1})
    // acked twice (once per delivery), processed once; the second ack may still be on the wire
    await peer.waitFor(() => peer.objects.flatMap((o) => o.ack).length === 2)
    expect(peer.objects.flatMap((o) => o.ack)).toEqual([set!.jti, set!.jti])
    const newEvents = events.filter((e) => e.type === 'received').flatMap((e) => (e.type === 'received' ? e.outcomes.map((o) => o.status) : []))
    expect(newEvents).toEqual(['new', 'duplicate'])
  })

  it('an ack for a jti never sent is ignored; SETs stay pending', async () => {
    const peer = await peerWith({ack: 'manual'})
    const ledger = newLedger()
    const pid = wsPeerIdOf(peer.url)
    ledger.enqueue(pid, mintSets(1, ourKey))
    const {events} = startClient(peer.url, ledger)
    await until(events, () => peer.received.length === 1)
    peer.sendAcks(['never-sent'])
    await until(events, () => events.some((e) => e.type === 'report'))
    const report = events.find((e) => e.type === 'report')
    expect(report?.type === 'report' && report.result.unknown).toEqual(['never-sent'])
    expect(ledger.stats(pid)[0]?.outbox.in_flight).toBe(1)
  })

  it('bad-inputs: a text frame that is not JSON closes 1007; our SETs stay pending', async () => {
    const peer = await peerWith({ack: 'manual'})
    const ledger = newLedger()
    const pid = wsPeerIdOf(peer.url)
    ledger.enqueue(pid, mintSets(2, ourKey))
    const {events} = startClient(peer.url, ledger, {maxReconnects: 0})
    await until(events, () => peer.received.length === 2)
    peer.sendInvalidJson()
    await until(events, () => peer.closes.length === 1)
    expect(peer.closes[0]?.code).toBe(1007)
    const error = events.find((e) => e.type === 'error')
    expect(error?.type === 'error' && error.error.code).toBe('ERR_MESSAGE_INVALID')
    const stats = ledger.stats(pid)[0]
    expect(stats?.outbox.pending).toBe(2)
    expect(stats?.outbox.acked).toBe(0)
  })

  it('bad-inputs: a message over the size limit closes 1009', async () => {
    const peer = await peerWith()
    const ledger = newLedger()
    const {client, events} = startClient(peer.url, ledger, {maxPayload: 4096, maxReconnects: 0})
    await until(events, () => client.connected)
    peer.sendOversize(10_000)
    await until(events, () => peer.closes.length === 1)
    expect(peer.closes[0]?.code).toBe(1009)
  })

  it('bad-inputs: `sets` that is not an object closes 1007', async () => {
    const peer = await peerWith()
    const ledger = newLedger()
    const {client, events} = startClient(peer.url, ledger, {maxReconnects: 0})
    await until(events, () => client.connected)
    peer.sendObject({sets: ['x']})
    await until(events, () => peer.closes.length === 1)
    expect(peer.closes[0]?.code).toBe(1007)
    const error = events.find((e) => e.type === 'error')
    expect(error?.type === 'error' && error.error.message).toMatch(/"sets" must be an object/)
  })

  it('bad-inputs: a peer that stops answering pings is terminated as a zombie, then the client reconnects', async () => {
    const peer = await peerWith()
    const ledger = newLedger()
    const {client, events} = startClient(peer.url, ledger, {pingIntervalMs: 20})
    await until(events, () => client.connected)
    peer.stopAnsweringPings()
    await until(events, () => events.some((e) => e.type === 'close'))
    const close = events.find((e) => e.type === 'close')
    expect(close?.type === 'close' && close.info).toMatchObject({code: 1006, reason: 'zombie'})
    expect(close?.type === 'close' && close.error?.message).toBe('WebSocket session ended abnormally (1006): the peer stopped answering pings')
    peer.resumeAnsweringPings()
    await until(events, () => peer.connectionCount === 2)
    expect(client.reconnects).toBe(1)
  })

  it('bad-inputs: the upgrade without a bearer token is refused 401 and the client stops with ERR_CREDENTIALS', async () => {
    const peer = await peerWith({token: 'sekret'})
    const ledger = newLedger()
    const {running} = startClient(peer.url, ledger)
    await expect(running).rejects.toMatchObject({code: 'ERR_CREDENTIALS'})
    await expect(running).rejects.toThrow(/refused the WebSocket upgrade with 401; check the bearer token/)
  })

  it('the bearer token goes with every reconnect', async () => {
    const peer = await peerWith({token: 'sekret'})
    const ledger = newLedger()
    const {client, events} = startClient(peer.url, ledger, {token: 'sekret'})
    await until(events, () => client.connected)
    peer.terminateAll()
    await until(events, () => peer.connectionCount === 2)
    expect(peer.upgrades.map((u) => [u.hadAuthorization, u.status])).toEqual([
      [true, 101],
      [true, 101],
    ])
  })

  it('--fallback http: a refused upgrade continues over the pushpull HTTP binding', async () => {
    const peer = await peerWith({http: true, refuseUpgrade: 400})
    const ledger = newLedger()
    const pid = wsPeerIdOf(peer.url)
    const ours = mintSets(2, ourKey)
    ledger.enqueue(pid, ours)
    const theirs = mintSets(1, peerKey)
    peer.queue(theirs)
    const {client, events} = startClient(peer.url, ledger, {fallback: 'http', httpPollMs: 10})
    await until(events, () => ledger.stats(pid)[0]?.outbox.acked === 2 && peer.ackedByClient.length === 1)
    expect(client.binding).toBe('http')
    const fallback = events.find((e) => e.type === 'fallback')
    expect(fallback?.type === 'fallback' && fallback.error).toMatchObject({code: 'ERR_WS_HANDSHAKE'})
    expect(peer.requests.length).toBeGreaterThan(0)
  })

  it('without --fallback a refused upgrade is ERR_WS_HANDSHAKE with the status', async () => {
    const peer = await peerWith({refuseUpgrade: 404})
    const ledger = newLedger()
    const {running} = startClient(peer.url, ledger, {maxReconnects: 0})
    await expect(running).rejects.toMatchObject({code: 'ERR_RETRIES_EXHAUSTED'})
    await expect(running).rejects.toThrow(/refused the WebSocket upgrade with HTTP 404/)
  })
})

describe('faults through the TCP proxy', () => {
  it('a connection cut mid-batch: every SET processed exactly once, every ack reaches its sender', async () => {
    const peer = await peerWith({setsPerMessage: 5})
    const proxy = await startFaultProxy({target: {host: '127.0.0.1', port: peer.port}})
    closers.push(() => proxy.close())
    const ledger = newLedger()
    const pid = wsPeerIdOf(proxy.url('ws') + '/pushpull')
    const ours = mintSets(40, ourKey)
    ledger.enqueue(pid, ours)
    const theirs = mintSets(20, peerKey)
    peer.queue(theirs)
    proxy.cutAfterBytes(6000, 'up')
    const {client, events} = startClient(`${proxy.url('ws')}/pushpull`, ledger, {maxSetsPerMessage: 5})
    await until(events, () => ledger.stats(pid)[0]?.outbox.acked === 40 && peer.ackedByClient.length >= 20, 10_000)
    expect(proxy.stats().cuts).toBeGreaterThanOrEqual(1)
    expect(client.reconnects).toBeGreaterThanOrEqual(1)
    // the peer processed each of our SETs once (redeliveries were duplicates)
    const processed = peer.processed().map((r) => r.jti)
    expect(new Set(processed).size).toBe(processed.length)
    expect(processed.sort()).toEqual(ours.map((s) => s.jti).sort())
    // we processed each of theirs once, and the peer has every ack
    expect(client.counters.received).toBe(20)
    expect(new Set(peer.ackedByClient)).toEqual(new Set(theirs.map((s) => s.jti)))
  })

  it('a stalled connection is detected by the heartbeat and the session resumes after reconnect', async () => {
    const peer = await peerWith()
    const proxy = await startFaultProxy({target: {host: '127.0.0.1', port: peer.port}})
    closers.push(() => proxy.close())
    const ledger = newLedger()
    const url = `${proxy.url('ws')}/pushpull`
    const pid = wsPeerIdOf(url)
    const {client, events} = startClient(url, ledger, {pingIntervalMs: 25})
    await until(events, () => client.connected)
    proxy.stall()
    ledger.enqueue(pid, mintSets(3, ourKey))
    client.kick()
    await until(events, () => events.some((e) => e.type === 'close'))
    proxy.resume()
    await until(events, () => ledger.stats(pid)[0]?.outbox.acked === 3, 8000)
    expect(new Set(peer.processed().map((r) => r.jti)).size).toBe(3)
  })

  it('server restart: the client reconnects with backoff, sends owed acks first, then resends unacked SETs', async () => {
    const peer = await peerWith({ack: 'manual'})
    const proxy = await startFaultProxy({target: {host: '127.0.0.1', port: peer.port}})
    closers.push(() => proxy.close())
    const ledger = newLedger()
    const url = `${proxy.url('ws')}/pushpull`
    const pid = wsPeerIdOf(url)
    const ours = mintSets(2, ourKey)
    ledger.enqueue(pid, ours)
    const {client, events} = startClient(url, ledger, {ackDelayMs: 10_000})
    await until(events, () => peer.received.length === 2)
    // a SET from the peer whose ack we hold back (long ack delay), then the "restart"
    const [theirs] = mintSets(1, peerKey)
    peer.sendObject({sets: {[theirs!.jti]: theirs!.token}})
    await until(events, () => client.counters.received === 1)
    proxy.refuse()
    proxy.cutAll()
    await until(events, () => events.filter((e) => e.type === 'reconnect-wait').length >= 2)
    const sentBefore = peer.objects.length
    proxy.accept()
    await until(events, () => peer.connectionCount === 2 && peer.objects.length >= sentBefore + 2)
    const after = peer.objects.slice(sentBefore)
    expect(after[0]).toMatchObject({ack: [theirs!.jti]})
    expect(Object.keys(after[0]!.sets)).toEqual([])
    expect(Object.keys(after[1]!.sets).sort()).toEqual(ours.map((s) => s.jti).sort())
    const waits = events.filter((e) => e.type === 'reconnect-wait').map((e) => (e.type === 'reconnect-wait' ? e.delayMs : -1))
    expect(waits.every((ms) => ms >= 0 && ms <= 50)).toBe(true)
  })
})

describe("session against pushpull's own session server", () => {
  async function ownServer(tokens: Record<string, string> = {}) {
    const server: Server = createServer((_req, res) => {
      res.statusCode = 405
      res.end()
    })
    const port = await listenLoopback(server)
    const serverLedger = newLedger()
    const verifier = createVerifier({keys: [new StaticKeySource(verificationKeysFromJson(publicJwks([ourKey]), 'test'))]})
    const receiver = new SetReceiver({ledger: serverLedger, verifier})
    const wakers = new Map<string, () => void>()
    const handle = attachSessionServer(server, {
      ackDelayMs: 1,
      batchDelayMs: 1,
      identify(req) {
        if (Object.keys(tokens).length === 0) return 'anonymous'
        const token = /^Bearer (.+)$/.exec(req.headers.authorization ?? '')?.[1]
        const name = Object.entries(tokens).find(([, value]) => value === token)?.[0]
        if (name === undefined) throw new PushpullError('ERR_CREDENTIALS', 'bad token')
        return `token:${name}`
      },
      ledger: serverLedger,
      receiver,
      subscribe(peer, wake) {
        wakers.set(peer, wake)
        return () => wakers.delete(peer)
      },
    })
    closers.push(async () => {
      await handle.close()
      await new Promise((resolve) => server.close(resolve))
    })
    return {handle, ledger: serverLedger, url: `ws://127.0.0.1:${port}/pushpull`, wakers}
  }

  it('SETs both ways, acks both ways, several peers at once (one identity per token)', async () => {
    const server = await ownServer({alice: 'token-a', bob: 'token-b'})
    const ledgerA = newLedger()
    const ledgerB = newLedger()
    const a = startClient(server.url, ledgerA, {token: 'token-a'})
    const b = startClient(server.url, ledgerB, {token: 'token-b'})
    const pid = wsPeerIdOf(server.url)
    const fromA = mintSets(3, ourKey)
    const fromB = mintSets(2, ourKey)
    ledgerA.enqueue(pid, fromA)
    ledgerB.enqueue(pid, fromB)
    a.client.kick()
    b.client.kick()
    await until(a.events, () => ledgerA.stats(pid)[0]?.outbox.acked === 3 && ledgerB.stats(pid)[0]?.outbox.acked === 2)
    expect(server.ledger.stats('token:alice')[0]?.inbox.accepted).toBe(3)
    expect(server.ledger.stats('token:bob')[0]?.inbox.accepted).toBe(2)
    // server -> one peer only
    const toBob = mintSets(2, peerKey)
    server.ledger.enqueue('token:bob', toBob)
    server.handle.kick('token:bob')
    await until(b.events, () => server.ledger.stats('token:bob')[0]?.outbox.acked === 2)
    expect(b.client.counters.received).toBe(2)
    expect(a.client.counters.received).toBe(0)
    expect([...server.handle.sessions.keys()].sort()).toEqual(['token:alice', 'token:bob'])
  })

  it('an upgrade with an unknown token is refused 401 (ERR_CREDENTIALS), no session', async () => {
    const server = await ownServer({alice: 'token-a'})
    const {running} = startClient(server.url, newLedger(), {token: 'wrong'})
    await expect(running).rejects.toMatchObject({code: 'ERR_CREDENTIALS', details: {status: 401}})
    expect(server.handle.sessions.size).toBe(0)
  })
})
