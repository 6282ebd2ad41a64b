import {mkdtempSync, rmSync, writeFileSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'

import {afterAll, afterEach, describe, expect, it} from 'vitest'

import Stream from '../../src/commands/stream.js'
import {jsonLines, runCommand} from '../helpers/cli.js'
import {generatePeerKey, mintSets, publicJwks, type PushpullWsPeer, startPushpullWsPeer, verifySetSignature} from '../helpers/peers/index.js'

const dir = mkdtempSync(join(tmpdir(), 'pp-stream-'))
const peerKey = generatePeerKey('ES256', 'peer-k1')
const jwksFile = join(dir, 'peer.jwks.json')
writeFileSync(jwksFile, JSON.stringify(publicJwks([peerKey])))

const closers: Array<() => Promise<unknown>> = []
afterEach(async () => {
  while (closers.length > 0) await closers.pop()?.()
})
afterAll(() => rmSync(dir, {force: true, recursive: true}))

async function peer(options: Parameters<typeof startPushpullWsPeer>[0] = {}): Promise<PushpullWsPeer> {
  const started = await startPushpullWsPeer(options)
  closers.push(() => started.close())
  return started
}

describe('stream', () => {
  it('sends minted SETs over a session and exits once the peer acked them all (--exit-on-eof)', async () => {
    const p = await peer()
    const result = await runCommand(Stream, [
      p.url,
      '--memory-state',
      '--secret',
      's3cret-s3cret-s3cret-s3cret-s3cret',
      '--iss',
      'https://tx.example',
      '--event',
      'caep.session-revoked',
      '--subject',
      'email:ana@example.com',
      '--count',
      '3',
      '--exit-on-eof',
      '--json',
    ], {stdin: ''})
    expect(result.stderr).not.toContain('s3cret')
    expect(result.exitCode).toBe(0)
    const records = jsonLines(result.stdout) as Array<Record<string, unknown>>
    expect(records.filter((r) => r.type === 'ack')).toHaveLength(3)
    expect(records.at(-1)).toMatchObject({ackedByPeer: 3, pending: 0, sent: 3, type: 'summary'})
    expect(records.filter((r) => r.type === 'summary')).toHaveLength(1)
    expect(p.processed()).toHaveLength(3)
    expect(p.processed()[0]?.claims).toMatchObject({iss: 'https://tx.example', sub_id: {email: 'ana@example.com', format: 'email'}})
  })

  it('receives, verifies and acks the peer SETs; --max-events ends it with exit 0', async () => {
    const p = await peer()
    const theirs = mintSets(2, peerKey)
    p.queue(theirs)
    const result = await runCommand(Stream, [p.url, '--memory-state', '--verify-key', jwksFile, '--max-events', '2', '--json'], {stdin: ''})
    expect(result.exitCode).toBe(0)
    const records = jsonLines(result.stdout) as Array<Record<string, unknown>>
    const sets = records.filter((r) => r.type === 'set')
    expect(sets.map((r) => r.jti).sort()).toEqual(theirs.map((s) => s.jti).sort())
    expect(sets.every((r) => r.verified === true && r.status === 'new' && r.binding === 'ws')).toBe(true)
    await p.waitFor(() => p.ackedByClient.length === 2)
    expect(records.at(-1)).toMatchObject({acksSent: 2, received: 2, type: 'summary'})
    expect(verifySetSignature(theirs[0]!.token, [peerKey])).toBe(true)
  })

  it('human output: one line per SET, UNVERIFIED without keys, a summary table on stderr', async () => {
    const p = await peer()
    p.queue(mintSets(1, peerKey))
    const result = await runCommand(Stream, [p.url, '--memory-state', '--max-events', '1', '--no-color'], {stdin: ''})
    expect(result.exitCode).toBe(0)
    expect(result.stdout).toMatch(/NEW {2}caep\.session-revoked {2}email:user@example\.com .*UNVERIFIED/)
    expect(result.stderr).toContain('incoming SET signatures are NOT checked')
    expect(result.stderr).toMatch(/session with http:\/\/127\.0\.0\.1:\d+\/pushpull \(ws\)/)
    expect(result.stderr).toContain('1 new, 0 duplicate, 0 rejected')
  })

  it('--ack manual leaves the SET owed and undecided', async () => {
    const p = await peer()
    p.queue(mintSets(1, peerKey))
    const result = await runCommand(Stream, [p.url, '--memory-state', '--verify-key', jwksFile, '--ack', 'manual', '--max-events', '1', '--json'], {stdin: ''})
    expect(result.exitCode).toBe(0)
    const records = jsonLines(result.stdout) as Array<Record<string, unknown>>
    expect(records.find((r) => r.type === 'set')).toMatchObject({verdict: 'undecided'})
    expect(records.at(-1)).toMatchObject({acksSent: 0, type: 'summary', undecided: 1})
    expect(p.ackedByClient).toEqual([])
  })

  it('-i without a terminal is a usage error naming the non-interactive flags', async () => {
    const result = await runCommand(Stream, ['ws://127.0.0.1:1/pushpull', '-i', '--memory-state'], {stdin: ''})
    expect(result.exitCode).toBe(2)
    expect(result.error?.message).toBe(
      'the interactive view (-i) needs an interactive terminal (stdin and stderr must both be terminals); use --ack manual (and decide later with pushpull ack) or --ack auto instead [ERR_USAGE]',
    )
  })

  it('a refused bearer token stops with exit 3 (ERR_CREDENTIALS) and never prints the token', async () => {
    const p = await peer({token: 'right-token'})
    const result = await runCommand(Stream, [p.url, '--memory-state', '--token', 'wrong-token', '--json'], {stdin: ''})
    expect(result.exitCode).toBe(3)
    const [record] = jsonLines(result.stdout) as Array<{error: {code: string; message: string}}>
    expect(record?.error.code).toBe('ERR_CREDENTIALS')
    expect(record?.error.message).toMatch(/refused the WebSocket upgrade with 401; check the bearer token/)
    expect(result.stdout + result.stderr).not.toContain('wrong-token')
  })

  it('an unreachable peer with --max-reconnects 1 gives up with ERR_RETRIES_EXHAUSTED (exit 5)', async () => {
    const result = await runCommand(Stream, ['ws://127.0.0.1:9/pushpull', '--memory-state', '--max-reconnects', '1', '--json'], {stdin: ''})
    expect(result.exitCode).toBe(5)
    const [record] = jsonLines(result.stdout) as Array<{error: {code: string; message: string}}>
    expect(record?.error.code).toBe('ERR_RETRIES_EXHAUSTED')
    expect(record?.error.message).toMatch(/^gave up after 2 failed connection attempts in a row: cannot connect/)
  })
})
