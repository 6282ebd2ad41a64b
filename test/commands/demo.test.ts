import {describe, expect, it} from 'vitest'

import Demo from '../../src/commands/demo.js'
import {jsonLines, runCommand} from '../helpers/cli.js'

describe('demo', () => {
  it('exchanges CAEP and RISC SETs both ways over one session and exits 0', async () => {
    const result = await runCommand(Demo, ['--json'])
    expect(result.exitCode).toBe(0)
    const lines = jsonLines(result.stdout) as Array<{side?: string; record?: Record<string, unknown>; type?: string}>
    const summary = lines.at(-1)
    expect(summary).toMatchObject({listenerToStream: {acked: 3, sent: 3}, ok: true, streamToListener: {acked: 3, sent: 3}, type: 'summary'})
    const sets = lines.filter((l) => l.record?.type === 'set')
    expect(sets.filter((l) => l.side === 'listener').map((l) => l.record?.event).sort()).toEqual(['caep.credential-change', 'caep.session-revoked', 'risc.account-disabled'])
    expect(sets.filter((l) => l.side === 'stream').map((l) => l.record?.event).sort()).toEqual(['caep.device-compliance-change', 'risc.account-enabled', 'risc.credential-compromise'])
    expect(sets.every((l) => l.record?.verified === true && l.record?.binding === 'ws')).toBe(true)
    expect(lines.filter((l) => l.record?.type === 'ack')).toHaveLength(6)
  })

  it('human output shows the decoded SETs, the acks and the summary table', async () => {
    const result = await runCommand(Demo, ['--no-color'])
    expect(result.exitCode).toBe(0)
    expect(result.stdout).toMatch(/\[listen\] NEW {2}caep\.session-revoked {2}email:ana@example\.com/)
    expect(result.stdout).toMatch(/\[stream\] ACKED by peer/)
    expect(result.stdout).toContain('every SET was verified, stored and acknowledged, both ways, over one WebSocket session')
    expect(result.stderr).toMatch(/keys: two ES256 key pairs in .*pushpull-demo-/)
  })
})
