/** End-to-end (built bin/run.js): demo exits 0; SIGINT during a stream flushes owed acks, closes 1001, exits 130. */
import {spawn} from 'node:child_process'

import {afterEach, describe, expect, it} from 'vitest'

import {BIN, spawnCli} from '../helpers/cli.js'
import {generatePeerKey, mintSets, type PushpullWsPeer, startPushpullWsPeer} from '../helpers/peers/index.js'

const closers: Array<() => Promise<void>> = []
afterEach(async () => {
  while (closers.length > 0) await closers.pop()?.()
})

describe('stream end to end', () => {
  it('pushpull demo exits 0 with the summary', async () => {
    const result = await spawnCli(['demo'], {timeoutMs: 30_000})
    expect(result.exitCode).toBe(0)
    expect(result.stdout).toContain('every SET was verified, stored and acknowledged, both ways, over one WebSocket session')
  }, 40_000)

  it('SIGINT: owed acks are flushed, the session closes with 1001, exit 130', async () => {
    const peer: PushpullWsPeer = await startPushpullWsPeer()
    closers.push(() => peer.close())
    const key = generatePeerKey('ES256', 'k')
    const child = spawn(process.execPath, [BIN, 'stream', peer.url, '--memory-state', '--ack-delay', '60m', '--json'], {
      env: {...process.env, NO_COLOR: '1'},
      stdio: ['pipe', 'pipe', 'pipe'],
    })
    let stdout = ''
    let stderr = ''
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk))
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk))
    const exited = new Promise<number | null>((resolve) => child.on('close', (code) => resolve(code)))
    await peer.waitFor(() => peer.openConnections() === 1, 10_000)
    const connected = Date.now() + 10_000
    while (!stderr.includes('connected to') && Date.now() < connected) await new Promise((resolve) => setTimeout(resolve, 20))
    // the first flush of a new connection (owed acks first) has run; from now acks wait for --ack-delay
    await new Promise((resolve) => setTimeout(resolve, 100))
    const sets = mintSets(2, key)
    peer.queue(sets)
    const deadline = Date.now() + 10_000
    while (stdout.split('\n').filter((l) => l.includes('"type":"set"')).length < 2 && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 20))
    expect(peer.ackedByClient).toEqual([])
    child.kill('SIGINT')
    const code = await exited
    expect(code).toBe(130)
    expect(peer.ackedByClient.sort()).toEqual(sets.map((s) => s.jti).sort())
    expect(peer.closes.at(-1)?.code).toBe(1001)
  }, 30_000)
})
