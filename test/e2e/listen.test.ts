/**
 * End-to-end: a real `bin/run.js listen` process (run `npm run build` first).
 * Crash safety: killed with SIGKILL after a SET was stored and before its ack was written, the
 * restarted listener on the same state owes the ack, sends it, and acks a redelivery without
 * reporting it as new a second time.
 */
import {type ChildProcessWithoutNullStreams, spawn} from 'node:child_process'
import {mkdtempSync, rmSync, writeFileSync} from 'node:fs'
import {request as httpRequest} from 'node:http'
import {tmpdir} from 'node:os'
import {join} from 'node:path'

import {afterAll, beforeAll, describe, expect, it} from 'vitest'

import {BIN, ROOT} from '../helpers/cli.js'
import {generatePeerKey, makeSetClaims, type PeerSigningKey, publicJwks, signSet} from '../helpers/peers/index.js'

let dir: string
let key: PeerSigningKey
let jwksFile: string

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'pp-listen-e2e-'))
  key = generatePeerKey('ES256', 'k1')
  jwksFile = join(dir, 'jwks.json')
  writeFileSync(jwksFile, JSON.stringify(publicJwks([key])))
})

afterAll(() => rmSync(dir, {force: true, recursive: true}))

interface Running {
  child: ChildProcessWithoutNullStreams
  port: number
  stdout: () => string
  stderr: () => string
  exited: Promise<{code: number | null; signal: NodeJS.Signals | null}>
}

async function startListen(argv: string[], env: Record<string, string> = {}): Promise<Running> {
  const child = spawn(process.execPath, [BIN, 'listen', '--port', '0', ...argv], {cwd: ROOT, env: {...process.env, NO_COLOR: '1', ...env}})
  let stdout = ''
  let stderr = ''
  child.stdout.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk))
  const exited = new Promise<{code: number | null; signal: NodeJS.Signals | null}>((resolve) => child.on('close', (code, signal) => resolve({code, signal})))
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
    void exited.then(() => reject(new Error(`listen exited: ${stderr}`)))
  })
  return {child, exited, port, stderr: () => stderr, stdout: () => stdout}
}

async function post(port: number, path: string, body: string, contentType: string): Promise<{status: number; text: string}> {
  return new Promise((resolve, reject) => {
    const req = httpRequest({headers: {'content-type': contentType}, host: '127.0.0.1', method: 'POST', path, port}, (res) => {
      let text = ''
      res.setEncoding('utf8').on('data', (chunk: string) => (text += chunk))
      res.on('end', () => resolve({status: res.statusCode ?? 0, text}))
    })
    req.on('error', reject)
    req.end(body)
  })
}

function records(stdout: string): Array<Record<string, unknown>> {
  return stdout
    .split('\n')
    .filter((line) => line.trim() !== '')
    .map((line) => JSON.parse(line) as Record<string, unknown>)
}

describe('listen (spawned)', () => {
  it('SIGKILL between store and ack: after restart the ack is sent and the redelivery is not new again', async () => {
    const state = join(dir, 'state.db')
    const claims = makeSetClaims()
    const jti = String(claims.jti)
    const token = signSet(claims, key)

    const first = await startListen(['--state', state, '--jwks', jwksFile, '--json'], {PUSHPULL_TEST_CRASH_AFTER_STORE: '1'})
    await expect(post(first.port, '/events', token, 'application/secevent+jwt')).rejects.toThrow(/socket hang up|ECONNRESET/)
    expect(await first.exited).toEqual({code: null, signal: 'SIGKILL'})
    // Processed (reported) once, before the crash.
    expect(records(first.stdout()).filter((r) => r.type === 'set')).toEqual([expect.objectContaining({jti, status: 'new'})])

    const second = await startListen(['--state', state, '--jwks', jwksFile, '--json'])
    try {
      // The ack owed from before the crash goes out on the next exchange with that peer.
      const exchange = await post(second.port, '/pushpull', '{}', 'application/json')
      expect(JSON.parse(exchange.text)).toEqual({ack: [jti]})
      // The transmitter redelivers (it never got the 202): acked again, reported as a duplicate only.
      expect((await post(second.port, '/events', token, 'application/secevent+jwt')).status).toBe(202)
    } finally {
      second.child.kill('SIGINT')
    }

    const {code} = await second.exited
    expect(code).toBe(130)
    const sets = records(second.stdout()).filter((r) => r.type === 'set')
    // Killed after printing but before the ack went out: the SET was never marked handed off, so
    // it is printed once more as replayed at start-up (at-least-once output), then the
    // redelivery is a duplicate.
    expect(sets.map((r) => [r.jti, r.status])).toEqual([
      [jti, 'replayed'],
      [jti, 'duplicate'],
    ])
  })

  it('SIGKILL between store and print: the SET is printed as replayed on restart, once', async () => {
    const state = join(dir, 'replay.db')
    const claims = makeSetClaims()
    const jti = String(claims.jti)
    const token = signSet(claims, key)

    const first = await startListen(['--state', state, '--jwks', jwksFile, '--json'], {PUSHPULL_TEST_CRASH_AFTER_STORE: 'before-print'})
    await expect(post(first.port, '/events', token, 'application/secevent+jwt')).rejects.toThrow(/socket hang up|ECONNRESET/)
    expect(await first.exited).toEqual({code: null, signal: 'SIGKILL'})
    // Stored, never printed.
    expect(records(first.stdout()).filter((r) => r.type === 'set')).toEqual([])

    const second = await startListen(['--state', state, '--jwks', jwksFile, '--json'])
    try {
      // Printed before serving: the replayed line is already out when the port is announced.
      await expect.poll(() => records(second.stdout()).filter((r) => r.type === 'set').length).toBe(1)
      expect(second.stderr()).toContain('replayed 1 SET(s) stored before a restart but never printed')
      expect(JSON.parse((await post(second.port, '/pushpull', '{}', 'application/json')).text)).toEqual({ack: [jti]})
    } finally {
      second.child.kill('SIGINT')
    }

    expect((await second.exited).code).toBe(130)
    const sets = records(second.stdout()).filter((r) => r.type === 'set')
    expect(sets).toEqual([
      expect.objectContaining({binding: 'state', iss: claims.iss, jti, peer: 'anonymous', status: 'replayed', type: 'set', verified: null}),
    ])
    expect(sets[0]?.event).toBe('caep.session-revoked')

    // Handed off now: a third start replays nothing.
    const third = await startListen(['--state', state, '--jwks', jwksFile, '--json'])
    third.child.kill('SIGINT')
    expect((await third.exited).code).toBe(130)
    expect(records(third.stdout()).filter((r) => r.type === 'set')).toEqual([])
    expect(third.stderr()).not.toContain('replayed')
  })

  it('a second listener on the same state fails fast with ERR_STATE_LOCKED', async () => {
    const state = join(dir, 'shared.db')
    const first = await startListen(['--state', state])
    try {
      const child = spawn(process.execPath, [BIN, 'listen', '--port', '0', '--state', state, '--json'], {cwd: ROOT, env: {...process.env, NO_COLOR: '1'}})
      let stdout = ''
      child.stdout.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk))
      const code = await new Promise<number | null>((resolve) => child.on('close', (c) => resolve(c)))
      expect(code).toBe(3)
      expect(records(stdout).at(-1)).toMatchObject({error: {code: 'ERR_STATE_LOCKED'}})
    } finally {
      first.child.kill('SIGTERM')
    }

    expect((await first.exited).code).toBe(130)
  })
})
