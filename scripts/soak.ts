/**
 * Chaos soak: two real pushpull processes exchange SETs both ways over one WebSocket session
 * through the fault proxy (random cuts, stalls, delays, refused connections; seeded), while the
 * listening side is killed with SIGKILL and restarted on the same state a few times.
 *
 *   npx tsx scripts/soak.ts [--count N] [--kills K] [--seed S] [--timeout 15m] [--keep]
 *   npm run soak          (100 000 SETs each way, 3 kills)
 *   npm run soak:quick    (5 000 SETs each way, 1 kill)
 *
 * A = `bin/run.js listen --ws --emit -` (its N SETs come on stdin), B = `bin/run.js stream
 * ws://PROXY/pushpull` (its N SETs come on stdin), each with its own state file; HS256 SETs
 * minted here (deterministic jtis `a-…` / `b-…`), verified on both sides with PUSHPULL_SECRET.
 * A is killed at evenly spaced points of progress and restarted on its state file, given only
 * the input it had not yet queued (its `queued` records): its outbox lives in its state file.
 *
 * At the end (both stopped with SIGINT) it checks, and prints:
 * - exactly once: no jti reported `new` twice by a receiver (NDJSON across restarts), and each
 *   receiver's state holds every SET of the other side exactly once (accepted, nothing owed);
 *   every SET in the state was reported at least once, `new` or `replayed` (a SET stored but not
 *   printed before a SIGKILL is printed `replayed` at the restart), none lost;
 * - every SET acked back: both outboxes hold N acked rows, none pending / in flight / rejected;
 * - memory flat: RSS sampled every second; the last quarter's peak against the first quarter's.
 * Exits 1 when a check fails or the time bound passes.
 */
import {type ChildProcessWithoutNullStreams, spawn} from 'node:child_process'
import {createWriteStream, mkdtempSync, readFileSync, rmSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {fileURLToPath} from 'node:url'
import {parseArgs} from 'node:util'

import Database from 'better-sqlite3'

import {secretSigner} from '../src/lib/keys.js'
import {mintSet} from '../src/lib/mint.js'
import {type ChaosOptions, startFaultProxy} from '../test/helpers/fault-proxy.js'
import {unusedPort} from '../test/helpers/ports.js'

const ROOT = join(fileURLToPath(import.meta.url), '..', '..')
const BIN = join(ROOT, 'bin', 'run.js')
const SECRET = 'soak-shared-hmac-secret-0123456789abcdef'
const ISS = 'https://soak.example'
const EVENT = 'https://schemas.openid.net/secevent/caep/event-type/session-revoked'

export interface SoakOptions {
  /** SETs each way. */
  count: number
  /** SIGKILL + restart of the listening side. */
  kills: number
  seed: number
  /** Overall bound, ms. */
  timeoutMs: number
  chaos?: ChaosOptions
  /** Keep the state directory. */
  keep?: boolean
  log?: (line: string) => void
}

export interface SideCounts {
  /** SETs this side sent (its input). */
  sent: number
  /** Distinct jtis of the other side reported `new` here (NDJSON, every run). */
  newReported: number
  /** jtis reported `new` more than once (must be 0). */
  reportedTwice: number
  duplicatesReported: number
  /** The other side's SETs in this side's state: accepted, owed, rows, distinct. */
  inboxAccepted: number
  inboxOwed: number
  inboxRows: number
  /** SETs of the other side missing from this side's state (must be 0). */
  inboxMissing: number
  /** Distinct jtis of the other side reported `replayed` here (stored, then SIGKILL before printing). */
  replayedReported: number
  /** In the state but never reported, neither `new` nor `replayed` (lost; must be 0). */
  storedNotReported: number
  /** This side's outbox by state. */
  outbox: Record<string, number>
  rssStartMiB: number
  rssPeakLateMiB: number
  /** RSS samples (every 0.5 s) in the second fifth of the run and in its last quarter; too few means not measured. */
  rssSamples: {early: number; late: number}
}

export interface SoakResult {
  ok: boolean
  failures: string[]
  seconds: number
  kills: number
  proxy: {connections: number; cuts: number; stalls: number; refused: number; bytesUp: number; bytesDown: number}
  a: SideCounts
  b: SideCounts
  /** Undefined when the run was too short to sample (fewer than 3 early and 3 late samples per side). */
  memoryFlat: boolean | undefined
}

interface Proc {
  child: ChildProcessWithoutNullStreams
  exited: Promise<number | null>
  stderr: () => string
}

interface SideState {
  name: 'a' | 'b'
  newCounts: Map<string, number>
  /** jtis of the other side reported `replayed`. */
  replayed: Set<string>
  /** jtis of the other side reported `new` or `replayed`. */
  reported: Set<string>
  duplicates: number
  acks: Set<string>
  queued: Set<string>
  lastEventAt: number
  rss: Array<{at: number; mib: number}>
}

function sideState(name: 'a' | 'b'): SideState {
  return {acks: new Set(), duplicates: 0, lastEventAt: Date.now(), name, newCounts: new Map(), queued: new Set(), replayed: new Set(), reported: new Set(), rss: []}
}

function spawnSide(argv: string[], side: SideState, otherPrefix: string, logBase: string, stdinLines?: string[]): Proc {
  const child = spawn(process.execPath, [BIN, ...argv], {cwd: ROOT, env: {...process.env, NO_COLOR: '1', PUSHPULL_SECRET: SECRET}})
  let stderr = ''
  let rest = ''
  // Every run's output is kept next to its state (the directory is kept when the soak fails).
  const out = createWriteStream(`${logBase}.ndjson`)
  const err = createWriteStream(`${logBase}.stderr`)
  child.stderr.setEncoding('utf8').on('data', (chunk: string) => {
    err.write(chunk)
    stderr = (stderr + chunk).slice(-20_000)
  })
  child.on('close', () => {
    out.end()
    err.end()
  })
  child.stdout.setEncoding('utf8').on('data', (chunk: string) => {
    out.write(chunk)
    const lines = (rest + chunk).split('\n')
    rest = lines.pop() ?? ''
    for (const line of lines) {
      if (line === '') continue
      // A regular expression, not JSON.parse: the harness must read faster than two CLIs write
      // (a record has one "type"; a set record's claims carry the same jti).
      const type = /"type":"(\w+)"/.exec(line)?.[1]
      const jti = /"jti":"([^"]+)"/.exec(line)?.[1]
      if (type === undefined || jti === undefined) continue
      side.lastEventAt = Date.now()
      if (type === 'set' && jti.startsWith(otherPrefix)) {
        if (line.includes('"status":"new","type":"set"')) {
          side.newCounts.set(jti, (side.newCounts.get(jti) ?? 0) + 1)
          side.reported.add(jti)
        } else if (line.includes('"status":"replayed","type":"set"')) {
          side.replayed.add(jti)
          side.reported.add(jti)
        } else side.duplicates++
      } else if (type === 'ack') {
        side.acks.add(jti)
      } else if (type === 'queued') {
        side.queued.add(jti)
      }
    }
  })
  child.stdin.on('error', () => {})
  if (stdinLines === undefined) child.stdin.end()
  else void writeLines(child, stdinLines)
  const exited = new Promise<number | null>((resolve) => child.on('close', (code) => resolve(code)))
  return {child, exited, stderr: () => stderr}
}

async function writeLines(child: ChildProcessWithoutNullStreams, lines: string[]): Promise<void> {
  const chunk = 500
  for (let i = 0; i < lines.length; i += chunk) {
    const ok = child.stdin.write(`${lines.slice(i, i + chunk).join('\n')}\n`)
    if (!ok) await new Promise((resolve) => child.stdin.once('drain', resolve))
  }

  child.stdin.end()
}

async function waitFor(what: string, check: () => boolean, deadline: number, proc?: Proc): Promise<void> {
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}${proc === undefined ? '' : `; stderr: ${proc.stderr().slice(-2000)}`}`)
    await new Promise((resolve) => setTimeout(resolve, 50))
  }
}

function rssMiB(pid: number | undefined): number | undefined {
  if (pid === undefined) return undefined
  try {
    const match = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))
    return match === null ? undefined : Number(match[1]) / 1024
  } catch {
    return undefined
  }
}

async function mintAll(prefix: string, count: number): Promise<string[]> {
  const signer = secretSigner(SECRET)
  const out: string[] = []
  for (let i = 0; i < count; i++) {
    const minted = await mintSet({events: {[EVENT]: {event_timestamp: 1_700_000_000}}, iss: ISS, jti: `${prefix}${String(i).padStart(7, '0')}`, sub_id: {email: `user${i}@soak.example`, format: 'email'}}, signer)
    out.push(minted.token)
  }

  return out
}

function readState(path: string, otherPrefix: string, count: number): {outbox: Record<string, number>; accepted: number; owed: number; rows: number; jtis: Set<string>; missing: number} {
  const db = new Database(path, {readonly: true})
  try {
    const outbox: Record<string, number> = {}
    for (const row of db.prepare('SELECT state, count(*) AS n FROM outbox GROUP BY state').all() as Array<{state: string; n: number}>) outbox[row.state] = row.n
    const jtis = new Set((db.prepare('SELECT jti FROM inbox WHERE jti LIKE ?').all(`${otherPrefix}%`) as Array<{jti: string}>).map((row) => row.jti))
    const rows = (db.prepare('SELECT count(*) AS n FROM inbox WHERE jti LIKE ?').get(`${otherPrefix}%`) as {n: number}).n
    const accepted = (db.prepare("SELECT count(*) AS n FROM inbox WHERE jti LIKE ? AND verdict = 'accepted'").get(`${otherPrefix}%`) as {n: number}).n
    const owed = (db.prepare('SELECT count(*) AS n FROM inbox WHERE owed != 0').get() as {n: number}).n
    let missing = 0
    for (let i = 0; i < count; i++) if (!jtis.has(`${otherPrefix}${String(i).padStart(7, '0')}`)) missing++
    return {accepted, jtis, missing, outbox, owed, rows}
  } finally {
    db.close()
  }
}

export async function runSoak(options: SoakOptions): Promise<SoakResult> {
  const log = options.log ?? (() => {})
  const started = Date.now()
  const deadline = started + options.timeoutMs
  const dir = mkdtempSync(join(tmpdir(), 'pp-soak-'))
  const stateA = join(dir, 'a.db')
  const stateB = join(dir, 'b.db')
  const n = options.count
  log(`minting ${n} SETs each way (HS256) in ${dir}`)
  const [tokensA, tokensB] = [await mintAll('a-', n), await mintAll('b-', n)]
  const a = sideState('a')
  const b = sideState('b')
  const portA = await unusedPort()
  const proxy = await startFaultProxy({
    chaos: options.chaos ?? {cutProbability: 0.002, delayMs: {max: 2, min: 0}, refuseProbability: 0.05, stallMs: {max: 300, min: 20}, stallProbability: 0.002},
    seed: options.seed,
    target: {host: '127.0.0.1', port: portA},
  })
  const listenArgs = ['listen', '--ws', '--port', String(portA), '--state', stateA, '--json', '--ping-interval', '5s']
  let procA: Proc | undefined
  let procB: Proc | undefined
  const failures: string[] = []
  let kills = 0
  const progress = (): number => (a.reported.size + b.reported.size) / (2 * n)
  const sampler = setInterval(() => {
    const at = Date.now()
    const ra = rssMiB(procA?.child.pid)
    const rb = rssMiB(procB?.child.pid)
    if (ra !== undefined) a.rss.push({at, mib: ra})
    if (rb !== undefined) b.rss.push({at, mib: rb})
  }, 500)
  const ticker = setInterval(() => {
    const s = proxy.stats()
    log(`  ${((Date.now() - started) / 1000).toFixed(0)}s  A got ${a.newCounts.size}/${n} new, B got ${b.newCounts.size}/${n} new, acks to B ${b.acks.size}, acks to A ${a.acks.size}; kills ${kills}; proxy cuts ${s.cuts} stalls ${s.stalls} refused ${s.refused}`)
  }, 5000)

  // Restarted, A is given what it had not queued yet (a `queued` line lost to SIGKILL means the
  // SET is offered again: the outbox answers "exists" or "jti-reused" and sends nothing twice).
  const startA = async (): Promise<Proc> => {
    const rest = tokensA.filter((_token, i) => !a.queued.has(`a-${String(i).padStart(7, '0')}`))
    const proc = spawnSide(rest.length > 0 ? [...listenArgs, '--emit', '-'] : listenArgs, a, 'b-', join(dir, `listen-${kills}`), rest.length > 0 ? rest : undefined)
    await waitFor('listen to start', () => /listening on /.test(proc.stderr()), deadline, proc)
    return proc
  }

  try {
    procA = await startA()
    procB = spawnSide(['stream', `${proxy.url('ws')}/pushpull`, '--state', stateB, '--json', '--ping-interval', '5s'], b, 'a-', join(dir, 'stream'), tokensB)
    for (let k = 1; k <= options.kills; k++) {
      const at = k / (options.kills + 1)
      await waitFor(`progress ${at.toFixed(2)} before kill ${k}`, () => progress() >= at, deadline, procA)
      procA.child.kill('SIGKILL')
      await procA.exited
      kills++
      log(`  SIGKILL listen (${k}/${options.kills}) at ${(progress() * 100).toFixed(0)}%`)
      procA = await startA()
    }

    await waitFor('every SET received and acked', () => b.reported.size >= n && b.acks.size >= n, deadline, procB)
    // A's own ack lines may have been lost to a SIGKILL: wait for all of them, or for quiet.
    await waitFor('acks for A', () => a.acks.size >= n || Date.now() - a.lastEventAt > 5000, deadline)
    await waitFor('A to report B\'s SETs', () => a.reported.size >= n || Date.now() - a.lastEventAt > 5000, deadline)
  } catch (error) {
    failures.push((error as Error).message)
  } finally {
    clearInterval(sampler)
    clearInterval(ticker)
    for (const proc of [procB, procA]) {
      if (proc === undefined || proc.child.exitCode !== null) continue
      proc.child.kill('SIGINT')
      const timer = setTimeout(() => proc.child.kill('SIGKILL'), 10_000)
      await proc.exited
      clearTimeout(timer)
    }

    await proxy.close()
  }

  const stats = proxy.stats()
  const sides: Record<'a' | 'b', SideCounts> = {} as Record<'a' | 'b', SideCounts>
  for (const [side, path, other] of [[a, stateA, 'b-'], [b, stateB, 'a-']] as const) {
    const state = readState(path, other, n)
    const reportedTwice = [...side.newCounts.values()].filter((count) => count > 1).length
    let storedNotReported = 0
    for (const jti of state.jtis) if (!side.reported.has(jti)) storedNotReported++
    // Early: the second fifth of the run (inputs loaded, exchange going); late: its last quarter.
    const span = Math.max(1, Date.now() - started)
    const early = side.rss.filter((sample) => sample.at - started >= 0.2 * span && sample.at - started <= 0.4 * span).map((sample) => sample.mib)
    const late = side.rss.filter((sample) => sample.at - started >= 0.75 * span).map((sample) => sample.mib)
    sides[side.name] = {
      duplicatesReported: side.duplicates,
      inboxAccepted: state.accepted,
      inboxMissing: state.missing,
      inboxOwed: state.owed,
      inboxRows: state.rows,
      newReported: side.newCounts.size,
      outbox: state.outbox,
      reportedTwice,
      rssPeakLateMiB: Math.round(Math.max(0, ...late)),
      rssSamples: {early: early.length, late: late.length},
      rssStartMiB: Math.round(early.length > 0 ? Math.max(...early) : (side.rss[0]?.mib ?? 0)),
      sent: n,
      replayedReported: side.replayed.size,
      storedNotReported,
    }
  }

  for (const name of ['a', 'b'] as const) {
    const side = sides[name]
    const other = name === 'a' ? 'B' : 'A'
    if (side.reportedTwice > 0) failures.push(`${name.toUpperCase()} reported ${side.reportedTwice} of ${other}'s SETs new more than once`)
    if (side.storedNotReported > 0) failures.push(`${name.toUpperCase()} never reported ${side.storedNotReported} of ${other}'s stored SETs (neither new nor replayed)`)
    if (side.inboxMissing > 0) failures.push(`${name.toUpperCase()}'s state misses ${side.inboxMissing} of ${other}'s SETs`)
    if (side.inboxRows !== n || side.inboxAccepted !== n) failures.push(`${name.toUpperCase()}'s state holds ${side.inboxRows} rows / ${side.inboxAccepted} accepted of ${other}'s ${n} SETs`)
    if (side.inboxOwed > 0) failures.push(`${name.toUpperCase()} still owes ${side.inboxOwed} acks`)
    const acked = side.outbox.acked ?? 0
    const notDone = Object.entries(side.outbox).filter(([state, count]) => state !== 'acked' && count > 0)
    if (acked !== n || notDone.length > 0) failures.push(`${name.toUpperCase()}'s outbox: ${JSON.stringify(side.outbox)} (want ${n} acked, nothing else)`)
  }

  const measured = (['a', 'b'] as const).every((name) => sides[name].rssSamples.early >= 3 && sides[name].rssSamples.late >= 3)
  const memoryFlat = measured
    ? (['a', 'b'] as const).every((name) => {
        const side = sides[name]
        return side.rssPeakLateMiB <= Math.max(side.rssStartMiB * 1.5, side.rssStartMiB + 64)
      })
    : undefined
  if (memoryFlat === false) failures.push(`memory grew: A ${sides.a.rssStartMiB} -> ${sides.a.rssPeakLateMiB} MiB, B ${sides.b.rssStartMiB} -> ${sides.b.rssPeakLateMiB} MiB`)
  if (options.keep === true || failures.length > 0) log(`state and outputs kept in ${dir}`)
  else rmSync(dir, {force: true, recursive: true})
  return {
    a: sides.a,
    b: sides.b,
    failures,
    kills,
    memoryFlat,
    ok: failures.length === 0,
    proxy: {bytesDown: stats.bytesDown, bytesUp: stats.bytesUp, connections: stats.connections, cuts: stats.cuts, refused: stats.refused, stalls: stats.stalls},
    seconds: Math.round((Date.now() - started) / 100) / 10,
  }
}

function parseDurationMs(text: string): number {
  const match = /^(\d+)(ms|s|m|h)?$/.exec(text)
  if (match === null) throw new Error(`not a duration: ${text}`)
  const unit = {h: 3_600_000, m: 60_000, ms: 1, s: 1000}[match[2] ?? 's'] ?? 1000
  return Number(match[1]) * unit
}

async function main(): Promise<void> {
  const {values} = parseArgs({
    options: {
      count: {default: '100000', type: 'string'},
      keep: {default: false, type: 'boolean'},
      kills: {default: '3', type: 'string'},
      seed: {default: '20250601', type: 'string'},
      timeout: {default: '20m', type: 'string'},
    },
  })
  const options: SoakOptions = {
    count: Number(values.count),
    keep: values.keep,
    kills: Number(values.kills),
    log: (line) => console.log(line),
    seed: Number(values.seed),
    timeoutMs: parseDurationMs(values.timeout),
  }
  console.log(`soak: ${options.count} SETs each way, ${options.kills} SIGKILLs, seed ${options.seed}, bound ${values.timeout}`)
  const result = await runSoak(options)
  const side = (name: string, s: SideCounts): string =>
    [
      `${name}: sent ${s.sent}, outbox ${JSON.stringify(s.outbox)}`,
      `   received ${s.inboxRows} in state (${s.inboxAccepted} accepted, ${s.inboxMissing} missing, ${s.inboxOwed} acks owed)`,
      `   reported new ${s.newReported} (twice: ${s.reportedTwice}), duplicates ${s.duplicatesReported}, replayed after SIGKILL ${s.replayedReported}, lost ${s.storedNotReported}`,
      `   RSS ${s.rssStartMiB} MiB early -> ${s.rssPeakLateMiB} MiB peak late (${s.rssSamples.early} + ${s.rssSamples.late} samples)`,
    ].join('\n')
  console.log(`\nresult after ${result.seconds} s, ${result.kills} SIGKILLs of listen`)
  console.log(`proxy: ${result.proxy.connections} connections, ${result.proxy.cuts} cuts, ${result.proxy.stalls} stalls, ${result.proxy.refused} refused, ${result.proxy.bytesUp} bytes up, ${result.proxy.bytesDown} down`)
  console.log(side('A (listen --ws)', result.a))
  console.log(side('B (stream)', result.b))
  console.log(`memory flat: ${result.memoryFlat === undefined ? 'not measured (run too short)' : result.memoryFlat ? 'yes' : 'NO'}`)
  if (result.ok) console.log('OK: every SET processed exactly once and acked, nothing pending')
  else {
    console.log(`FAILED:\n- ${result.failures.join('\n- ')}`)
    process.exitCode = 1
  }
}

if (process.argv[1] !== undefined && fileURLToPath(import.meta.url) === process.argv[1]) await main()
