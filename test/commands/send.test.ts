import {mkdtempSync, writeFileSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'

import {afterAll, beforeAll, describe, expect, it} from 'vitest'

import Send from '../../src/commands/send.js'
import {TAMPERED_KID} from '../../src/lib/tamper.js'
import {jsonLines, runCommand} from '../helpers/cli.js'
import {
  decodeSetUnverified,
  generatePeerKey,
  makeSetClaims,
  mintSets,
  privateJwk,
  type PushReceiver,
  rejectAll,
  signSet,
  startPushpullHttpPeer,
  startPushReceiver,
  verifyingJudge,
  verifySetSignature,
} from '../helpers/peers/index.js'

const dir = mkdtempSync(join(tmpdir(), 'pushpull-send-'))
const key = generatePeerKey('ES256', 'send-key')
const KEY_FILE = join(dir, 'private.jwk.json')
writeFileSync(KEY_FILE, JSON.stringify(privateJwk(key)))
const MINT = ['--signing-key', KEY_FILE, '--iss', 'https://idp.example', '--aud', 'https://rp.example', '--event', 'caep.session-revoked', '--subject', 'email:ana@example.com']

type Rec = Record<string, unknown>

let push: PushReceiver
beforeAll(async () => {
  push = await startPushReceiver({judge: verifyingJudge({audience: 'https://rp.example', issuer: 'https://idp.example', keys: [key]})})
})
afterAll(async () => push.close())

describe('send --via push (RFC 8935 spec peer)', () => {
  it('mints, pushes and reports each SET accepted; exit 0', async () => {
    const before = push.accepted().length
    const result = await runCommand(Send, ['--to', push.url, '--memory-state', ...MINT, '--count', '3', '--json'])
    expect(result.exitCode).toBe(0)
    const lines = jsonLines(result.stdout) as Rec[]
    const results = lines.filter((l) => l.type === 'result')
    expect(results).toHaveLength(3)
    for (const r of results) expect(r).toMatchObject({attempts: 1, status: 'accepted'})
    expect(lines.at(-1)).toMatchObject({counts: {accepted: 3}, peer: push.url, type: 'summary', via: 'push'})
    expect(push.accepted().length - before).toBe(3)
  })

  it('passes ready-made tokens through unchanged', async () => {
    const token = signSet(makeSetClaims({aud: 'https://rp.example', iss: 'https://idp.example'}), key)
    const result = await runCommand(Send, ['--to', push.url, '--memory-state', '-', '--json'], {stdin: `${token}\n`})
    expect(result.exitCode).toBe(0)
    expect(push.accepted()).toContain(token)
  })

  it('reports a 400 {err} as rejected with err and description, exit 5, not retried', async () => {
    const result = await runCommand(Send, ['--to', push.url, '--memory-state', ...MINT.map((a) => (a === 'https://idp.example' ? 'https://other.example' : a)), '--json'])
    expect(result.exitCode).toBe(5)
    const lines = jsonLines(result.stdout) as Rec[]
    expect(lines[0]).toMatchObject({attempts: 1, description: 'The SET issuer is not the expected one.', err: 'invalid_issuer', status: 'rejected', type: 'result'})
    expect(lines.at(-1)).toMatchObject({error: {code: 'ERR_PEER_REJECTED', exitCode: 5, message: 'the peer rejected 1 of 1 SET(s)'}})
  })

  it('stops on 401 with a credentials message, no retry loop; the token never appears in output', async () => {
    const guarded = await startPushReceiver({token: 'right-token'})
    try {
      const result = await runCommand(Send, ['--to', guarded.url, '--memory-state', '--token', 'wrong-token-value', ...MINT, '--count', '2', '--json'])
      expect(result.exitCode).toBe(3)
      const lines = jsonLines(result.stdout) as Rec[]
      expect(lines.filter((l) => l.type === 'result').every((l) => l.status === 'pending')).toBe(true)
      const error = (lines.at(-1) as {error: Rec}).error
      expect(error.code).toBe('ERR_CREDENTIALS')
      expect(error.message).toBe(`${guarded.url} refused our credentials (HTTP 401: authentication_failed (A valid bearer token is required.)); check the bearer token (--token, --token-file or PUSHPULL_TOKEN)`)
      expect(guarded.requests.length).toBeLessThanOrEqual(2)
      expect(result.stdout + result.stderr).not.toContain('wrong-token-value')
    } finally {
      await guarded.close()
    }
  })

  it('--dry-run prints SETs and requests, redacts the token, sends nothing', async () => {
    const before = push.requests.length
    const result = await runCommand(Send, ['--to', push.url, '--dry-run', '--token', 'sekrit-token', ...MINT, '--json'])
    expect(result.exitCode).toBe(0)
    const lines = jsonLines(result.stdout) as Rec[]
    expect(lines[0]).toMatchObject({type: 'set'})
    expect(lines[1]).toMatchObject({headers: {authorization: 'Bearer <redacted>', 'content-type': 'application/secevent+jwt'}, method: 'POST', type: 'request', url: push.url})
    expect(lines[1]!.body).toBe(lines[0]!.token)
    expect(result.stdout).not.toContain('sekrit-token')
    expect(push.requests.length).toBe(before)
  })

  it('--tamper signature: exit 0 when the receiver rejects it, with the err it answered', async () => {
    const result = await runCommand(Send, ['--to', push.url, '--tamper', 'signature', ...MINT, '--json'])
    expect(result.exitCode).toBe(0)
    const [first] = jsonLines(result.stdout) as Rec[]
    expect(first).toMatchObject({err: 'invalid_key', status: 'rejected', tamper: {asExpected: true, errMatches: true, expectedErr: 'invalid_key', mode: 'signature'}})
  })

  for (const [mode, err] of [['iss', 'invalid_issuer'], ['aud', 'invalid_audience'], ['typ', 'invalid_request'], ['unsigned', 'invalid_key']] as const) {
    it(`--tamper ${mode} is rejected with ${err}`, async () => {
      const result = await runCommand(Send, ['--to', push.url, '--tamper', mode, ...MINT, '--json'])
      expect(result.exitCode).toBe(0)
      expect((jsonLines(result.stdout) as Rec[])[0]).toMatchObject({err, status: 'rejected', tamper: {asExpected: true, mode}})
    })
  }

  it('--tamper kid: re-signed with the real key under an unknown kid, rejected with invalid_key', async () => {
    const before = push.requests.length
    const result = await runCommand(Send, ['--to', push.url, '--tamper', 'kid', ...MINT, '--json'])
    expect(result.exitCode).toBe(0)
    expect((jsonLines(result.stdout) as Rec[])[0]).toMatchObject({
      err: 'invalid_key',
      status: 'rejected',
      tamper: {asExpected: true, errMatches: true, expectedErr: 'invalid_key', mode: 'kid'},
    })
    expect(push.requests.length - before).toBe(1)
    const sent = push.requests.at(-1)!.body
    const {claims, header} = decodeSetUnverified(sent)
    expect(header).toMatchObject({alg: 'ES256', kid: TAMPERED_KID})
    expect(claims).toMatchObject({aud: 'https://rp.example', iss: 'https://idp.example'})
    // Only the kid is wrong: the signature is valid for the real key, and not for the kid it names.
    expect(verifySetSignature(sent, [{...key, kid: TAMPERED_KID}])).toBe(true)
    expect(verifySetSignature(sent, [key])).toBe(false)
  })

  it('--tamper kid needs the signing key (it re-signs): ERR_USAGE with --unsigned, nothing sent', async () => {
    const before = push.requests.length
    const result = await runCommand(Send, ['--to', push.url, '--tamper', 'kid', '--unsigned', '--iss', 'https://idp.example', '--event', 'caep.session-revoked', '--subject', 'opaque:1', '--json'])
    expect(result.exitCode).toBe(2)
    expect(jsonLines(result.stdout).at(-1)).toMatchObject({
      error: {code: 'ERR_USAGE', message: '--tamper kid re-signs the SET: give the key it was signed with (--signing-key or --secret)'},
    })
    expect(push.requests.length).toBe(before)
  })

  it('--tamper against a receiver that accepts everything: exit 5 naming the failure', async () => {
    const lax = await startPushReceiver()
    try {
      const result = await runCommand(Send, ['--to', lax.url, '--tamper', 'signature', ...MINT, '--json'])
      expect(result.exitCode).toBe(5)
      const lines = jsonLines(result.stdout) as Rec[]
      expect(lines[0]).toMatchObject({status: 'accepted', tamper: {asExpected: false}})
      expect(lines.at(-1)).toMatchObject({error: {code: 'ERR_PEER_PROTOCOL', message: 'the receiver accepted 1 of 1 SET(s) broken with --tamper signature (a conforming receiver answers invalid_key)'}})
    } finally {
      await lax.close()
    }
  })

  it('a jti already acked is not sent again: reported rejected jti_reused', async () => {
    const state = join(dir, 'reuse.db')
    const token = signSet(makeSetClaims({aud: 'https://rp.example', iss: 'https://idp.example'}), key)
    const first = await runCommand(Send, ['--to', push.url, '--state', state, '-', '--json'], {stdin: token})
    expect(first.exitCode).toBe(0)
    const second = await runCommand(Send, ['--to', push.url, '--state', state, '-', '--json'], {stdin: token})
    expect(second.exitCode).toBe(5)
    expect((jsonLines(second.stdout) as Rec[])[0]).toMatchObject({err: 'jti_reused', status: 'rejected'})
  })
})

describe('send --via pushpull / multi-push', () => {
  it('pushpull with late acks: keeps exchanging until every SET is acked', async () => {
    const peer = await startPushpullHttpPeer({deferAcks: true})
    try {
      const sets = mintSets(4, key)
      const stdin = sets.map((s) => s.token).join('\n')
      const result = await runCommand(Send, ['--to', peer.url, '--via', 'pushpull', '--memory-state', '-', '--json'], {stdin})
      expect(result.exitCode).toBe(0)
      const results = (jsonLines(result.stdout) as Rec[]).filter((l) => l.type === 'result')
      expect(results.map((r) => r.status)).toEqual(['acked', 'acked', 'acked', 'acked'])
      expect(peer.objects.length).toBeGreaterThanOrEqual(2)
      expect(peer.processed().map((s) => s.jti).sort()).toEqual(sets.map((s) => s.jti).sort())
    } finally {
      await peer.close()
    }
  })

  it('pushpull setErrs become rejected results (exit 5)', async () => {
    const peer = await startPushpullHttpPeer({judge: rejectAll('invalid_audience', 'Wrong audience.')})
    try {
      const result = await runCommand(Send, ['--to', peer.url, '--via', 'pushpull', '--memory-state', ...MINT, '--count', '2', '--json'])
      expect(result.exitCode).toBe(5)
      const results = (jsonLines(result.stdout) as Rec[]).filter((l) => l.type === 'result')
      expect(results).toHaveLength(2)
      for (const r of results) expect(r).toMatchObject({description: 'Wrong audience.', err: 'invalid_audience', status: 'rejected'})
    } finally {
      await peer.close()
    }
  })

  it('multi-push batches by --batch and reports acks', async () => {
    const peer = await startPushpullHttpPeer()
    try {
      const result = await runCommand(Send, ['--to', peer.url, '--via', 'multi-push', '--batch', '2', '--memory-state', ...MINT, '--count', '5', '--json'])
      expect(result.exitCode).toBe(0)
      const results = (jsonLines(result.stdout) as Rec[]).filter((l) => l.type === 'result')
      expect(results.filter((r) => r.status === 'acked')).toHaveLength(5)
      const batches = peer.requests.filter((r) => r.contentType?.startsWith('application/secevents+json'))
      expect(batches.length).toBe(3)
    } finally {
      await peer.close()
    }
  })
})

describe('send: usage errors', () => {
  it('refuses --via for an unknown binding with the list', async () => {
    const result = await runCommand(Send, ['--to', push.url, '--via', 'carrier-pigeon', ...MINT])
    expect(result.exitCode).toBe(2)
  })

  it('refuses credentials in the URL', async () => {
    const result = await runCommand(Send, ['--to', 'http://user:pw@127.0.0.1:1/events', '--memory-state', ...MINT, '--json'])
    expect(result.exitCode).toBe(2)
    expect((jsonLines(result.stdout)[0] as {error: Rec}).error.message).toBe(
      'http://127.0.0.1:1/events: the URL carries credentials (user:password@); pass a bearer token with --token or --token-file instead',
    )
  })
})
