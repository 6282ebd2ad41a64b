/** `--verify-workers N` on listen (WebSocket sessions) and stream: same verdicts, flag validation. */
import {mkdtempSync, rmSync, writeFileSync} from 'node:fs'
import {connect} from 'node:net'
import {tmpdir} from 'node:os'
import {join} from 'node:path'

import {afterAll, beforeAll, describe, expect, it} from 'vitest'

import Listen from '../../src/commands/listen.js'
import Stream from '../../src/commands/stream.js'
import {buildCommunicationObject, parseCommunicationObject} from '../../src/lib/communication.js'
import {connectWebSocket} from '../../src/lib/transport/ws-client.js'
import {jsonLines, runCommand} from '../helpers/cli.js'
import {generatePeerKey, makeSetClaims, type PeerSigningKey, publicJwks, signSet} from '../helpers/peers/index.js'
import {unusedPort} from '../helpers/ports.js'

let dir: string
let key: PeerSigningKey
let jwksFile: string

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'pp-verify-workers-'))
  key = generatePeerKey('ES256', 'k1')
  jwksFile = join(dir, 'jwks.json')
  writeFileSync(jwksFile, JSON.stringify(publicJwks([key])))
})

afterAll(() => rmSync(dir, {force: true, recursive: true}))

async function waitListening(port: number): Promise<void> {
  const deadline = Date.now() + 10_000
  for (;;) {
    const ok = await new Promise<boolean>((resolve) => {
      const socket = connect(port, '127.0.0.1', () => {
        socket.destroy()
        resolve(true)
      })
      socket.on('error', () => resolve(false))
    })
    if (ok) return
    if (Date.now() > deadline) throw new Error(`nothing listens on ${port}`)
    await new Promise((resolve) => setTimeout(resolve, 20))
  }
}

describe('--verify-workers', () => {
  it('listen --ws --verify-workers 2: a batch over WebSocket is verified in workers; the tampered SET gets a setErr', async () => {
    const port = await unusedPort()
    const running = runCommand(Listen, ['--port', String(port), '--memory-state', '--ws', '--jwks', jwksFile, '--verify-workers', '2', '--json', '--max-events', '20'])
    await waitListening(port)
    const sets: Array<[string, string]> = []
    for (let i = 0; i < 21; i++) {
      const claims = makeSetClaims()
      const token = signSet(claims, key)
      // The last one is tampered: one signature byte changed.
      const sig = Buffer.from(token.split('.')[2] as string, 'base64url')
      sig[5] = (sig[5] ?? 0) ^ 1
      sets.push([String(claims.jti), i === 20 ? `${token.split('.').slice(0, 2).join('.')}.${sig.toString('base64url')}` : token])
    }

    const socket = await connectWebSocket(`ws://127.0.0.1:${port}/pushpull`)
    const acked = new Set<string>()
    const setErrs = new Map<string, string>()
    const answered = new Promise<void>((resolve) => {
      socket.on('message', (text) => {
        const object = parseCommunicationObject(text)
        for (const jti of object.ack) acked.add(jti)
        for (const [jti, setErr] of object.setErrs) setErrs.set(jti, `${setErr.err}: ${setErr.description}`)
        if (acked.size + setErrs.size >= sets.length) resolve()
      })
    })
    await socket.send(buildCommunicationObject({sets}))
    await answered
    await socket.close(1000, 'done')
    const result = await running
    expect(result.exitCode).toBe(0)
    expect([...acked].sort()).toEqual(sets.slice(0, 20).map(([jti]) => jti).sort())
    expect(setErrs).toEqual(new Map([[sets[20]![0], 'invalid_key: the SET signature does not verify with the key from ' + jwksFile]]))
    const records = jsonLines(result.stdout) as Array<Record<string, unknown>>
    const received = records.filter((r) => r.type === 'set')
    expect(received).toHaveLength(20)
    expect(received.every((r) => r.verified === true && r.binding === 'ws')).toBe(true)
  })

  it('refuses a worker count over 64 or below 0', async () => {
    for (const [command, argv] of [
      [Listen, ['--port', '0', '--memory-state', '--verify-workers', '65']],
      [Stream, ['ws://127.0.0.1:1/pushpull', '--memory-state', '--verify-workers', '-1']],
    ] as const) {
      const result = await runCommand(command, [...argv])
      expect(result.exitCode).toBe(2)
      expect(String((result as {error?: Error}).error?.message)).toMatch(/Expected an integer (less than or equal to 64|greater than or equal to 0) but received: (65|-1)/)
    }
  })
})
