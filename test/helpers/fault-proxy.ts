/**
 * A fault-injecting TCP proxy for reconnect and chaos tests.
 *
 * Listens on 127.0.0.1 port 0 and forwards byte streams both ways to `target`. Faults, on demand
 * or at random from a seeded PRNG (same seed, same decisions for the same traffic):
 * - `cutAll()`: destroy every current connection (both sides; `reset` sends RST instead of FIN);
 * - `cutAfterBytes(n)`: one-shot, cut every connection once `n` more bytes have been forwarded;
 * - `stall(ms?)`: stop forwarding (data is held, not lost) until `resume()` or `ms` passes;
 * - `delay(ms | {min, max})`: hold each chunk for that long (order kept);
 * - `refuse(ms?)`: accept and immediately reset new connections until `accept()` or `ms` passes.
 * Random chaos (`chaos` option) draws per chunk (cut, stall) and per connection (refuse).
 * Counts connections and bytes. Bounded: `close()` ends every socket and timer.
 */
import {createConnection, createServer, type Socket} from 'node:net'

import {listenLoopback, LOOPBACK} from './ports.js'

export interface ChaosOptions {
  /** Probability per forwarded chunk of cutting that connection; default 0. */
  cutProbability?: number
  /** Probability per forwarded chunk of stalling that connection; default 0. */
  stallProbability?: number
  /** Stall length range in ms; default 50..500. */
  stallMs?: {min: number; max: number}
  /** Per-chunk delay range in ms; default none. */
  delayMs?: {min: number; max: number}
  /** Probability per new connection of refusing it; default 0. */
  refuseProbability?: number
}

export interface FaultProxyOptions {
  target: {host: string; port: number}
  /** PRNG seed for random faults; default 1. */
  seed?: number
  chaos?: ChaosOptions
  /** Bytes held per direction before the source is paused (backpressure); default 1 MiB. */
  highWaterBytes?: number
}

export type Direction = 'up' | 'down' | 'both'

export interface FaultProxyStats {
  /** Connections accepted and forwarded. */
  connections: number
  /** Connections refused (reset on accept, or the target could not be reached). */
  refused: number
  /** Connections open right now. */
  active: number
  /** Client -> target bytes forwarded. */
  bytesUp: number
  /** Target -> client bytes forwarded. */
  bytesDown: number
  /** Connections cut by a fault. */
  cuts: number
  /** Stalls started (on demand or random). */
  stalls: number
}

export interface FaultProxy {
  host: string
  port: number
  /** `http://127.0.0.1:PORT` / `ws://127.0.0.1:PORT`: append the target's path. */
  url(scheme?: string): string
  stats(): FaultProxyStats
  /** Destroy every current connection; `reset: true` sends RST instead of FIN. Returns how many. */
  cutAll(options?: {reset?: boolean}): number
  /** One-shot: after `n` more bytes in `direction` (summed over connections), cut every connection. */
  cutAfterBytes(n: number, direction?: Direction): void
  /** Stop forwarding on every current and new connection until `resume()` or `ms` passes. */
  stall(ms?: number): void
  /** End every stall (on demand or random) and forward what was held. */
  resume(): void
  /** Delay each chunk by `ms` or a random value in the range; 0 turns it off. */
  delay(ms: number | {min: number; max: number}): void
  /** Reset new connections until `accept()` or `ms` passes. */
  refuse(ms?: number): void
  accept(): void
  /** Switch random chaos on (options) or off (undefined). */
  setChaos(chaos: ChaosOptions | undefined): void
  /** A short log of fault events, newest last (bounded to 1000 entries). */
  readonly events: {type: string; conn?: number; at: number}[]
  close(): Promise<void>
}

/** mulberry32: a small, fast, seedable PRNG in [0, 1). */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0
  return () => {
    a = (a + 0x6d_2b_79_f5) >>> 0
    let t = a
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4_294_967_296
  }
}

interface Pipe {
  queue: Buffer[]
  queued: number
  pumping: boolean
  src: Socket
  dst: Socket
  dir: 'up' | 'down'
  ended: boolean
}

interface Conn {
  id: number
  client: Socket
  upstream: Socket
  stalledUntil: number
  pipes: [Pipe, Pipe]
  dead: boolean
}

export async function startFaultProxy(options: FaultProxyOptions): Promise<FaultProxy> {
  const random = seededRandom(options.seed ?? 1)
  const highWater = options.highWaterBytes ?? 1024 * 1024
  let chaos = options.chaos
  const conns = new Set<Conn>()
  const timers = new Set<NodeJS.Timeout>()
  const events: {type: string; conn?: number; at: number}[] = []
  const stats = {bytesDown: 0, bytesUp: 0, connections: 0, cuts: 0, refused: 0, stalls: 0}
  let nextId = 1
  let globalStall = false
  let refusing = false
  let delaySpec: number | {min: number; max: number} = 0
  let cutBudget: {remaining: number; direction: Direction} | undefined
  let closed = false

  const log = (type: string, conn?: number) => {
    events.push({at: Date.now(), conn, type})
    if (events.length > 1000) events.shift()
  }

  const later = (ms: number, fn: () => void) => {
    const timer = setTimeout(() => {
      timers.delete(timer)
      fn()
    }, ms)
    timers.add(timer)
  }

  const range = (r: {min: number; max: number}) => r.min + Math.floor(random() * (r.max - r.min + 1))

  const chunkDelay = (): number => {
    const spec = delaySpec !== 0 ? delaySpec : chaos?.delayMs
    if (spec === undefined) return 0
    return typeof spec === 'number' ? spec : range(spec)
  }

  const kill = (conn: Conn, reason: string, reset = false) => {
    if (conn.dead) return
    conn.dead = true
    conns.delete(conn)
    if (reason !== 'closed') {
      stats.cuts++
      log(reason, conn.id)
    }

    for (const socket of [conn.client, conn.upstream]) {
      if (reset && typeof socket.resetAndDestroy === 'function' && !socket.destroyed) socket.resetAndDestroy()
      else socket.destroy()
    }
  }

  const isStalled = (conn: Conn) => globalStall || conn.stalledUntil > Date.now()

  const pump = (conn: Conn, pipe: Pipe) => {
    if (pipe.pumping || conn.dead) return
    if (isStalled(conn)) return
    const chunk = pipe.queue.shift()
    if (!chunk) {
      if (pipe.ended) pipe.dst.end()
      return
    }

    pipe.pumping = true
    const forward = () => {
      pipe.pumping = false
      if (conn.dead) return
      if (isStalled(conn)) {
        pipe.queue.unshift(chunk)
        return
      }

      // Random faults are decided per chunk, in a fixed order, so a seed replays the same run.
      if (chaos?.cutProbability && random() < chaos.cutProbability) return kill(conn, 'random-cut')
      if (chaos?.stallProbability && random() < chaos.stallProbability) {
        const ms = range(chaos.stallMs ?? {max: 500, min: 50})
        conn.stalledUntil = Date.now() + ms
        stats.stalls++
        log('random-stall', conn.id)
        pipe.queue.unshift(chunk)
        later(ms + 1, () => resumeConn(conn))
        return
      }

      let out = chunk
      let cutNow = false
      if (cutBudget && (cutBudget.direction === 'both' || cutBudget.direction === pipe.dir)) {
        if (out.length >= cutBudget.remaining) {
          out = out.subarray(0, cutBudget.remaining)
          cutNow = true
        } else {
          cutBudget.remaining -= out.length
        }
      }

      pipe.queued -= chunk.length
      if (out.length > 0) {
        if (pipe.dir === 'up') stats.bytesUp += out.length
        else stats.bytesDown += out.length
        pipe.dst.write(out)
      }

      if (cutNow) {
        cutBudget = undefined
        for (const c of [...conns]) kill(c, 'cut-after-bytes')
        return
      }

      if (pipe.queued < highWater && pipe.src.isPaused()) pipe.src.resume()
      if (pipe.dst.writableNeedDrain) {
        // Respect the receiver's backpressure: continue once its buffer drains.
        pipe.pumping = true
        pipe.dst.once('drain', () => {
          pipe.pumping = false
          pump(conn, pipe)
        })
        return
      }

      pump(conn, pipe)
    }

    const ms = chunkDelay()
    if (ms > 0) later(ms, forward)
    else forward()
  }

  const resumeConn = (conn: Conn) => {
    if (conn.dead || isStalled(conn)) return
    for (const pipe of conn.pipes) pump(conn, pipe)
  }

  const resumeAll = () => {
    for (const conn of conns) resumeConn(conn)
  }

  const server = createServer({allowHalfOpen: true, pauseOnConnect: true}, (client) => {
    client.on('error', () => {})
    if (closed || refusing || (chaos?.refuseProbability && random() < chaos.refuseProbability)) {
      stats.refused++
      log('refused')
      client.resetAndDestroy()
      return
    }

    const upstream = createConnection({allowHalfOpen: true, host: options.target.host, port: options.target.port})
    upstream.on('error', () => {})
    upstream.pause()
    const id = nextId++
    const mkPipe = (src: Socket, dst: Socket, dir: 'up' | 'down'): Pipe => ({dir, dst, ended: false, pumping: false, queue: [], queued: 0, src})
    const conn: Conn = {client, dead: false, id, pipes: [mkPipe(client, upstream, 'up'), mkPipe(upstream, client, 'down')], stalledUntil: 0, upstream}
    conns.add(conn)
    stats.connections++

    for (const pipe of conn.pipes) {
      pipe.src.on('data', (chunk: Buffer) => {
        pipe.queue.push(chunk)
        pipe.queued += chunk.length
        if (pipe.queued >= highWater) pipe.src.pause()
        pump(conn, pipe)
      })
      pipe.src.on('end', () => {
        pipe.ended = true
        pump(conn, pipe)
      })
      pipe.src.on('close', () => {
        // Once both directions have ended (or either side was destroyed), drop the pair.
        if (conn.pipes.every((p) => p.ended && p.queue.length === 0)) kill(conn, 'closed')
        else if (pipe.src.destroyed && !pipe.ended) kill(conn, 'closed')
      })
    }

    let connected = false
    upstream.once('connect', () => {
      connected = true
      client.resume()
      upstream.resume()
    })
    upstream.once('error', () => {
      if (!conn.dead && !connected) {
        stats.refused++
        log('target-unreachable', id)
      }

      kill(conn, 'closed')
    })
  })
  server.on('error', () => {})
  const port = await listenLoopback(server)

  return {
    accept() {
      refusing = false
    },
    async close() {
      closed = true
      for (const timer of timers) clearTimeout(timer)
      timers.clear()
      for (const conn of [...conns]) kill(conn, 'closed')
      await new Promise<void>((resolve) => server.close(() => resolve()))
    },
    cutAfterBytes(n, direction = 'both') {
      cutBudget = {direction, remaining: Math.max(0, n)}
    },
    cutAll(opts = {}) {
      const all = [...conns]
      for (const conn of all) kill(conn, 'cut', opts.reset === true)
      return all.length
    },
    delay(ms) {
      delaySpec = ms
    },
    events,
    host: LOOPBACK,
    port,
    refuse(ms) {
      refusing = true
      log('refuse-on')
      if (ms !== undefined) later(ms, () => {
        refusing = false
      })
    },
    resume() {
      globalStall = false
      for (const conn of conns) conn.stalledUntil = 0
      log('resume')
      resumeAll()
    },
    setChaos(next) {
      chaos = next
    },
    stall(ms) {
      globalStall = true
      stats.stalls++
      log('stall')
      if (ms !== undefined) {
        later(ms, () => {
          globalStall = false
          resumeAll()
        })
      }
    },
    stats: () => ({...stats, active: conns.size}),
    url: (scheme = 'http') => `${scheme}://${LOOPBACK}:${port}`,
  }
}
