/**
 * Secrets canary: every command runs (spawned bin/run.js; run `npm run build` first) with a
 * recognisable bearer token, HMAC secret and private key, against real loopback peers,
 * succeeding and failing, with and without --json, --dry-run and --help, under DEBUG=* too. Then
 * everything they wrote is searched for the secrets: stdout, stderr, and every file created in
 * the working directory / HOME (state databases with their WAL files included: they must hold
 * SETs and peer ids, never credentials). Only the files the test itself wrote to hand the secrets
 * over (token files, the generated key files) are not searched.
 *
 * Also: a running `listen` shows no secret in its argv (`ps -o args`, /proc/PID/cmdline) when the
 * secrets come from files and the environment, does not set a process title, and files holding
 * secrets that others can read trigger a warning.
 */
import {type ChildProcessWithoutNullStreams, execFileSync, spawn} from 'node:child_process'
import {chmodSync, copyFileSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join, relative} from 'node:path'

import {afterAll, beforeAll, describe, expect, it} from 'vitest'

import {BIN, ROOT} from '../helpers/cli.js'
import {
  generatePeerKey,
  makeSetClaims,
  type PeerSigningKey,
  type PollTransmitter,
  type PushReceiver,
  type PushpullWsPeer,
  signSet,
  startPollTransmitter,
  startPushpullWsPeer,
  startPushReceiver,
} from '../helpers/peers/index.js'

const TOKEN = 'PPcanaryTOKEN7f3a9b1c5d0e2a4c6b8d'
const SECRET = 'PPcanarySECRET2e8d4f6a0b1c3e5f7a9b1d3f'
const WRONG_TOKEN = 'PPcanaryWRONG9a8b7c6d5e4f3a2b1c0d'

let dir: string
let keyDir: string
let privatePem: string
/** Files the test wrote to hand secrets over: not searched. */
const secretFiles = new Set<string>()
/** Strings that must never be written: the secrets, their encodings, and pieces of the private key. */
let needles: Array<{name: string; value: string}> = []

interface Run {
  argv: string[]
  stdout: string
  stderr: string
  exitCode: number
}
const runs: Run[] = []

let push: PushReceiver
let pollPeer: PollTransmitter
let wsPeer: PushpullWsPeer
let peerKey: PeerSigningKey

function b64url(text: string): string {
  return Buffer.from(text).toString('base64url')
}

async function cli(argv: string[], options: {env?: Record<string, string>; stdin?: string; timeoutMs?: number} = {}): Promise<Run> {
  const child = spawn(process.execPath, [BIN, ...argv], {
    cwd: dir,
    // HOME and XDG_STATE_HOME point into the test directory, so default state files land there.
    env: {...process.env, HOME: dir, NO_COLOR: '1', PUSHPULL_NO_FAST_PATH: '', XDG_STATE_HOME: join(dir, 'xdg-state'), ...options.env},
    stdio: ['pipe', 'pipe', 'pipe'],
  })
  let stdout = ''
  let stderr = ''
  child.stdout.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk))
  child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk))
  child.stdin.end(options.stdin ?? '')
  const timer = setTimeout(() => child.kill('SIGKILL'), options.timeoutMs ?? 20_000)
  const code = await new Promise<number | null>((resolve) => child.on('close', (c) => resolve(c)))
  clearTimeout(timer)
  const run = {argv, exitCode: code ?? -1, stderr, stdout}
  runs.push(run)
  return run
}

function secretFile(name: string, content: string, mode = 0o600): string {
  const path = join(dir, name)
  writeFileSync(path, content)
  chmodSync(path, mode)
  secretFiles.add(path)
  return path
}

function leaksIn(text: string): string[] {
  return needles.filter((needle) => text.includes(needle.value)).map((needle) => needle.name)
}

function listFiles(root: string): string[] {
  const out: string[] = []
  for (const entry of readdirSync(root, {withFileTypes: true})) {
    const path = join(root, entry.name)
    if (entry.isDirectory()) out.push(...listFiles(path))
    else if (entry.isFile()) out.push(path)
  }

  return out
}

function minted(): {jti: string; token: string} {
  const claims = makeSetClaims()
  return {jti: String(claims.jti), token: signSet(claims, peerKey)}
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'pp-canary-'))
  keyDir = join(dir, 'keys')
  peerKey = generatePeerKey('ES256', 'peer')
  const generated = await cli(['keys', 'generate', '--out', keyDir, '--kid', 'canary'])
  expect(generated.exitCode).toBe(0)
  for (const name of readdirSync(keyDir)) secretFiles.add(join(keyDir, name))
  privatePem = readFileSync(join(keyDir, 'private.pem'), 'utf8')
  const jwk = JSON.parse(readFileSync(join(keyDir, 'private.jwk.json'), 'utf8')) as {d: string}
  const pemLines = privatePem.split('\n').filter((line) => line !== '' && !line.startsWith('-----'))
  needles = [
    {name: 'bearer token', value: TOKEN},
    {name: 'bearer token (base64url)', value: b64url(TOKEN)},
    {name: 'HMAC secret', value: SECRET},
    {name: 'HMAC secret (base64url, as a JWK "k")', value: b64url(SECRET)},
    {name: 'HMAC secret (base64)', value: Buffer.from(SECRET).toString('base64')},
    {name: 'private key "d"', value: jwk.d},
    ...pemLines.map((line, index) => ({name: `private key PEM line ${index + 1}`, value: line.slice(0, 40)})),
  ]
  push = await startPushReceiver({token: TOKEN})
  pollPeer = await startPollTransmitter({longPollTimeoutMs: 200, token: TOKEN})
  wsPeer = await startPushpullWsPeer({token: TOKEN})
}, 30_000)

afterAll(async () => {
  await Promise.all([push?.close(), pollPeer?.close(), wsPeer?.close()])
  rmSync(dir, {force: true, recursive: true})
})

describe('secrets canary', () => {
  it('runs every command with the secrets and finds them in nothing it wrote', async () => {
    const tokenFile = secretFile('token.txt', `${TOKEN}\n`)
    const wrongTokenFile = secretFile('wrong-token.txt', `${WRONG_TOKEN}\n`)
    const key = join(keyDir, 'private.pem')
    const jwks = join(keyDir, 'jwks.json')
    const secretEnv = {PUSHPULL_SECRET: SECRET}
    const tokenEnv = {PUSHPULL_TOKEN: TOKEN}
    const event = ['--iss', 'https://canary.example', '--event', 'session-revoked', '--subject', 'email:canary@example.com']
    const state = (name: string) => ['--state', join(dir, `${name}.db`)]

    // mint and decode: private key, HMAC secret from the environment and from argv.
    const pemToken = await cli(['mint', '--signing-key', key, ...event])
    expect(pemToken.exitCode).toBe(0)
    const hmacToken = await cli(['mint', ...event, '--json'], {env: secretEnv})
    expect(hmacToken.exitCode).toBe(0)
    await cli(['mint', '--secret', SECRET, ...event, '--count', '2'])
    await cli(['mint', '--signing-key', join(dir, 'missing.pem'), ...event])
    await cli(['mint', '--secret', '', ...event])
    const hs = (JSON.parse(hmacToken.stdout.trim().split('\n')[0] ?? '{}') as {token?: string}).token ?? hmacToken.stdout.trim()
    expect(hs.split('.')).toHaveLength(3)
    expect((await cli(['decode', hs, '--json'], {env: secretEnv})).exitCode).toBe(0)
    expect((await cli(['decode', hs], {env: {PUSHPULL_SECRET: `${SECRET}x`}})).exitCode).not.toBe(0)
    await cli(['decode', pemToken.stdout.trim(), '--jwks', jwks, '--json'])
    await cli(['decode', hs, '--secret', SECRET])
    await cli(['decode', '--secret', SECRET], {stdin: 'not a token'})

    // send: push with a token file, the environment, argv; dry runs; a wrong token (401).
    const sent = await cli(['send', '--to', push.url, '--token-file', tokenFile, '--signing-key', key, ...event, '--json', ...state('send')])
    expect(sent.exitCode).toBe(0)
    expect((await cli(['send', '--to', push.url, ...event, '--memory-state'], {env: {...secretEnv, ...tokenEnv}})).exitCode).toBe(0)
    await cli(['send', '--to', push.url, '--token', TOKEN, '--secret', SECRET, ...event, '--dry-run', '--json', '--memory-state'])
    await cli(['send', '--to', push.url, '--token', TOKEN, '--secret', SECRET, ...event, '--dry-run', '--memory-state'])
    await cli(['send', '--to', push.url, '--token', TOKEN, '--secret', SECRET, ...event, '--tamper', 'signature', '--json', '--memory-state'])
    const refused = await cli(['send', '--to', push.url, '--token-file', wrongTokenFile, '--signing-key', key, ...event, '--json', '--memory-state'])
    expect(refused.exitCode).not.toBe(0)
    await cli(['send', '--to', 'http://127.0.0.1:1/events', '--token', TOKEN, '--secret', SECRET, ...event, '--memory-state', '--wait', '1s'])
    await cli(['send', '--to', 'http://user:pw@127.0.0.1:1/events?access_token=' + TOKEN, '--secret', SECRET, ...event, '--memory-state', '--wait', '1s'])
    expect(push.received.length).toBeGreaterThanOrEqual(2)

    // poll and ack against the RFC 8936 transmitter.
    pollPeer.queue([minted(), minted()])
    const polled = await cli(['poll', pollPeer.url, '--token-file', tokenFile, '--allow-unsigned', '--return-immediately', '--json', ...state('poll')])
    expect(polled.exitCode).toBe(0)
    await cli(['poll', pollPeer.url, '--token', WRONG_TOKEN, '--return-immediately', '--memory-state'], {env: secretEnv})
    await cli(['poll', pollPeer.url, '--return-immediately', '--ack', 'manual', '--secret', SECRET, ...state('poll-manual')], {env: tokenEnv})
    await cli(['ack', '--to', pollPeer.url, '--list', ...state('poll-manual')], {env: tokenEnv})
    await cli(['ack', '--to', pollPeer.url, '--token-file', tokenFile, '--err', 'invalid_key', '--description', 'canary', 'no-such-jti', ...state('poll-manual')])

    // stream against the WebSocket peer: SETs out, then exit.
    const streamed = await cli(['stream', wsPeer.url, '--token-file', tokenFile, '--secret', SECRET, ...event, '--count', '3', '--exit-on-eof', '--duration', '5s', '--json', '--memory-state'])
    expect(streamed.stdout).toContain('"ackedByPeer":3')
    await cli(['stream', wsPeer.url, '--token', WRONG_TOKEN, ...event, '--exit-on-eof', '--duration', '3s', '--memory-state'], {env: secretEnv})

    // ssf commands with a token, against something that is not an SSF transmitter.
    await cli(['ssf', 'discover', push.url.replace(/\/events$/, ''), '--allow-http', '--token-file', tokenFile, '--json'])
    await cli(['ssf', 'streams', 'list', '--issuer', push.url.replace(/\/events$/, ''), '--allow-http', '--json'], {env: tokenEnv})

    // Under DEBUG (oclif logs its argv and config): secrets from files and the environment only.
    await cli(['send', '--to', push.url, '--token-file', tokenFile, ...event, '--memory-state', '--json'], {env: {...secretEnv, DEBUG: '*'}})
    await cli(['poll', pollPeer.url, '--return-immediately', '--memory-state'], {env: {...secretEnv, ...tokenEnv, DEBUG: '*'}})

    // --help of every command, with the secrets in the environment.
    const manifest = JSON.parse(readFileSync(join(ROOT, 'oclif.manifest.json'), 'utf8')) as {commands: Record<string, unknown>}
    const ids = Object.keys(manifest.commands)
    expect(ids.length).toBeGreaterThan(10)
    for (let i = 0; i < ids.length; i += 4) {
      const helps = await Promise.all(ids.slice(i, i + 4).map(async (id) => cli([...id.split(':'), '--help'], {env: {...secretEnv, ...tokenEnv, PUSHPULL_FORWARD_TOKEN: TOKEN}})))
      for (const help of helps) expect(help.exitCode, help.argv.join(' ')).toBe(0)
    }

    await cli(['events', '--json'])

    // The search finds what it looks for (a canary that cannot fail is no canary).
    expect(leaksIn(`x${TOKEN}x ${b64url(SECRET)} ${privatePem}`)).toEqual(expect.arrayContaining(['bearer token', 'HMAC secret (base64url, as a JWK "k")', 'private key PEM line 1']))

    // Every output and every file written must be free of the secrets.
    for (const run of runs) {
      const shown = run.argv.map((arg) => (arg.includes(TOKEN) || arg.includes(SECRET) ? '<secret>' : arg)).join(' ')
      expect(leaksIn(run.stdout), `stdout of ${shown}`).toEqual([])
      expect(leaksIn(run.stderr), `stderr of ${shown}`).toEqual([])
    }

    const written = listFiles(dir).filter((path) => !secretFiles.has(path))
    expect(written.some((path) => path.endsWith('.db'))).toBe(true)
    for (const path of written) {
      expect(leaksIn(readFileSync(path).toString('latin1')), `file ${relative(dir, path)}`).toEqual([])
    }

    // Peers saw the token only in Authorization headers, never in a path or a body.
    expect(push.requests.every((request) => !request.path.includes(TOKEN) && !request.body.includes(TOKEN))).toBe(true)
  }, 180_000)

  it('a running listen shows no secret in ps, /proc cmdline or its title; its output carries none either', async () => {
    const listenTokens = join(dir, 'listen-tokens-2.txt')
    writeFileSync(listenTokens, `canary=${TOKEN}\n`, {mode: 0o600})
    secretFiles.add(listenTokens)
    const child: ChildProcessWithoutNullStreams = spawn(
      process.execPath,
      [BIN, 'listen', '--port', '0', '--token-file', listenTokens, '--state', join(dir, 'listen.db'), '--json'],
      {cwd: dir, env: {...process.env, HOME: dir, NO_COLOR: '1', PUSHPULL_SECRET: SECRET}},
    )
    let stdout = ''
    let stderr = ''
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk))
    const exited = new Promise<number | null>((resolve) => child.on('close', (code) => resolve(code)))
    const port = await new Promise<number>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`listen did not start: ${stderr}`)), 15_000)
      child.stderr.setEncoding('utf8').on('data', (chunk: string) => {
        stderr += chunk
        const match = /listening on http:\/\/127\.0\.0\.1:(\d+)/.exec(stderr)
        if (match !== null) {
          clearTimeout(timer)
          resolve(Number(match[1]))
        }
      })
    })
    const pid = String(child.pid)
    const psArgs = execFileSync('ps', ['-o', 'args=', '-p', pid], {encoding: 'utf8'})
    const cmdline = readFileSync(`/proc/${pid}/cmdline`, 'utf8')
    const title = readFileSync(`/proc/${pid}/comm`, 'utf8')
    expect(psArgs).toContain('listen')
    for (const text of [psArgs, cmdline, title]) expect(leaksIn(text)).toEqual([])
    // The environment is private to the user (/proc/PID/environ is mode 0400).
    expect(statSync(`/proc/${pid}/environ`).mode & 0o077).toBe(0)

    // A peer sends with the token (HMAC-signed SETs, verified with the secret from the environment).
    const hmacSet = await cli(['mint', '--iss', 'https://canary.example', '--event', 'session-revoked', '--subject', 'email:canary@example.com'], {env: {PUSHPULL_SECRET: SECRET}})
    const sent = await cli(['send', '--to', `http://127.0.0.1:${port}/pushpull`, '--via', 'pushpull', '--memory-state', '--json'], {env: {PUSHPULL_TOKEN: TOKEN}, stdin: hmacSet.stdout})
    expect(sent.exitCode).toBe(0)
    const wrong = await cli(['send', '--to', `http://127.0.0.1:${port}/events`, '--token', WRONG_TOKEN, '--memory-state'], {stdin: hmacSet.stdout})
    expect(wrong.exitCode).not.toBe(0)
    child.kill('SIGINT')
    expect(await exited).toBe(130)
    expect(stdout).toContain('"verified":true')
    expect(stdout).toContain('token:canary')
    expect(leaksIn(stdout)).toEqual([])
    expect(leaksIn(stderr)).toEqual([])
    for (const path of listFiles(dir).filter((file) => file.includes('listen.db'))) expect(leaksIn(readFileSync(path).toString('latin1'))).toEqual([])
  }, 60_000)

  it('warns when a token file, a private key or a listen token file can be read by others', async () => {
    const looseToken = secretFile('loose-token.txt', `${TOKEN}\n`, 0o644)
    const looseKey = join(dir, 'loose.pem')
    copyFileSync(join(keyDir, 'private.pem'), looseKey)
    chmodSync(looseKey, 0o640)
    secretFiles.add(looseKey)
    const event = ['--iss', 'https://canary.example', '--event', 'session-revoked', '--subject', 'email:canary@example.com']

    const sent = await cli(['send', '--to', push.url, '--token-file', looseToken, '--signing-key', looseKey, ...event, '--memory-state'])
    expect(sent.exitCode).toBe(0)
    expect(sent.stderr).toContain(`the token file ${looseToken} is readable by other users (mode 644); run: chmod 600 ${looseToken}`)
    expect(sent.stderr).toContain(`the private key file ${looseKey} is readable by other users (mode 640); run: chmod 600 ${looseKey}`)
    const minted2 = await cli(['mint', '--signing-key', looseKey, ...event])
    expect(minted2.stderr).toContain(`the private key file ${looseKey} is readable by other users (mode 640)`)
    const polled = await cli(['poll', pollPeer.url, '--token-file', looseToken, '--return-immediately', '--memory-state'])
    expect(polled.stderr).toContain(`the token file ${looseToken} is readable by other users (mode 644)`)

    const listenTokens = secretFile('loose-listen-tokens.txt', `canary=${TOKEN}\n`, 0o644)
    const tlsKey = join(dir, 'loose-tls.pem')
    copyFileSync(join(keyDir, 'private.pem'), tlsKey)
    chmodSync(tlsKey, 0o644)
    secretFiles.add(tlsKey)
    // Both files are read (and warned about) before the certificate, which does not exist: exit 2.
    const listen = await cli(['listen', '--port', '0', '--token-file', listenTokens, '--memory-state', '--tls-key', tlsKey, '--tls-cert', join(dir, 'no-such-cert.pem')])
    expect(listen.exitCode).toBe(2)
    expect(listen.stderr).toContain(`the token file ${listenTokens} is readable by other users (mode 644); run: chmod 600 ${listenTokens}`)
    expect(listen.stderr).toContain(`the TLS private key file ${tlsKey} is readable by other users (mode 644)`)
    for (const run of [sent, minted2, polled, listen]) {
      expect(leaksIn(run.stdout)).toEqual([])
      expect(leaksIn(run.stderr)).toEqual([])
    }

    // The key files keys generate writes are private.
    mkdirSync(join(dir, 'keys2'))
    await cli(['keys', 'generate', '--out', join(dir, 'keys2')])
    for (const name of ['private.pem', 'private.jwk.json']) {
      secretFiles.add(join(dir, 'keys2', name))
      expect(statSync(join(dir, 'keys2', name)).mode & 0o777).toBe(0o600)
    }

    secretFiles.add(join(dir, 'keys2', 'jwks.json'))
  }, 60_000)
})
