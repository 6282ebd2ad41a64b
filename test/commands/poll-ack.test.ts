import {mkdtempSync, writeFileSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'

import {describe, expect, it} from 'vitest'

import Ack from '../../src/commands/ack.js'
import Poll from '../../src/commands/poll.js'
import {jsonLines, runCommand} from '../helpers/cli.js'
import {generatePeerKey, makeSetClaims, mintSets, publicJwks, signSet, startPollTransmitter, startPushpullHttpPeer} from '../helpers/peers/index.js'

const dir = mkdtempSync(join(tmpdir(), 'pushpull-poll-'))
const key = generatePeerKey('ES256', 'poll-key')
const other = generatePeerKey('ES256', 'other-key')
const JWKS = join(dir, 'jwks.json')
writeFileSync(JWKS, JSON.stringify(publicJwks([key])))

type Rec = Record<string, unknown>

describe('poll (RFC 8936 spec transmitter)', () => {
  it('one-shot follows moreAvailable: polls again at once, acking each batch on the way, until nothing more', async () => {
    const tx = await startPollTransmitter({defaultMaxEvents: 2, longPollTimeoutMs: 200})
    try {
      const sets = mintSets(5, key)
      const jtis = sets.map((s) => s.jti)
      tx.queue(sets)
      // No --return-immediately: the follow-up polls ask for it themselves.
      const result = await runCommand(Poll, [tx.url, '--memory-state', '--jwks', JWKS, '--json'])
      expect(result.exitCode).toBe(0)
      const lines = jsonLines(result.stdout) as Rec[]
      expect(lines.filter((l) => l.type === 'set').map((r) => r.jti)).toEqual(jtis)
      expect(tx.polls.map((p) => ({ack: p.ack, maxEvents: p.maxEvents, returnImmediately: p.returnImmediately, returned: p.returned}))).toEqual([
        {ack: [], maxEvents: undefined, returnImmediately: undefined, returned: jtis.slice(0, 2)},
        {ack: jtis.slice(0, 2), maxEvents: undefined, returnImmediately: true, returned: jtis.slice(2, 4)},
        {ack: jtis.slice(2, 4), maxEvents: undefined, returnImmediately: true, returned: jtis.slice(4)},
        {ack: jtis.slice(4), maxEvents: 0, returnImmediately: true, returned: []},
      ])
      expect(tx.pending()).toEqual([])
      expect(lines.at(-1)).toMatchObject({acked: 5, moreAvailable: false, polls: 3, received: 5, type: 'summary'})
    } finally {
      await tx.close()
    }
  })

  it('one-shot stops following moreAvailable at --max-events in total and says more are available', async () => {
    const tx = await startPollTransmitter({defaultMaxEvents: 2})
    try {
      const sets = mintSets(5, key)
      const jtis = sets.map((s) => s.jti)
      tx.queue(sets)
      const result = await runCommand(Poll, [tx.url, '--memory-state', '--jwks', JWKS, '--return-immediately', '--max-events', '3', '--no-color'])
      expect(result.exitCode).toBe(0)
      expect(tx.polls.map((p) => [p.maxEvents, p.returned.length])).toEqual([[3, 3], [0, 0]])
      expect(tx.acked).toEqual(jtis.slice(0, 3))
      expect(tx.pending()).toEqual(jtis.slice(3))
      expect(result.stderr).toContain(`${tx.url} has more SETs: poll again to fetch them`)
      const rest = await runCommand(Poll, [tx.url, '--memory-state', '--jwks', JWKS, '--return-immediately', '--json'])
      expect(jsonLines(rest.stdout).at(-1)).toMatchObject({moreAvailable: false, received: 2})
      expect(tx.pending()).toEqual([])
    } finally {
      await tx.close()
    }
  })

  it('one-shot: receives, verifies, then acks in one final ack-only request', async () => {
    const tx = await startPollTransmitter()
    try {
      const sets = mintSets(3, key)
      tx.queue(sets)
      const result = await runCommand(Poll, [tx.url, '--memory-state', '--jwks', JWKS, '--return-immediately', '--json'])
      expect(result.exitCode).toBe(0)
      const lines = jsonLines(result.stdout) as Rec[]
      const received = lines.filter((l) => l.type === 'set')
      expect(received.map((r) => r.jti)).toEqual(sets.map((s) => s.jti))
      for (const r of received) expect(r).toMatchObject({peer: tx.url, status: 'new', verified: true, event: 'caep.session-revoked'})
      expect(tx.polls).toHaveLength(2)
      expect(tx.polls[1]).toMatchObject({ack: sets.map((s) => s.jti), maxEvents: 0, returnImmediately: true})
      expect(tx.pending()).toEqual([])
      expect(lines.at(-1)).toMatchObject({acked: 3, received: 3, type: 'summary'})
    } finally {
      await tx.close()
    }
  })

  it('a SET signed by an unknown key is reported in setErrs with invalid_key', async () => {
    const tx = await startPollTransmitter()
    try {
      const bad = signSet(makeSetClaims(), other)
      const {jti} = JSON.parse(Buffer.from(bad.split('.')[1]!, 'base64url').toString()) as {jti: string}
      tx.queue([{jti, token: bad}])
      const result = await runCommand(Poll, [tx.url, '--memory-state', '--jwks', JWKS, '--return-immediately', '--json'])
      expect(result.exitCode).toBe(0)
      const rejected = (jsonLines(result.stdout) as Rec[]).find((l) => l.type === 'rejected')
      expect(rejected).toMatchObject({err: 'invalid_key', jti})
      expect(tx.setErrs[jti]?.err).toBe('invalid_key')
    } finally {
      await tx.close()
    }
  })

  it('a transmitter answering 200 with a non-JSON body: clear error, exit 5', async () => {
    const tx = await startPollTransmitter()
    try {
      tx.script({body: '<html>oops</html>', status: 200})
      const result = await runCommand(Poll, [tx.url, '--memory-state', '--return-immediately', '--json'])
      expect(result.exitCode).toBe(5)
      const error = (jsonLines(result.stdout).at(-1) as {error: Rec}).error
      expect(error.code).toBe('ERR_PEER_PROTOCOL')
    } finally {
      await tx.close()
    }
  })

  it('--ack manual leaves SETs undecided; "ack --list" shows them; "ack" acknowledges them', async () => {
    const tx = await startPollTransmitter()
    const state = join(dir, 'manual.db')
    try {
      const sets = mintSets(2, key)
      tx.queue(sets)
      const polled = await runCommand(Poll, [tx.url, '--state', state, '--jwks', JWKS, '--return-immediately', '--ack', 'manual', '--json'])
      expect(polled.exitCode).toBe(0)
      expect(tx.polls).toHaveLength(1) // nothing owed: no ack-only request
      expect(tx.acked).toEqual([])

      const listed = await runCommand(Ack, ['--to', tx.url, '--state', state, '--list', '--json'])
      expect(listed.exitCode).toBe(0)
      const list = jsonLines(listed.stdout)[0] as {weOwe: Rec[]; peerOwes: Rec[]}
      expect(list.weOwe.map((e) => e.jti).sort()).toEqual(sets.map((s) => s.jti).sort())
      expect(list.weOwe.every((e) => e.state === 'undecided' && e.event === 'caep.session-revoked')).toBe(true)
      expect(list.peerOwes).toEqual([])

      const acked = await runCommand(Ack, [sets[0]!.jti, '--to', tx.url, '--state', state, '--json'])
      expect(acked.exitCode).toBe(0)
      expect(jsonLines(acked.stdout)[0]).toMatchObject({ack: [sets[0]!.jti], type: 'summary', via: 'poll'})
      expect(tx.polls.at(-1)).toMatchObject({ack: [sets[0]!.jti], maxEvents: 0, returnImmediately: true})

      const rejected = await runCommand(Ack, ['--to', tx.url, '--state', state, '--err', 'invalid_audience', '--description', 'not for us', '--json'])
      expect(rejected.exitCode).toBe(0)
      expect(tx.setErrs[sets[1]!.jti]).toEqual({description: 'not for us', err: 'invalid_audience'})

      const empty = await runCommand(Ack, ['--to', tx.url, '--state', state, '--list', '--json'])
      expect((jsonLines(empty.stdout)[0] as {weOwe: Rec[]}).weOwe).toEqual([])
    } finally {
      await tx.close()
    }
  })

  it('ack -i without a terminal fails naming the alternative', async () => {
    const result = await runCommand(Ack, ['--to', 'http://127.0.0.1:9/poll', '--memory-state', '-i', '--json'])
    expect(result.exitCode).toBe(2)
    expect((jsonLines(result.stdout)[0] as {error: Rec}).error.message).toBe(
      'ack -i needs an interactive terminal (--json is on); use JTI arguments (or no arguments for every owed SET) instead',
    )
  })

  it('--follow survives 503 + Retry-After and stops on abort after flushing acks', async () => {
    const tx = await startPollTransmitter({longPollTimeoutMs: 200})
    try {
      tx.script({headers: {'Retry-After': '0'}, status: 503})
      const sets = mintSets(1, key)
      tx.queue(sets)
      const run = runCommand(Poll, [tx.url, '--memory-state', '--jwks', JWKS, '--follow', '--json'])
      await tx.waitFor(() => tx.polls.some((p) => p.returned.length > 0), 5000)
      await tx.waitFor(() => tx.acked.includes(sets[0]!.jti), 5000)
      process.emit('SIGINT')
      const result = await run
      expect(result.exitCode).toBe(130)
      expect(result.stderr).toContain('poll failed')
    } finally {
      await tx.close()
    }
  })
})

describe('poll --via pushpull', () => {
  it('receives queued SETs and acks them in the final request', async () => {
    const peer = await startPushpullHttpPeer()
    try {
      const sets = mintSets(2, key)
      peer.queue(sets)
      const result = await runCommand(Poll, [peer.url, '--via', 'pushpull', '--memory-state', '--jwks', JWKS, '--json'])
      expect(result.exitCode).toBe(0)
      expect((jsonLines(result.stdout) as Rec[]).filter((l) => l.type === 'set')).toHaveLength(2)
      expect([...peer.ackedByClient].sort()).toEqual(sets.map((s) => s.jti).sort())
      expect(peer.pending()).toEqual([])
    } finally {
      await peer.close()
    }
  })
})
