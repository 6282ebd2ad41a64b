/** `send --via ws` (the default for ws:// URLs): the WebSocket deliverer behind the sender. */
import {mkdtempSync, rmSync, writeFileSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'

import {afterAll, afterEach, describe, expect, it} from 'vitest'

import Send from '../../src/commands/send.js'
import {jsonLines, runCommand} from '../helpers/cli.js'
import {generatePeerKey, privateJwk, type PushpullWsPeer, rejectAll, startPushpullWsPeer, verifyingJudge} from '../helpers/peers/index.js'

const dir = mkdtempSync(join(tmpdir(), 'pp-send-ws-'))
const key = generatePeerKey('ES256', 'send-ws-key')
const KEY_FILE = join(dir, 'private.jwk.json')
writeFileSync(KEY_FILE, JSON.stringify(privateJwk(key)))
const MINT = ['--signing-key', KEY_FILE, '--iss', 'https://idp.example', '--aud', 'https://rp.example', '--event', 'caep.session-revoked', '--subject', 'email:ana@example.com']
afterAll(() => rmSync(dir, {force: true, recursive: true}))

const closers: Array<() => Promise<void>> = []
afterEach(async () => {
  while (closers.length > 0) await closers.pop()?.()
})

async function peer(options: Parameters<typeof startPushpullWsPeer>[0]): Promise<PushpullWsPeer> {
  const started = await startPushpullWsPeer(options)
  closers.push(() => started.close())
  return started
}

type Rec = Record<string, unknown>

describe('send --via ws', () => {
  it('is the default for ws:// URLs: batches over one session, every SET acked, exit 0', async () => {
    const p = await peer({ack: 'batch', ackOrder: 'reverse', judge: verifyingJudge({audience: 'https://rp.example', issuer: 'https://idp.example', keys: [key]})})
    const result = await runCommand(Send, ['--to', p.url, '--memory-state', ...MINT, '--count', '5', '--batch', '2', '--json'])
    expect(result.exitCode).toBe(0)
    const lines = jsonLines(result.stdout) as Rec[]
    const results = lines.filter((l) => l.type === 'result')
    expect(results).toHaveLength(5)
    for (const r of results) expect(r).toMatchObject({status: 'acked'})
    expect(lines.at(-1)).toMatchObject({type: 'summary', via: 'ws'})
    expect(p.processed()).toHaveLength(5)
    expect(p.connectionCount).toBe(1)
    expect(p.objects.every((o) => Object.keys(o.sets).length <= 2)).toBe(true)
  })

  it('reports setErrs per SET as rejected with err and description (exit 5)', async () => {
    const p = await peer({judge: rejectAll('invalid_key', 'Signature did not verify.')})
    const result = await runCommand(Send, ['--to', p.url, '--memory-state', ...MINT, '--count', '2', '--json'])
    expect(result.exitCode).toBe(5)
    const results = (jsonLines(result.stdout) as Rec[]).filter((l) => l.type === 'result')
    expect(results).toHaveLength(2)
    for (const r of results) expect(r).toMatchObject({description: 'Signature did not verify.', err: 'invalid_key', status: 'rejected'})
  })
})
