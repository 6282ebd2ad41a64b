/**
 * WebSocket figures against a real `pushpull listen --ws` child process (bin/run.js, needs
 * `npm run build`), driven by a bare pushpull WebSocket client in this process that keeps a
 * window of Communication Objects (100 SETs each) in flight:
 *
 *  5. peak RSS (VmHWM from /proc/PID/status, sampled VmRSS too) while it receives N SETs in one
 *     session, state on disk (SQLite), HS256 verification on. SETs are minted as they are sent
 *     (each has its own jti), so the bench process never holds them all.
 *  1b. how many ES256-verified SETs/s `listen --ws` sustains with --verify-workers 0, 1, 2 (the
 *     issue's 17,000 SETs/s: one app's million users, once a minute).
 */
import {type ChildProcess, spawn} from 'node:child_process'
import {existsSync, readFileSync, writeFileSync} from 'node:fs'
import {dirname, join} from 'node:path'
import {performance} from 'node:perf_hooks'
import {fileURLToPath} from 'node:url'

import {createSecretKey} from 'node:crypto'

import {buildCommunicationObject, parseCommunicationObject} from '../src/lib/communication.js'
import {fastSignerFor} from '../src/lib/crypto-fast.js'
import {buildClaims, type SetTemplate} from '../src/lib/mint.js'
import {connectWebSocket} from '../src/lib/transport/ws-client.js'
import type {Minted} from './ws.js'

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..')
const BIN = join(ROOT, 'bin', 'run.js')

export function builtCli(): boolean {
  return existsSync(join(ROOT, 'dist', 'commands', 'listen.js')) && existsSync(join(ROOT, 'oclif.manifest.json'))
}

interface Child {
  child: ChildProcess
  url: string
  stop(): Promise<number | null>
}

async function spawnListen(args: readonly string[], env: Record<string, string> = {}): Promise<Child> {
  const clean = Object.fromEntries(Object.entries(process.env).filter(([name]) => !name.startsWith('PUSHPULL_')))
  // BENCH_LISTEN_NODE_ARGS="--cpu-prof --cpu-prof-dir=/tmp/prof": profile the listener child.
  const nodeArgs = (process.env.BENCH_LISTEN_NODE_ARGS ?? '').split(' ').filter(Boolean)
  // No figure should measure the listener's message rate limit (2000 messages/s per peer by default).
  const child = spawn(process.execPath, [...nodeArgs, BIN, 'listen', '--port', '0', '--ws', '--max-message-rate', '1000000', ...args], {
    cwd: ROOT,
    env: {...clean, NO_COLOR: '1', ...env},
    stdio: ['ignore', 'ignore', 'pipe'],
  })
  let stderr = ''
  const url = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`listen did not start: ${stderr}`)), 20_000)
    child.stderr?.setEncoding('utf8').on('data', (chunk: string) => {
      stderr = (stderr + chunk).slice(-4000)
      const match = /listening on (http:\/\/\S+)/.exec(stderr)
      if (match?.[1] !== undefined) {
        clearTimeout(timer)
        resolve(match[1])
      }
    })
    child.on('exit', (code) => reject(new Error(`listen exited ${code}: ${stderr}`)))
  })
  return {
    child,
    async stop() {
      if (child.exitCode !== null) return child.exitCode
      const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)))
      child.kill('SIGTERM')
      return exited
    },
    url,
  }
}

/** VmRSS and VmHWM of `pid` in bytes (Linux). */
export function memoryOf(pid: number): {rss: number; hwm: number} | undefined {
  try {
    const status = readFileSync(`/proc/${pid}/status`, 'utf8')
    const kb = (name: string): number => Number(new RegExp(`^${name}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? Number.NaN) * 1024
    return {hwm: kb('VmHWM'), rss: kb('VmRSS')}
  } catch {
    return undefined
  }
}

/**
 * Send `total` SETs from `nextBatch` over one session, at most `window` messages unanswered,
 * until every one is acked. Returns SETs/s. Throws on a setErr or a closed session.
 */
async function drive(url: string, total: number, nextBatch: (n: number) => Minted[], window = 16, perMessage = 100): Promise<number> {
  const socket = await connectWebSocket(`${url.replace(/^http/, 'ws')}/pushpull`, {pingIntervalMs: 0})
  let sent = 0
  let acked = 0
  let inFlight = 0
  let failure: Error | undefined
  const start = performance.now()
  await new Promise<void>((resolve, reject) => {
    const pump = (): void => {
      while (failure === undefined && inFlight < window * perMessage && sent < total) {
        const batch = nextBatch(Math.min(perMessage, total - sent))
        sent += batch.length
        inFlight += batch.length
        socket.send(buildCommunicationObject({sets: batch.map((m) => [m.jti, m.token] as const)})).catch((error: Error) => {
          failure = error
          reject(error)
        })
      }
    }

    socket.on('message', (text) => {
      const object = parseCommunicationObject(text)
      if (object.setErrs.size > 0) {
        const [jti, setErr] = [...object.setErrs][0] as [string, {err: string; description: string}]
        failure = new Error(`setErr for ${jti}: ${setErr.err} ${setErr.description}`)
        reject(failure)
        return
      }

      acked += object.ack.length
      inFlight -= object.ack.length
      if (acked >= total) resolve()
      else pump()
    })
    socket.on('close', (info) => {
      if (acked < total) reject(new Error(`the session closed (${info.code} ${info.reason}) after ${acked} of ${total} acks`))
    })
    pump()
  })
  const elapsed = (performance.now() - start) / 1000
  await socket.close(1000, 'done')
  return total / elapsed
}

export interface MemoryFigures {
  sets: number
  peakRssMiB: number
  /** VmRSS samples (MiB) at 10%, 50% and 100% of the run. */
  rssAt10: number
  rssAt50: number
  rssAtEnd: number
  rate: number
}

/** Figure 5. `mint(n)` makes n fresh HS256 SETs signed with `secret`. */
export async function listenMemory(total: number, secret: string, stateDir: string, mint: (n: number) => Minted[]): Promise<MemoryFigures> {
  const listen = await spawnListen(['--state', join(stateDir, 'listen-memory.db'), '--json'], {PUSHPULL_SECRET: secret})
  const pid = listen.child.pid as number
  const samples: Array<{at: number; rss: number}> = []
  let sentSoFar = 0
  const sampler = setInterval(() => {
    const memory = memoryOf(pid)
    if (memory !== undefined) samples.push({at: sentSoFar, rss: memory.rss})
  }, 200)
  let rate: number
  try {
    rate = await drive(listen.url, total, (n) => {
      sentSoFar += n
      return mint(n)
    })
  } finally {
    clearInterval(sampler)
  }

  const peak = memoryOf(pid)?.hwm ?? Number.NaN
  await listen.stop()
  const mib = (bytes: number | undefined): number => (bytes ?? Number.NaN) / 1024 / 1024
  const at = (fraction: number): number => mib(samples.find((s) => s.at >= total * fraction)?.rss ?? samples.at(-1)?.rss)
  return {peakRssMiB: mib(peak), rate, rssAt10: at(0.1), rssAt50: at(0.5), rssAtEnd: mib(samples.at(-1)?.rss), sets: total}
}

/** Figure 1b: SETs/s a `listen --ws` child sustains with ES256 verification and `workers` verify workers. */
export async function listenEs256Rate(tokens: readonly Minted[], publicJwks: object, workers: number, stateDir: string): Promise<number> {
  const jwks = join(stateDir, `jwks-${workers}.json`)
  writeFileSync(jwks, JSON.stringify(publicJwks))
  const listen = await spawnListen(['--state', join(stateDir, `listen-es256-${workers}-${Date.now()}.db`), '--jwks', jwks, '--verify-workers', String(workers), '--json'])
  let next = 0
  try {
    return await drive(listen.url, tokens.length, (n) => {
      const batch = tokens.slice(next, next + n)
      next += n
      return batch
    })
  } finally {
    await listen.stop()
  }
}

/** A synchronous HS256 SET factory (each SET its own jti, a UUID v7 as `mint` makes), minting with the library's fast signer. */
export function hs256Factory(secret: string, template: SetTemplate): (n: number) => Minted[] {
  const key = createSecretKey(Buffer.from(secret))
  const sign = fastSignerFor(key, 'HS256')
  if (sign === undefined) throw new Error('no fast HS256 signer')
  const header = Buffer.from(JSON.stringify({alg: 'HS256', kid: 'bench', typ: 'secevent+jwt'})).toString('base64url')
  return (n) =>
    Array.from({length: n}, () => {
      const claims = buildClaims(template)
      const input = `${header}.${Buffer.from(JSON.stringify(claims)).toString('base64url')}`
      return {jti: claims.jti, token: `${input}.${sign(input).toString('base64url')}`}
    })
}
