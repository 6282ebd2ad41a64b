/**
 * Hostile peers against `listen --ws` sessions (the listener and its session server in-process,
 * real sockets on loopback): a peer flooding messages is closed with 1008 by the per-peer rate
 * limit, garbage is closed with 1007, a peer opening many sessions is refused 429; meanwhile a
 * good peer's SETs are still received and acked.
 */
import {afterEach, beforeAll, describe, expect, it} from 'vitest'
import WebSocket from 'ws'

import {StaticKeySource, verificationKeysFromJson} from '../../src/lib/keys.js'
import {Ledger} from '../../src/lib/ledger.js'
import {SetReceiver} from '../../src/lib/receiver.js'
import {createListener, type ListenerEvent} from '../../src/lib/server.js'
import {attachListenerSessions, type SessionServerOptions} from '../../src/lib/session-server.js'
import {MemoryLedgerStorage} from '../../src/lib/store.js'
import {createVerifier} from '../../src/lib/verify.js'
import {generatePeerKey, makeSetClaims, type PeerSigningKey, publicJwks, signSet} from '../helpers/peers/index.js'

const GOOD_TOKEN = 'good-peer-token-0123456789'
const BAD_TOKEN = 'bad-peer-token-9876543210'

let key: PeerSigningKey
beforeAll(() => {
  key = generatePeerKey('ES256', 'k1')
})

const cleanups: Array<() => Promise<void> | void> = []
afterEach(async () => {
  while (cleanups.length > 0) await cleanups.pop()?.()
})

async function start(options: Partial<SessionServerOptions> = {}) {
  const ledger = new Ledger({random: () => 0.5, storage: new MemoryLedgerStorage()})
  const verifier = createVerifier({keys: [new StaticKeySource(verificationKeysFromJson(publicJwks([key]), 'test JWKS'))]})
  const events: ListenerEvent[] = []
  const listener = createListener({
    ledger,
    onEvent: (event) => events.push(event),
    port: 0,
    receiver: new SetReceiver({ledger, verifier}),
    tokens: [
      {name: 'good', token: GOOD_TOKEN},
      {name: 'bad', token: BAD_TOKEN},
    ],
  })
  const {address} = await listener.listen()
  const sessions = attachListenerSessions(listener, options)
  const sockets: WebSocket[] = []
  cleanups.push(async () => {
    for (const socket of sockets) socket.terminate()
    await sessions.close()
    await listener.close(200)
    ledger.close()
  })
  const url = `ws://127.0.0.1:${address.port}/pushpull`
  const connect = async (token: string, from = '127.0.0.1'): Promise<WebSocket> =>
    new Promise((resolve, reject) => {
      const socket = new WebSocket(url, 'pushpull', {headers: {authorization: `Bearer ${token}`}, localAddress: from})
      sockets.push(socket)
      socket.once('open', () => resolve(socket))
      socket.once('unexpected-response', (_req, res) => reject(new Error(`upgrade refused: ${res.statusCode}`)))
      socket.once('error', reject)
    })
  return {connect, events, listener}
}

function closed(socket: WebSocket): Promise<{code: number; reason: string}> {
  return new Promise((resolve) => socket.once('close', (code, reason) => resolve({code, reason: reason.toString()})))
}

/** The good peer sends one SET over its session; the reply must ack it. */
async function goodPeerIsServed(socket: WebSocket): Promise<void> {
  const claims = makeSetClaims()
  const jti = String(claims.jti)
  const acked = new Promise<void>((resolve) => {
    socket.on('message', (data) => {
      const object = JSON.parse(data.toString()) as {ack?: string[]}
      if (object.ack?.includes(jti) === true) resolve()
    })
  })
  socket.send(JSON.stringify({sets: {[jti]: signSet(claims, key)}}))
  await acked
}

describe('hostile peers against WebSocket sessions', () => {
  it('a peer flooding messages is closed with 1008; another peer is still served', async () => {
    const {connect, events} = await start({messageRate: {burst: 5, perSecond: 1}})
    const good = await connect(GOOD_TOKEN)
    const bad = await connect(BAD_TOKEN, '127.0.0.2')
    const badClosed = closed(bad)
    for (let i = 0; i < 50; i++) bad.send('{}')
    expect(await badClosed).toEqual({code: 1008, reason: 'too many messages (over 1 per second)'})
    await goodPeerIsServed(good)
    expect(events.some((event) => event.type === 'set' && event.peer === 'token:good' && event.status === 'new')).toBe(true)
  })

  it('the rate is per peer: a second session of the flooding peer shares its budget', async () => {
    const {connect} = await start({messageRate: {burst: 4, perSecond: 1}})
    const first = await connect(BAD_TOKEN)
    const second = await connect(BAD_TOKEN)
    const secondClosed = closed(second)
    for (let i = 0; i < 3; i++) first.send('{}')
    await new Promise((resolve) => setTimeout(resolve, 50))
    for (let i = 0; i < 3; i++) second.send('{}')
    expect((await secondClosed).code).toBe(1008)
  })

  it('garbage closes that session with 1007; another peer is still served', async () => {
    const {connect} = await start()
    const good = await connect(GOOD_TOKEN)
    const bad = await connect(BAD_TOKEN, '127.0.0.2')
    const badClosed = closed(bad)
    bad.send('this is not JSON {')
    expect((await badClosed).code).toBe(1007)
    await goodPeerIsServed(good)
  })

  it('many sessions from one address: over the cap the upgrade is refused 429; another address is still served', async () => {
    const {connect} = await start({maxConnectionsPerAddress: 2})
    await connect(BAD_TOKEN, '127.0.0.2')
    await connect(BAD_TOKEN, '127.0.0.2')
    await expect(connect(BAD_TOKEN, '127.0.0.2')).rejects.toThrow('upgrade refused: 429')
    await goodPeerIsServed(await connect(GOOD_TOKEN))
  })
})
