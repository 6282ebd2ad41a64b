import {afterEach, describe, expect, it} from 'vitest'
import {WebSocket} from 'ws'

import {generatePeerKey, mintSets, type PushpullWsOptions, type PushpullWsPeer, startPushpullWsPeer} from '../helpers/peers/index.js'

const closers: (() => Promise<void> | void)[] = []
afterEach(async () => {
  while (closers.length > 0) await closers.pop()?.()
})

const key = generatePeerKey('ES256', 'k1')

async function peerWith(options: PushpullWsOptions = {}): Promise<PushpullWsPeer> {
  const peer = await startPushpullWsPeer(options)
  closers.push(() => peer.close())
  return peer
}

/** A plain ws client that collects every message it receives. */
async function connect(url: string, options: {protocols?: string[]; headers?: Record<string, string>} = {}) {
  const ws = new WebSocket(url, options.protocols ?? ['pushpull'], {headers: options.headers})
  closers.push(() => ws.terminate())
  const messages: Record<string, unknown>[] = []
  const raw: string[] = []
  let closed: {code: number; reason: string} | undefined
  const waiters: (() => void)[] = []
  const notify = () => {
    for (const w of waiters.splice(0)) w()
  }

  ws.on('message', (data) => {
    raw.push(data.toString())
    try {
      messages.push(JSON.parse(data.toString()) as Record<string, unknown>)
    } catch {
      // kept in raw
    }

    notify()
  })
  ws.on('close', (code, reason) => {
    closed = {code, reason: reason.toString()}
    notify()
  })
  ws.on('error', () => {})
  await new Promise<void>((resolve, reject) => {
    ws.once('open', () => resolve())
    ws.once('unexpected-response', (_req, res) => reject(new Error(`upgrade refused: ${res.statusCode}`)))
    ws.once('error', reject)
  })
  const until = async (predicate: () => boolean, what: string) => {
    const deadline = Date.now() + 3000
    while (!predicate()) {
      if (Date.now() > deadline) throw new Error(`client: timed out waiting for ${what}`)
      await new Promise<void>((resolve) => {
        waiters.push(resolve)
        setTimeout(resolve, 100)
      })
    }
  }

  return {closed: () => closed, messages, raw, send: (value: unknown) => ws.send(JSON.stringify(value)), until, ws}
}

const setsOf = (list: {jti: string; token: string}[]) => Object.fromEntries(list.map((s) => [s.jti, s.token]))

describe('startPushpullWsPeer', () => {
  it('echoes the pushpull subprotocol, acks received SETs and delivers its queued SETs', async () => {
    const peer = await peerWith()
    const theirs = mintSets(2, key)
    peer.queue(theirs)
    const client = await connect(peer.url)
    expect(client.ws.protocol).toBe('pushpull')
    await client.until(() => client.messages.length >= 1, 'queued SETs')
    expect(client.messages[0]).toEqual({sets: setsOf(theirs)})

    const mine = mintSets(3, key)
    client.send({ack: theirs.map((s) => s.jti), sets: setsOf(mine)})
    await client.until(() => client.messages.length >= 2, 'acks')
    expect(client.messages[1]).toEqual({ack: mine.map((s) => s.jti)})
    expect(peer.processed().map((r) => r.jti)).toEqual(mine.map((s) => s.jti))
    expect(peer.ackedByClient).toEqual(theirs.map((s) => s.jti))
    expect(peer.pending()).toEqual([])
    expect(peer.upgrades).toEqual([{hadAuthorization: false, offered: ['pushpull'], status: 101}])
  })

  it('refuses an upgrade without the pushpull subprotocol (400, no session)', async () => {
    const peer = await peerWith()
    await expect(connect(peer.url, {protocols: ['chat']})).rejects.toThrow('upgrade refused: 400')
    await expect(connect(peer.url, {protocols: []})).rejects.toThrow('upgrade refused: 400')
    expect(peer.connectionCount).toBe(0)
    expect(peer.upgrades.map((u) => u.status)).toEqual([400, 400])
  })

  it('requires the bearer token on the upgrade when configured (401)', async () => {
    const peer = await peerWith({token: 'tok'})
    await expect(connect(peer.url)).rejects.toThrow('upgrade refused: 401')
    await expect(connect(peer.url, {headers: {Authorization: 'Bearer wrong'}})).rejects.toThrow('upgrade refused: 401')
    const client = await connect(peer.url, {headers: {Authorization: 'Bearer tok'}})
    expect(client.ws.protocol).toBe('pushpull')
    expect(peer.upgrades.map((u) => u.status)).toEqual([401, 401, 101])
  })

  it('can refuse every upgrade or complete it without echoing pushpull', async () => {
    const refusing = await peerWith({refuseUpgrade: 503})
    await expect(connect(refusing.url)).rejects.toThrow('upgrade refused: 503')
    const silent = await peerWith({echoSubprotocol: false})
    // A conforming ws client fails the handshake when the server selects no subprotocol.
    await expect(connect(silent.url)).rejects.toThrow('Server sent no subprotocol')
  })

  it('redelivers unacked SETs on a new connection', async () => {
    const peer = await peerWith()
    const theirs = mintSets(2, key)
    peer.queue(theirs)
    const first = await connect(peer.url)
    await first.until(() => first.messages.length >= 1, 'first delivery')
    first.send({ack: [theirs[0]!.jti]})
    await peer.waitFor(() => peer.ackedByClient.length === 1)
    first.ws.terminate()
    await peer.waitFor(() => peer.openConnections() === 0)
    const second = await connect(peer.url)
    await second.until(() => second.messages.length >= 1, 'redelivery')
    expect(second.messages[0]).toEqual({sets: setsOf([theirs[1]!])})
    expect(peer.deliveries(theirs[1]!.jti)).toBe(2)
    expect(peer.deliveries(theirs[0]!.jti)).toBe(1)
  })

  it('batches acks and can send them in reverse order', async () => {
    const peer = await peerWith({ack: 'batch', ackBatchSize: 4, ackDelayMs: 5000, ackOrder: 'reverse'})
    const client = await connect(peer.url)
    const sets = mintSets(4, key)
    client.send({sets: setsOf(sets.slice(0, 2))})
    await peer.waitFor(() => peer.received.length === 2)
    expect(client.messages).toEqual([])
    client.send({sets: setsOf(sets.slice(2))})
    await client.until(() => client.messages.length >= 1, 'batched acks')
    expect(client.messages[0]).toEqual({ack: sets.map((s) => s.jti).reverse()})
  })

  it('holds acks in manual mode until flushAcks(), and answers setErrs and duplicates', async () => {
    const peer = await peerWith({ack: 'manual'})
    const client = await connect(peer.url)
    const [a] = mintSets(1, key)
    client.send({sets: {[a!.jti]: a!.token, junk: 'not-a-jwt'}})
    await peer.waitFor(() => peer.received.length === 2)
    client.send({sets: {[a!.jti]: a!.token}})
    await peer.waitFor(() => peer.received.length === 3)
    expect(client.messages).toEqual([])
    peer.flushAcks()
    await client.until(() => client.messages.length >= 1, 'flushed acks')
    expect(client.messages[0]).toEqual({
      ack: [a!.jti, a!.jti],
      setErrs: {junk: {description: 'The SET is not a compact JWS with a JSON payload.', err: 'invalid_request'}},
    })
    expect(peer.processed()).toHaveLength(1)
  })

  it('closes with 1007 on invalid JSON or a malformed object, 1009 over the size limit', async () => {
    const peer = await peerWith({maxMessageBytes: 1000})
    const a = await connect(peer.url)
    a.ws.send('{nope')
    await a.until(() => a.closed() !== undefined, 'close')
    expect(a.closed()).toEqual({code: 1007, reason: 'message is not JSON'})

    const b = await connect(peer.url)
    b.send({ack: 'x'})
    await b.until(() => b.closed() !== undefined, 'close')
    expect(b.closed()).toEqual({code: 1007, reason: '"ack" must be an array of jti strings.'})

    const c = await connect(peer.url)
    c.ws.send('x'.repeat(2000))
    await c.until(() => c.closed() !== undefined, 'close')
    expect(c.closed()?.code).toBe(1009)
    expect(peer.received).toEqual([])
  })

  it('accepts a binary frame holding UTF-8 JSON', async () => {
    const peer = await peerWith()
    const client = await connect(peer.url)
    const [a] = mintSets(1, key)
    client.ws.send(Buffer.from(JSON.stringify({sets: {[a!.jti]: a!.token}})), {binary: true})
    await client.until(() => client.messages.length >= 1, 'ack')
    expect(client.messages[0]).toEqual({ack: [a!.jti]})
  })

  it('misbehaves on demand: invalid JSON, oversize frame, acks for unknown jtis, raw objects', async () => {
    const peer = await peerWith()
    const client = await connect(peer.url)
    peer.sendInvalidJson()
    peer.sendAcks(['never-sent'])
    peer.sendOversize(5000)
    await client.until(() => client.raw.length >= 3, 'three messages')
    expect(() => JSON.parse(client.raw[0]!) as unknown).toThrow()
    expect(JSON.parse(client.raw[1]!)).toEqual({ack: ['never-sent']})
    expect(client.raw[2]!.length).toBe(5000)
  })

  it('stops answering pings on demand and resumes', async () => {
    const peer = await peerWith()
    const client = await connect(peer.url)
    let pongs = 0
    client.ws.on('pong', () => pongs++)
    client.ws.ping()
    await client.until(() => pongs === 1, 'pong')
    peer.stopAnsweringPings()
    client.ws.ping()
    await peer.waitFor(() => peer.pingsReceived === 2)
    // A round trip that is answered proves the unanswered ping was not merely slow.
    client.send({})
    await peer.waitFor(() => peer.objects.length === 1)
    expect(pongs).toBe(1)
    peer.resumeAnsweringPings()
    client.ws.ping()
    await client.until(() => pongs === 2, 'pong after resume')
  })

  it('drops the connection on the message after N, without processing it', async () => {
    const peer = await peerWith({dropAfterMessages: 1})
    const client = await connect(peer.url)
    const sets = mintSets(2, key)
    client.send({sets: setsOf([sets[0]!])})
    await client.until(() => client.messages.length >= 1, 'first ack')
    client.send({sets: setsOf([sets[1]!])})
    await client.until(() => client.closed() !== undefined, 'drop')
    expect(client.closed()?.code).toBe(1006)
    expect(peer.received.map((r) => r.jti)).toEqual([sets[0]!.jti])
    // One-shot: the next connection works normally.
    const again = await connect(peer.url)
    again.send({sets: setsOf([sets[1]!])})
    await again.until(() => again.messages.length >= 1, 'ack after reconnect')
    expect(again.messages[0]).toEqual({ack: [sets[1]!.jti]})
  })

  it('serves pushpull HTTP on the same path and ledger with the http option', async () => {
    const peer = await peerWith({http: true})
    const theirs = mintSets(1, key)
    peer.queue(theirs)
    const res = await fetch(peer.httpUrl, {body: JSON.stringify({}), headers: {'Content-Type': 'application/json'}, method: 'POST'})
    expect(await res.json()).toEqual({sets: setsOf(theirs)})
    const plain = await startPushpullWsPeer()
    closers.push(() => plain.close())
    const refused = await fetch(plain.httpUrl, {body: '{}', headers: {'Content-Type': 'application/json'}, method: 'POST'})
    expect(refused.status).toBe(426)
  })
})
