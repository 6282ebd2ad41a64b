import {mkdtempSync, readFileSync, rmSync, writeFileSync} from 'node:fs'
import {request as httpRequest} from 'node:http'
import {connect} from 'node:net'
import {tmpdir} from 'node:os'
import {join} from 'node:path'

import {afterAll, beforeAll, describe, expect, it} from 'vitest'

import Listen, {parseListenToken} from '../../src/commands/listen.js'
import {openLedger} from '../../src/lib/store.js'
import {createHttpClient} from '../../src/lib/transport/http.js'
import {jsonLines, ROOT, runCommand} from '../helpers/cli.js'
import {generatePeerKey, makeSetClaims, type PeerSigningKey, publicJwks, signSet, startPushReceiver} from '../helpers/peers/index.js'
import {unusedPort} from '../helpers/ports.js'

let dir: string
let key: PeerSigningKey
let jwksFile: string

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'pp-listen-cmd-'))
  key = generatePeerKey('ES256', 'k1')
  jwksFile = join(dir, 'jwks.json')
  writeFileSync(jwksFile, JSON.stringify(publicJwks([key])))
})

afterAll(() => rmSync(dir, {force: true, recursive: true}))

function minted(overrides: Record<string, unknown> = {}): {jti: string; token: string} {
  const claims = makeSetClaims(overrides)
  return {jti: String(claims.jti), token: signSet(claims, key)}
}

/** Wait until something accepts connections on the port (the in-process listener is up). */
async function waitListening(port: number, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs
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

async function post(port: number, path: string, body: string, contentType: string, headers: Record<string, string> = {}): Promise<{status: number; text: string}> {
  return new Promise((resolve, reject) => {
    const req = httpRequest({headers: {'content-type': contentType, ...headers}, host: '127.0.0.1', method: 'POST', path, port}, (res) => {
      let text = ''
      res.setEncoding('utf8').on('data', (chunk: string) => (text += chunk))
      res.on('end', () => resolve({status: res.statusCode ?? 0, text}))
    })
    req.on('error', reject)
    req.end(body)
  })
}

describe('listen', () => {
  it('receives, verifies and acks SETs; prints NDJSON records; --max-events exits 0', async () => {
    const port = await unusedPort()
    const running = runCommand(Listen, ['--port', String(port), '--memory-state', '--jwks', jwksFile, '--json', '--max-events', '2'])
    await waitListening(port)
    const a = minted()
    const b = minted()
    expect((await post(port, '/events', a.token, 'application/secevent+jwt')).status).toBe(202)
    expect((await post(port, '/events', a.token, 'application/secevent+jwt')).status).toBe(202)
    const reply = await post(port, '/pushpull', JSON.stringify({sets: {[b.jti]: b.token}}), 'application/json')
    expect(JSON.parse(reply.text)).toEqual({ack: [b.jti]})
    const result = await running
    expect(result.exitCode).toBe(0)
    const records = jsonLines(result.stdout) as Array<Record<string, unknown>>
    expect(records[0]).toMatchObject({ack: 'auto', peers: ['anonymous'], type: 'listening', url: `http://127.0.0.1:${port}`, verified: true})
    const sets = records.filter((r) => r.type === 'set')
    expect(sets.map((r) => [r.jti, r.status, r.binding])).toEqual([
      [a.jti, 'new', 'push'],
      [a.jti, 'duplicate', 'push'],
      [b.jti, 'new', 'pushpull'],
    ])
    expect(sets[0]).toMatchObject({event: 'caep.session-revoked', iss: 'https://peer.example', peer: 'anonymous', subject: 'email:user@example.com', verified: true})
    expect((sets[0]!.claims as Record<string, unknown>).jti).toBe(a.jti)
    expect(records.at(-1)).toMatchObject({counts: {duplicates: 1, received: 2}, stopped: 'max-events', type: 'summary'})
    expect(result.stderr).toContain(`listening on http://127.0.0.1:${port}`)
  })

  it('warns loudly and labels SETs UNVERIFIED without keys; human output names the SET', async () => {
    const port = await unusedPort()
    const running = runCommand(Listen, ['--port', String(port), '--memory-state', '--max-events', '1', '--no-color'])
    await waitListening(port)
    const a = minted()
    expect((await post(port, '/events', a.token, 'application/secevent+jwt')).status).toBe(202)
    const result = await running
    expect(result.exitCode).toBe(0)
    expect(result.stderr).toMatch(/warning: no verification keys .* UNVERIFIED/)
    expect(result.stdout).toContain(`NEW  caep.session-revoked  email:user@example.com  jti=${a.jti}  iss=https://peer.example  UNVERIFIED  from anonymous via push`)
  })

  it('stops on SIGINT: finishes, flushes state and exits 130', async () => {
    const port = await unusedPort()
    const state = join(dir, 'sigint.db')
    const running = runCommand(Listen, ['--port', String(port), '--state', state, '--jwks', jwksFile, '--json'])
    await waitListening(port)
    const a = minted()
    expect((await post(port, '/events', a.token, 'application/secevent+jwt')).status).toBe(202)
    process.emit('SIGINT', 'SIGINT')
    const result = await running
    expect(result.exitCode).toBe(130)
    expect(jsonLines(result.stdout).at(-1)).toMatchObject({error: {code: 'ERR_ABORTED', message: 'interrupted by SIGINT'}})
    // The state was flushed and released: it can be opened again and holds the SET.
    const ledger = openLedger({path: state})
    try {
      expect(ledger.list({direction: 'in', limit: 10}).map((e) => [e.jti, e.state, e.owed])).toEqual([[a.jti, 'accepted', false]])
    } finally {
      ledger.close()
    }
  })

  it('fails fast with ERR_STATE_LOCKED when another process holds the state', async () => {
    const state = join(dir, 'locked.db')
    const holder = openLedger({path: state})
    try {
      const result = await runCommand(Listen, ['--port', '0', '--state', state, '--json'])
      expect(result.exitCode).toBe(3)
      const error = (jsonLines(result.stdout).at(-1) as {error: {code: string; message: string}}).error
      expect(error.code).toBe('ERR_STATE_LOCKED')
      expect(error.message).toContain(state)
    } finally {
      holder.close()
    }
  })

  it('--emit queues SETs for pollers, redelivered until acked, and prints the acks', async () => {
    const port = await unusedPort()
    const queued = [minted(), minted()]
    const file = join(dir, 'emit.jwt')
    writeFileSync(file, `${queued.map((s) => s.token).join('\n')}\n`)
    const running = runCommand(Listen, ['--port', String(port), '--memory-state', '--emit', file, '--json', '--max-events', '1', '--long-poll-timeout', '5s'])
    await waitListening(port)
    // The poll may arrive before the file was read: long polling waits for the SETs.
    let sets: Record<string, string> = {}
    while (Object.keys(sets).length < 2) {
      const more = JSON.parse((await post(port, '/poll', JSON.stringify({maxEvents: 10}), 'application/json')).text) as {sets: Record<string, string>}
      sets = {...sets, ...more.sets}
    }

    expect(sets).toEqual({[queued[0]!.jti]: queued[0]!.token, [queued[1]!.jti]: queued[1]!.token})
    const ackReply = await post(port, '/poll', JSON.stringify({ack: Object.keys(sets), returnImmediately: true}), 'application/json')
    expect(JSON.parse(ackReply.text)).toEqual({sets: {}})
    const incoming = minted()
    await post(port, '/events', incoming.token, 'application/secevent+jwt')
    const result = await running
    expect(result.exitCode).toBe(0)
    const records = jsonLines(result.stdout) as Array<Record<string, unknown>>
    expect(records.filter((r) => r.type === 'queued').map((r) => r.jti)).toEqual(queued.map((s) => s.jti))
    expect(records.filter((r) => r.type === 'sent').map((r) => r.jti).sort()).toEqual(queued.map((s) => s.jti).sort())
    expect(records.filter((r) => r.type === 'ack').map((r) => r.jti).sort()).toEqual(queued.map((s) => s.jti).sort())
  })

  it('--emit mints event files with the signing flags (HS256 with --secret)', async () => {
    const port = await unusedPort()
    const file = join(dir, 'event.json')
    writeFileSync(file, JSON.stringify({event: 'caep.session-revoked', subject: 'email:ana@example.com'}))
    const running = runCommand(Listen, ['--port', String(port), '--memory-state', '--emit', file, '--secret', 'shared-s3cret', '--jwks', jwksFile, '--iss', 'https://listener.example', '--json', '--max-events', '1'])
    await waitListening(port)
    const polled = JSON.parse((await post(port, '/pushpull', '{}', 'application/json')).text) as {sets?: Record<string, string>}
    let sets = polled.sets ?? {}
    while (Object.keys(sets).length === 0) {
      sets = (JSON.parse((await post(port, '/poll', '{}', 'application/json')).text) as {sets: Record<string, string>}).sets
    }

    const [jti, token] = Object.entries(sets)[0]!
    const claims = JSON.parse(Buffer.from(token.split('.')[1]!, 'base64url').toString('utf8')) as Record<string, unknown>
    expect(claims).toMatchObject({iss: 'https://listener.example', jti, sub_id: {email: 'ana@example.com', format: 'email'}})
    expect(JSON.parse(Buffer.from(token.split('.')[0]!, 'base64url').toString('utf8'))).toMatchObject({alg: 'HS256'})
    await post(port, '/events', minted().token, 'application/secevent+jwt')
    expect((await running).exitCode).toBe(0)
  })

  it('--forward-to relays accepted SETs and prints the downstream status', async () => {
    const downstream = await startPushReceiver()
    try {
      const port = await unusedPort()
      const running = runCommand(Listen, ['--port', String(port), '--memory-state', '--jwks', jwksFile, '--forward-to', downstream.url, '--json', '--max-events', '1'])
      await waitListening(port)
      const a = minted()
      await post(port, '/events', a.token, 'application/secevent+jwt')
      const result = await running
      expect(result.exitCode).toBe(0)
      expect(downstream.accepted()).toEqual([a.token])
      expect(jsonLines(result.stdout).find((r) => (r as {type: string}).type === 'forwarded')).toEqual({body: '', jti: a.jti, ok: true, status: 202, type: 'forwarded', url: downstream.url})
    } finally {
      await downstream.close()
    }
  })

  it('--token requires a bearer token and names the peer; --tls-cert/--tls-key serve https', async () => {
    const port = await unusedPort()
    const cert = join(ROOT, 'test/fixtures/tls/localhost.crt')
    const running = runCommand(Listen, [
      '--port', String(port), '--memory-state', '--jwks', jwksFile, '--json', '--max-events', '1',
      '--token', 'tx=peer-token-123', '--tls-cert', cert, '--tls-key', join(ROOT, 'test/fixtures/tls/localhost.key'),
    ])
    await waitListening(port)
    const client = createHttpClient({ca: readFileSync(cert)})
    try {
      const a = minted()
      const url = `https://localhost:${port}/events`
      const headers = {'content-type': 'application/secevent+jwt'}
      const refused = await client.request({body: a.token, headers, method: 'POST', url})
      expect(refused.status).toBe(401)
      const authed = createHttpClient({ca: readFileSync(cert), token: 'peer-token-123'})
      try {
        expect((await authed.request({body: a.token, headers, method: 'POST', url})).status).toBe(202)
      } finally {
        await authed.close()
      }
    } finally {
      await client.close()
    }

    const result = await running
    expect(result.exitCode).toBe(0)
    const records = jsonLines(result.stdout) as Array<Record<string, unknown>>
    expect(records[0]).toMatchObject({peers: ['token:tx'], url: `https://127.0.0.1:${port}`})
    expect(records.find((r) => r.type === 'set')).toMatchObject({peer: 'token:tx'})
    expect(result.stdout + result.stderr).not.toContain('peer-token-123')
  })

  it.each([
    [['--tls-cert', 'x.crt'], 'ERR_USAGE', /--tls-cert and --tls-key go together/],
    [['-i'], 'ERR_USAGE', /interactive view \(-i\) needs an interactive terminal/],
    [['--token', 'has space'], 'ERR_USAGE', /spaces, control or non-ASCII/],
    [['--headers-timeout', '20s', '--request-timeout', '10s'], 'ERR_CONFIG', /header timeout .* cannot be longer than the request timeout/],
  ])('refuses %j with %s', async (argv, code, message) => {
    const result = await runCommand(Listen, ['--port', '0', '--memory-state', '--json', ...argv])
    const error = (jsonLines(result.stdout).at(-1) as {error: {code: string; message: string}}).error
    expect(error.code).toBe(code)
    expect(error.message).toMatch(message)
    expect(result.exitCode).toBe(code === 'ERR_USAGE' ? 2 : 3)
  })

  it('parses --token values', () => {
    expect(parseListenToken('alice=s3cret', '--token')).toEqual({name: 'alice', token: 's3cret'})
    expect(parseListenToken('plain-token', '--token')).toEqual({token: 'plain-token'})
    expect(() => parseListenToken('', '--token')).toThrow(/empty/)
  })
})
