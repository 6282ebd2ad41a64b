/**
 * send, poll and ack against pushpull's own `listen` (a separate process, started with tsx from
 * bin/dev.js so no build is needed), on loopback port 0.
 */
import {type ChildProcess, spawn} from 'node:child_process'
import {mkdtempSync, writeFileSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'

import {afterAll, beforeAll, describe, expect, it} from 'vitest'

import Ack from '../../src/commands/ack.js'
import Poll from '../../src/commands/poll.js'
import Send from '../../src/commands/send.js'
import {jsonLines, ROOT, runCommand} from '../helpers/cli.js'

const dir = mkdtempSync(join(tmpdir(), 'pushpull-e2e-delivery-'))
const SECRET = 'e2e-shared-secret-0123456789abcdef'
const EVENT_FILE = join(dir, 'event.json')
writeFileSync(EVENT_FILE, JSON.stringify({event: 'caep.session-revoked', subject: 'email:bo@example.com'}))
const MINT = ['--secret', SECRET, '--iss', 'https://idp.example', '--event', 'caep.session-revoked', '--subject', 'email:ana@example.com']

type Rec = Record<string, unknown>

let child: ChildProcess
let base = ''
let stdout = ''

beforeAll(async () => {
  child = spawn(
    process.execPath,
    ['--import', 'tsx', join(ROOT, 'bin', 'dev.js'), 'listen', '--port', '0', '--memory-state', '--secret', SECRET, '--emit', EVENT_FILE, '--iss', 'https://tx.example', '--json'],
    {cwd: ROOT, env: {...process.env, NO_COLOR: '1'}, stdio: ['ignore', 'pipe', 'pipe']},
  )
  child.stdout!.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk))
  base = await new Promise<string>((resolve, reject) => {
    let stderr = ''
    const timer = setTimeout(() => reject(new Error(`listen did not start: ${stderr}`)), 20_000)
    child.stderr!.setEncoding('utf8').on('data', (chunk: string) => {
      stderr += chunk
      const match = /listening on (http:\/\/[^\s/]+)/.exec(stderr)
      if (match) {
        clearTimeout(timer)
        resolve(match[1]!)
      }
    })
    child.once('exit', (code) => reject(new Error(`listen exited ${code}: ${stderr}`)))
  })
}, 30_000)

afterAll(async () => {
  if (child.exitCode === null) {
    const exited = new Promise((resolve) => child.once('exit', resolve))
    child.kill('SIGINT')
    await exited
  }
})

describe('against pushpull listen', () => {
  // First: a pushpull exchange below would also be handed the emitted SET (it is queued for every peer).
  it('poll --ack manual then ack: the emitted SET is received verified, then acknowledged', async () => {
    const state = join(dir, 'poller.db')
    const polled = await runCommand(Poll, [`${base}/poll`, '--state', state, '--secret', SECRET, '--return-immediately', '--ack', 'manual', '--json'])
    expect(polled.exitCode).toBe(0)
    const sets = (jsonLines(polled.stdout) as Rec[]).filter((l) => l.type === 'set')
    expect(sets).toHaveLength(1)
    expect(sets[0]).toMatchObject({event: 'caep.session-revoked', iss: 'https://tx.example', status: 'new', subject: expect.stringContaining('bo@example.com'), verified: true})

    const acked = await runCommand(Ack, ['--to', `${base}/poll`, '--state', state, '--json'])
    expect(acked.exitCode).toBe(0)
    expect(jsonLines(acked.stdout)[0]).toMatchObject({ack: [sets[0]!.jti]})
    await expect.poll(() => stdout.includes('"type":"ack"'), {timeout: 5000}).toBe(true)

    // Acked: a second poll gets nothing.
    const again = await runCommand(Poll, [`${base}/poll`, '--state', state, '--secret', SECRET, '--return-immediately', '--json'])
    expect((jsonLines(again.stdout) as Rec[]).filter((l) => l.type === 'set')).toHaveLength(0)
  })

  it('send --via push: accepted, and listen prints the SET', async () => {
    const result = await runCommand(Send, ['--to', `${base}/events`, '--memory-state', ...MINT, '--json'])
    expect(result.exitCode).toBe(0)
    const [first] = jsonLines(result.stdout) as Rec[]
    expect(first).toMatchObject({status: 'accepted', type: 'result'})
    await expect.poll(() => stdout.includes(String(first!.jti)), {timeout: 5000}).toBe(true)
  })

  it('send --via pushpull and multi-push: acked', async () => {
    for (const via of ['pushpull', 'multi-push']) {
      const result = await runCommand(Send, ['--to', `${base}/pushpull`, '--via', via, '--memory-state', ...MINT, '--count', '3', '--json'])
      expect(result.exitCode).toBe(0)
      const results = (jsonLines(result.stdout) as Rec[]).filter((l) => l.type === 'result')
      expect(results.map((r) => r.status)).toEqual(['acked', 'acked', 'acked'])
    }
  })

  it('send --tamper signature: listen rejects it with invalid_key', async () => {
    const result = await runCommand(Send, ['--to', `${base}/events`, '--tamper', 'signature', ...MINT, '--json'])
    expect(result.exitCode).toBe(0)
    expect((jsonLines(result.stdout) as Rec[])[0]).toMatchObject({err: 'invalid_key', status: 'rejected', tamper: {asExpected: true}})
  })

})
