import {readFileSync} from 'node:fs'
import {createServer as createHttpServer} from 'node:http'
import {createServer} from 'node:https'
import {join} from 'node:path'

import {afterEach, describe, expect, it} from 'vitest'

import {createMultiPushDeliverer} from '../../src/lib/bindings/multi-push.js'
import {createPushDeliverer} from '../../src/lib/bindings/push.js'
import {createPushpullHttpDeliverer} from '../../src/lib/bindings/pushpull-http.js'
import type {Deliverer} from '../../src/lib/bindings/types.js'
import {PushpullError} from '../../src/lib/errors.js'
import {Ledger} from '../../src/lib/ledger.js'
import {deliverOutbox, type DeliverOptions} from '../../src/lib/sender.js'
import {MemoryLedgerStorage} from '../../src/lib/store.js'
import {createHttpClient, type HttpClient, type HttpClientOptions} from '../../src/lib/transport/http.js'
import {ROOT} from '../helpers/cli.js'
import {rejection} from '../helpers/errors.js'
import {generatePeerKey, mintSets, startPushpullHttpPeer, startPushReceiver} from '../helpers/peers/index.js'
import {listenLoopback} from '../helpers/ports.js'

const key = generatePeerKey('ES256', 'sender-key')
const clients: HttpClient[] = []
afterEach(async () => {
  await Promise.all(clients.splice(0).map(async (c) => c.close()))
})

function client(options: HttpClientOptions = {}): HttpClient {
  const c = createHttpClient(options)
  clients.push(c)
  return c
}

/** A fake clock the injected sleep advances: no real waiting. */
function fakeTime(): {now: () => number; sleep: (ms: number) => Promise<void>; sleeps: number[]} {
  let t = 1_000_000
  const sleeps: number[] = []
  return {
    now: () => t,
    async sleep(ms: number) {
      sleeps.push(ms)
      t += ms
    },
    sleeps,
  }
}

function setup(deliverer: Deliverer, count: number, extra: Partial<DeliverOptions> = {}, retry = {}) {
  const time = fakeTime()
  const ledger = new Ledger({now: time.now, random: () => 0.5, retry: {ackTimeoutMs: 5000, maxAttempts: 4, ...retry}, storage: new MemoryLedgerStorage()})
  const sets = mintSets(count, key)
  const peer = 'http://peer.test/'
  ledger.enqueue(peer, sets)
  const options: DeliverOptions = {
    deliverer,
    jtis: sets.map((s) => s.jti),
    ledger,
    now: time.now,
    peer,
    random: () => 0.5,
    signal: new AbortController().signal,
    sleep: time.sleep,
    ...extra,
  }
  return {ledger, options, sets, time}
}

describe('deliverOutbox: client-side bad inputs', () => {
  it('429 with Retry-After: waits as told (plus jitter), then delivers', async () => {
    const receiver = await startPushReceiver()
    try {
      receiver.script({headers: {'Retry-After': '7'}, status: 429})
      const deliverer = createPushDeliverer({client: client(), concurrency: 1, url: receiver.url})
      const {options, time} = setup(deliverer, 1)
      const retries: number[] = []
      const summary = await deliverOutbox({...options, onRetry: (n) => retries.push(n.delayMs)})
      expect(summary.results).toEqual([{attempts: 2, jti: options.jtis[0], status: 'accepted', type: 'result'}])
      // Retry-After 7 s plus jitter random() * initialMs (0.5 * 1000).
      expect(retries).toEqual([7500])
      expect(time.sleeps.reduce((a, b) => a + b, 0)).toBeGreaterThanOrEqual(7500)
    } finally {
      await receiver.close()
    }
  })

  it('a Retry-After far in the future is capped by the client', async () => {
    const receiver = await startPushReceiver()
    try {
      receiver.script({headers: {'Retry-After': '999999'}, status: 503})
      const deliverer = createPushDeliverer({client: client({retryAfterCapMs: 20_000}), concurrency: 1, url: receiver.url})
      const {options} = setup(deliverer, 1)
      const retries: number[] = []
      await deliverOutbox({...options, onRetry: (n) => retries.push(n.delayMs)})
      expect(retries).toEqual([20_500])
    } finally {
      await receiver.close()
    }
  })

  it('200 with a body that is not JSON (pushpull): clear error, SETs stay pending and are retried with backoff', async () => {
    const peer = await startPushpullHttpPeer()
    try {
      peer.script({body: 'not json at all', status: 200}, {body: 'still not json', status: 200})
      const deliverer = createPushpullHttpDeliverer({client: client(), url: peer.url})
      const {options} = setup(deliverer, 2)
      const notices: Array<{code: string; message: string; delayMs: number}> = []
      const summary = await deliverOutbox({...options, onRetry: (n) => notices.push({code: n.error.code, delayMs: n.delayMs, message: n.error.message})})
      expect(notices.map((n) => n.code)).toEqual(['ERR_PEER_PROTOCOL', 'ERR_PEER_PROTOCOL'])
      expect(notices[0]!.message).toMatch(/answered 200 with a body that is not a valid Communication Object/)
      // Backoff grows: attempt 0 -> 0.5 * 1000, attempt 1 -> 0.5 * 2000.
      expect(notices.map((n) => n.delayMs)).toEqual([500, 1000])
      expect(summary.results.map((r) => r.status)).toEqual(['acked', 'acked'])
    } finally {
      await peer.close()
    }
  })

  it('accepts the connection then says nothing: timeout, retried, then abandoned at the cap', async () => {
    const receiver = await startPushReceiver()
    try {
      receiver.script({hang: true}, {hang: true})
      const deliverer = createPushDeliverer({client: client({headersTimeoutMs: 100}), concurrency: 1, url: receiver.url})
      const {options} = setup(deliverer, 1, {}, {maxAttempts: 2})
      const codes: string[] = []
      const summary = await deliverOutbox({...options, onRetry: (n) => codes.push(n.error.code)})
      expect(codes).toEqual(['ERR_TIMEOUT'])
      expect(summary.results[0]).toMatchObject({attempts: 2, err: 'ERR_TIMEOUT', status: 'abandoned'})
      expect(summary.results[0]!.description).toMatch(/timed out waiting for the response headers/)
    } finally {
      await receiver.close()
    }
  })

  it('401 stops at once (no hot loop); SETs stay pending in the outbox', async () => {
    const receiver = await startPushReceiver({token: 'right'})
    try {
      const deliverer = createPushDeliverer({client: client({token: 'wrong'}), concurrency: 1, url: receiver.url})
      const {ledger, options} = setup(deliverer, 3)
      const summary = await deliverOutbox(options)
      expect(summary.stoppedBy?.code).toBe('ERR_CREDENTIALS')
      expect(receiver.requests).toHaveLength(1)
      expect(summary.counts.pending).toBe(3)
      expect(ledger.stats(options.peer)[0]!.outbox.pending).toBe(3)
    } finally {
      await receiver.close()
    }
  })

  it('self-signed TLS: ERR_TLS stops the run unless the CA file is given', async () => {
    const tlsDir = join(ROOT, 'test', 'fixtures', 'tls')
    const server = createServer({cert: readFileSync(join(tlsDir, 'localhost.crt')), key: readFileSync(join(tlsDir, 'localhost.key'))}, (_req, res) => {
      res.statusCode = 202
      res.end()
    })
    const port = await listenLoopback(server)
    try {
      const url = `https://127.0.0.1:${port}/events`
      const refused = setup(createPushDeliverer({client: client(), concurrency: 1, url}), 1)
      const summary = await deliverOutbox(refused.options)
      expect(summary.stoppedBy?.code).toBe('ERR_TLS')
      expect(summary.stoppedBy?.message).toBe(`${url}: TLS failed: self-signed certificate (DEPTH_ZERO_SELF_SIGNED_CERT); use --cacert FILE to trust a private CA`)
      expect(summary.results[0]!.status).toBe('pending')

      const trusted = setup(createPushDeliverer({client: client({caFile: join(tlsDir, 'localhost.crt')}), concurrency: 1, url}), 1)
      expect((await deliverOutbox(trusted.options)).results[0]!.status).toBe('accepted')
    } finally {
      server.closeAllConnections()
      server.close()
    }
  })

  it('multi-SET push: a 413 halves the batch and retries', async () => {
    const peer = await startPushpullHttpPeer({maxSetsPerObject: 2})
    try {
      const deliverer = createMultiPushDeliverer({client: client(), maxBatch: 8, url: peer.url})
      const {options} = setup(deliverer, 5)
      const summary = await deliverOutbox(options)
      expect(summary.counts.acked).toBe(5)
      expect(peer.processed()).toHaveLength(5)
    } finally {
      await peer.close()
    }
  })

  it('no ack before the wait ends: pending, and due again at once for the next run', async () => {
    const peer = await startPushpullHttpPeer({judge: () => undefined, deferAcks: true})
    try {
      // A deliverer that never reports acks: wrap the real one and drop its report.
      const real = createPushpullHttpDeliverer({client: client(), url: peer.url})
      const silent: Deliverer = {...real, exchange: async (sets, owed, signal) => ({...(await real.exchange(sets, owed, signal)), report: {ack: [], setErrs: new Map()}})}
      const {ledger, options} = setup(silent, 1, {waitMs: 3000})
      const summary = await deliverOutbox(options)
      expect(summary.results[0]).toMatchObject({description: 'no acknowledgement before the wait ended', status: 'pending'})
      expect(ledger.takeDue(options.peer, 10).sets.map((s) => s.jti)).toEqual(options.jtis)
    } finally {
      await peer.close()
    }
  })
})

describe('deliverOutbox: the exchange pool', () => {
  it('a stalled request does not hold back the others: the next SETs go out while it waits', async () => {
    // The peer answers the first SET only after it has received every other one. With exchanges
    // run in lock-step rounds this never happens (the round waits for the stalled one).
    const seen: string[] = []
    let release!: () => void
    const released = new Promise<void>((resolve) => {
      release = resolve
    })
    const total = 9
    const server = createHttpServer((request, response) => {
      let body = ''
      request.setEncoding('utf8')
      request.on('data', (chunk: string) => {
        body += chunk
      })
      request.on('end', () => {
        seen.push(body)
        if (seen.length === total) release()
        const answer = () => response.writeHead(202).end()
        if (seen.length === 1) void released.then(answer)
        else answer()
      })
    })
    const port = await listenLoopback(server)
    try {
      const deliverer = createPushDeliverer({client: client(), concurrency: 2, url: `http://127.0.0.1:${port}/events`})
      const {options, sets} = setup(deliverer, total)
      const summary = await deliverOutbox({...options, sleep: undefined, waitMs: 10_000})
      expect(summary.counts).toEqual({abandoned: 0, accepted: total, acked: 0, pending: 0, rejected: 0})
      expect(seen[0]).toBe(sets[0]?.token)
      expect(seen).toHaveLength(total)
    } finally {
      server.closeAllConnections()
      await new Promise<void>((resolve) => server.close(() => resolve()))
    }
  })

  it('an exchange that throws ends the run with that error after the others settle', async () => {
    const receiver = await startPushReceiver()
    try {
      const deliverer = createPushDeliverer({client: client(), concurrency: 3, url: receiver.url})
      const {ledger, options} = setup(deliverer, 6)
      const applyReport = ledger.applyReport.bind(ledger)
      let calls = 0
      ledger.applyReport = (peer, report) => {
        if (++calls === 2) throw new PushpullError('ERR_STATE_IO', 'state database went away')
        return applyReport(peer, report)
      }

      const error = await rejection(deliverOutbox(options))
      expect(error).toMatchObject({code: 'ERR_STATE_IO', message: 'state database went away'})
    } finally {
      await receiver.close()
    }
  })
})
