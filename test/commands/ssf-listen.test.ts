/**
 * `listen --ssf`: the SSF transmitter mounted on the listener.
 *
 * 1. The real command (a spawned `bin/run.js listen --ssf`, so run `npm run build` first):
 *    `ssf discover` -> `ssf streams create --poll` -> `ssf verify` -> `poll --issuer`, all in-process
 *    against it on loopback; the stream survives a restart on the same state database.
 * 2. The library mount (`mountSsfTransmitter` on `createListener`): bearer tokens, poll-only
 *    delivery, the stream's SETs in the listener's outbox, the listener's own routes untouched.
 */
import {type ChildProcessWithoutNullStreams, spawn} from 'node:child_process'
import {createPrivateKey} from 'node:crypto'
import {mkdtempSync, readFileSync, rmSync, writeFileSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'

import {afterAll, afterEach, describe, expect, it} from 'vitest'

import Poll from '../../src/commands/poll.js'
import Stream from '../../src/commands/stream.js'
import SsfDiscover from '../../src/commands/ssf/discover.js'
import SsfStreamsCreate from '../../src/commands/ssf/streams/create.js'
import SsfStreamsList from '../../src/commands/ssf/streams/list.js'
import SsfVerify from '../../src/commands/ssf/verify.js'
import {generateKeyPair} from '../../src/lib/keys.js'
import {Ledger} from '../../src/lib/ledger.js'
import {SetReceiver} from '../../src/lib/receiver.js'
import {createListener, type Listener} from '../../src/lib/server.js'
import {attachListenerSessions} from '../../src/lib/session-server.js'
import {mountSsfTransmitter} from '../../src/lib/ssf/mount.js'
import {MemorySsfStreamStore} from '../../src/lib/ssf/store.js'
import type {SsfTransmitter} from '../../src/lib/ssf/transmitter.js'
import {MemoryLedgerStorage} from '../../src/lib/store.js'
import {createVerifier} from '../../src/lib/verify.js'
import {BIN, jsonLines, ROOT, runCommand} from '../helpers/cli.js'

const TOKEN = 'rx-s3cr3t-token'
const dirs: string[] = []
const cleanups: Array<() => Promise<void>> = []

afterEach(async () => {
  while (cleanups.length > 0) await cleanups.pop()?.()
})

afterAll(() => {
  for (const dir of dirs) rmSync(dir, {force: true, recursive: true})
})

function tempDir(): string {
  const dir = mkdtempSync(join(tmpdir(), 'pp-ssf-listen-'))
  dirs.push(dir)
  return dir
}

function errorOf(result: {stdout: string}): {code: string; message: string} {
  return (JSON.parse(result.stdout.trim().split('\n').at(-1) ?? '{}') as {error: {code: string; message: string}}).error
}

interface Running {
  child: ChildProcessWithoutNullStreams
  url: string
  stderr: () => string
  stop(): Promise<{code: number | null}>
}

async function startListenSsf(argv: string[]): Promise<Running> {
  const child = spawn(process.execPath, [BIN, 'listen', '--ssf', '--port', '0', ...argv], {cwd: ROOT, env: {...process.env, NO_COLOR: '1'}})
  let stderr = ''
  child.stdout.resume()
  const exited = new Promise<{code: number | null}>((resolve) => child.on('close', (code) => resolve({code})))
  const url = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`listen --ssf did not start: ${stderr}`)), 15_000)
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => {
      stderr += chunk
      const match = /listening on (http:\/\/127\.0\.0\.1:\d+)/.exec(stderr)
      if (match !== null) {
        clearTimeout(timer)
        resolve(match[1]!)
      }
    })
    void exited.then(() => reject(new Error(`listen --ssf exited: ${stderr}`)))
  })
  let stopped: Promise<{code: number | null}> | undefined
  const stop = async (): Promise<{code: number | null}> => {
    stopped ??= (async () => {
      child.kill('SIGINT')
      return exited
    })()
    return stopped
  }

  cleanups.push(async () => {
    await stop()
  })
  return {child, stderr: () => stderr, stop, url}
}

describe('listen --ssf (spawned) with the ssf commands and poll', () => {
  it('discover -> streams create --poll -> verify -> poll, and the stream survives a restart', async () => {
    const state = join(tempDir(), 'tx.db')
    const tx = await startListenSsf(['--state', state, '--token', `rx=${TOKEN}`])
    expect(tx.stderr()).toContain(`SSF transmitter: issuer ${tx.url}, metadata ${tx.url}/.well-known/ssf-configuration, 0 stream(s)`)
    const common = ['--issuer', tx.url, '--allow-http', '--token', TOKEN]

    const discover = await runCommand(SsfDiscover, [tx.url, '--allow-http', '--json'])
    expect(discover.exitCode).toBe(0)
    expect(JSON.parse(discover.stdout)).toMatchObject({
      configuration_endpoint: `${tx.url}/ssf/stream`,
      delivery_methods_supported: ['urn:ietf:rfc:8936'],
      issuer: tx.url,
      jwks_uri: `${tx.url}/ssf/jwks.json`,
      verification_endpoint: `${tx.url}/ssf/verify`,
    })

    const created = await runCommand(SsfStreamsCreate, [...common, '--poll', '--event', 'caep.session-revoked', '--description', 'demo', '--json'])
    expect(created.exitCode).toBe(0)
    const stream = JSON.parse(created.stdout) as {stream_id: string; iss: string; delivery: {method: string; endpoint_url: string}; events_delivered: string[]}
    expect(stream).toMatchObject({delivery: {endpoint_url: `${tx.url}/poll`, method: 'urn:ietf:rfc:8936'}, iss: tx.url})
    expect(stream.events_delivered).toEqual(['https://schemas.openid.net/secevent/caep/event-type/session-revoked'])

    const verified = await runCommand(SsfVerify, [stream.stream_id, ...common, '--interval', '50ms', '--verify-timeout', '10s', '--json'])
    expect(verified.exitCode).toBe(0)
    expect(JSON.parse(verified.stdout)).toMatchObject({iss: tx.url, signed: true, stream_id: stream.stream_id, verified: true})
    expect(verified.stdout + verified.stderr).not.toContain(TOKEN)

    // A second verification event, read by the ordinary poll command with --issuer.
    const requested = await runCommand(SsfVerify, [stream.stream_id, ...common, '--no-wait', '--json'])
    const {state: verifyState} = JSON.parse(requested.stdout) as {state: string}
    const polled = await runCommand(Poll, [`${tx.url}/poll`, '--issuer', tx.url, '--allow-http', '--token', TOKEN, '--memory-state', '--return-immediately', '--json'])
    expect(polled.exitCode).toBe(0)
    const records = jsonLines(polled.stdout) as Array<Record<string, unknown>>
    const received = records.filter((record) => record.type !== 'summary' && record.type !== 'ack')
    expect(received).toHaveLength(1)
    expect(JSON.stringify(received[0])).toContain(verifyState)
    expect(JSON.stringify(received[0])).toContain('"verified":true')
    expect(records.at(-1)).toMatchObject({acked: 1, received: 1, setErrs: 0, type: 'summary'})
    expect(polled.stderr).not.toContain('NOT verified')

    // Wrong token: the listener's own 401, on the SSF API too.
    const denied = await runCommand(SsfStreamsList, ['--issuer', tx.url, '--allow-http', '--token', 'not-the-token', '--json'])
    expect(errorOf(denied)).toMatchObject({code: 'ERR_CREDENTIALS'})
    expect(errorOf(denied).message).toContain('streams list: the transmitter did not accept the bearer token (HTTP 401)')

    expect((await tx.stop()).code).toBe(130)
    const again = await startListenSsf(['--state', state, '--token', `rx=${TOKEN}`])
    expect(again.stderr()).toContain('1 stream(s)')
    const list = await runCommand(SsfStreamsList, ['--issuer', again.url, '--allow-http', '--token', TOKEN, '--json'])
    // The restarted listener (port 0: usually another port) is the stream's issuer and /poll.
    expect(JSON.parse(list.stdout)).toEqual([expect.objectContaining({delivery: {endpoint_url: `${again.url}/poll`, method: 'urn:ietf:rfc:8936'}, description: 'demo', iss: again.url, stream_id: stream.stream_id})])
  })

  it('publishes the public half of --signing-key, and refuses a key that is not asymmetric', async () => {
    const dir = tempDir()
    const pair = await generateKeyPair('ES256', 'tx-key-1')
    const keyFile = join(dir, 'private.jwk.json')
    writeFileSync(keyFile, JSON.stringify(pair.privateJwk), {mode: 0o600})
    const tx = await startListenSsf(['--memory-state', '--signing-key', keyFile])
    expect(tx.stderr()).toContain('signing key tx-key-1')
    const jwks = (await (await fetch(`${tx.url}/ssf/jwks.json`)).json()) as {keys: Array<Record<string, unknown>>}
    expect(jwks.keys).toHaveLength(1)
    expect(jwks.keys[0]).toMatchObject({alg: 'ES256', crv: 'P-256', kid: 'tx-key-1', kty: 'EC', use: 'sig'})
    expect(jwks.keys[0]!.d).toBeUndefined()

    const secretFile = join(dir, 'secret.jwk.json')
    writeFileSync(secretFile, JSON.stringify({k: 'c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LXNlY3JldA', kid: 'h', kty: 'oct'}), {mode: 0o600})
    const child = spawn(process.execPath, [BIN, 'listen', '--ssf', '--port', '0', '--memory-state', '--signing-key', secretFile, '--json'], {cwd: ROOT, env: {...process.env, NO_COLOR: '1'}})
    let stdout = ''
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk))
    child.stderr.resume()
    const code = await new Promise<number | null>((resolve) => child.on('close', (c) => resolve(c)))
    expect(code).toBe(2)
    expect(errorOf({stdout})).toMatchObject({code: 'ERR_USAGE'})
    expect(errorOf({stdout}).message).toContain('--ssf publishes the public half of --signing-key as its JWKS, so it needs an asymmetric private key')
  })
})

describe('mountSsfTransmitter on the library listener', () => {
  async function start(tokens = [{name: 'rx', token: TOKEN}], tls?: {cert: Buffer; key: Buffer}): Promise<{listener: Listener; transmitter: SsfTransmitter; ledger: Ledger}> {
    const ledger = new Ledger({storage: new MemoryLedgerStorage()})
    const listener = createListener({ledger, longPollTimeoutMs: 50, port: 0, receiver: new SetReceiver({ledger, verifier: createVerifier()}), tls, tokens})
    await listener.listen()
    const pair = await generateKeyPair('ES256', 'k1')
    const transmitter = mountSsfTransmitter(listener, {
      jwks: pair.publicJwks as unknown as {keys: Array<Record<string, unknown>>},
      signer: {alg: 'ES256', key: createPrivateKey(pair.privatePem), kid: pair.kid},
      store: new MemorySsfStreamStore(),
    })
    cleanups.push(async () => {
      transmitter.close()
      await listener.close(100)
    })
    return {ledger, listener, transmitter}
  }

  const json = {'content-type': 'application/json'}
  const auth = {...json, authorization: `Bearer ${TOKEN}`}

  it('requires the listener token on the API but not on metadata and JWKS; offers poll only', async () => {
    const {listener} = await start()
    const meta = await fetch(`${listener.url}/.well-known/ssf-configuration`)
    expect(meta.status).toBe(200)
    expect(((await meta.json()) as {authorization_schemes: unknown}).authorization_schemes).toEqual([{spec_urn: 'urn:ietf:rfc:6750'}])
    expect((await fetch(`${listener.url}/ssf/jwks.json`)).status).toBe(200)

    const anonymous = await fetch(`${listener.url}/ssf/stream`)
    expect(anonymous.status).toBe(401)
    expect(anonymous.headers.get('www-authenticate')).toContain('Bearer')
    const wrong = await fetch(`${listener.url}/ssf/stream`, {headers: {authorization: 'Bearer nope'}})
    expect(wrong.status).toBe(401)

    const push = await fetch(`${listener.url}/ssf/stream`, {body: JSON.stringify({delivery: {endpoint_url: 'https://rx.example/events', method: 'urn:ietf:rfc:8935'}}), headers: auth, method: 'POST'})
    expect(push.status).toBe(400)
    expect(((await push.json()) as {description: string}).description).toBe('delivery method "urn:ietf:rfc:8935" is not supported; use one of urn:ietf:rfc:8936')

    // The listener's own routes and 404 are unchanged.
    const unknown = await fetch(`${listener.url}/nowhere`, {headers: auth})
    expect(unknown.status).toBe(404)
    const poll = await fetch(`${listener.url}/poll`, {body: '{"returnImmediately":true}', headers: auth, method: 'POST'})
    expect(poll.status).toBe(200)
  })

  it("puts the stream's SETs in the listener's outbox, served on /poll until acked", async () => {
    const {listener, transmitter} = await start()
    const created = await fetch(`${listener.url}/ssf/stream`, {body: '{}', headers: auth, method: 'POST'})
    expect(created.status).toBe(201)
    const config = (await created.json()) as {stream_id: string; delivery: {endpoint_url: string}}
    expect(config.delivery.endpoint_url).toBe(`${listener.url}/poll`)

    expect((await fetch(`${listener.url}/ssf/verify`, {body: JSON.stringify({state: 'abc', stream_id: config.stream_id}), headers: auth, method: 'POST'})).status).toBe(204)
    await transmitter.setStreamStatus(config.stream_id, 'paused', 'maintenance')
    expect(listener.counts.queued).toBe(2)

    const first = (await (await fetch(`${listener.url}/poll`, {body: '{"returnImmediately":true}', headers: auth, method: 'POST'})).json()) as {sets: Record<string, string>}
    const jtis = Object.keys(first.sets)
    expect(jtis).toHaveLength(2)
    const payloads = Object.values(first.sets).map((token) => JSON.parse(Buffer.from(token.split('.')[1]!, 'base64url').toString('utf8')) as {iss: string; events: Record<string, unknown>})
    expect(payloads.map((payload) => payload.iss)).toEqual([listener.url, listener.url])
    expect(payloads[0]!.events).toEqual({'https://schemas.openid.net/secevent/ssf/event-type/verification': {state: 'abc'}})
    expect(payloads[1]!.events).toEqual({'https://schemas.openid.net/secevent/ssf/event-type/stream-updated': {reason: 'maintenance', status: 'paused'}})

    const acked = (await (await fetch(`${listener.url}/poll`, {body: JSON.stringify({ack: jtis, returnImmediately: true}), headers: auth, method: 'POST'})).json()) as {sets: Record<string, string>}
    expect(acked.sets).toEqual({})
    expect(listener.counts.acked).toBe(2)
  })

  it('holds the events of a paused stream and releases them when it is enabled again', async () => {
    const {listener, transmitter} = await start()
    const created = await fetch(`${listener.url}/ssf/stream`, {body: '{}', headers: auth, method: 'POST'})
    const {stream_id: id} = (await created.json()) as {stream_id: string}
    const status = async (value: string): Promise<number> =>
      (await fetch(`${listener.url}/ssf/status`, {body: JSON.stringify({status: value, stream_id: id}), headers: auth, method: 'POST'})).status
    expect(await status('paused')).toBe(200)
    expect((await fetch(`${listener.url}/ssf/verify`, {body: JSON.stringify({state: 'held', stream_id: id}), headers: auth, method: 'POST'})).status).toBe(204)
    expect(listener.counts.queued).toBe(0)
    expect(await status('enabled')).toBe(200)
    expect(listener.counts.queued).toBe(1)

    // A transmitter-initiated pause is announced at once; what follows waits for the re-enable.
    await transmitter.setStreamStatus(id, 'paused', 'maintenance')
    expect(listener.counts.queued).toBe(2)
    await transmitter.queueEvent(id, {events: {'https://schemas.openid.net/secevent/caep/event-type/session-revoked': {event_timestamp: 1}}})
    expect(listener.counts.queued).toBe(2)
    await transmitter.setStreamStatus(id, 'enabled')
    expect(listener.counts.queued).toBe(4)
    const polled = (await (await fetch(`${listener.url}/poll`, {body: '{"returnImmediately":true}', headers: auth, method: 'POST'})).json()) as {sets: Record<string, string>}
    const events = Object.values(polled.sets).map((token) => Object.keys((JSON.parse(Buffer.from(token.split('.')[1]!, 'base64url').toString('utf8')) as {events: Record<string, unknown>}).events)[0])
    expect(events).toEqual([
      'https://schemas.openid.net/secevent/ssf/event-type/verification',
      'https://schemas.openid.net/secevent/ssf/event-type/stream-updated',
      'https://schemas.openid.net/secevent/ssf/event-type/stream-updated',
      'https://schemas.openid.net/secevent/caep/event-type/session-revoked',
    ])
  })

  it('stream --issuer: SETs of an SSF stream over a WebSocket session, verified with the discovered JWKS', async () => {
    const {listener, transmitter} = await start()
    const sessions = attachListenerSessions(listener)
    cleanups.push(async () => sessions.close())
    const created = await fetch(`${listener.url}/ssf/stream`, {body: '{}', headers: auth, method: 'POST'})
    const {stream_id: id} = (await created.json()) as {stream_id: string}
    const event = await transmitter.queueEvent(id, {
      events: {'https://schemas.openid.net/secevent/caep/event-type/session-revoked': {event_timestamp: 1_700_000_000}},
      sub_id: {email: 'ana@example.com', format: 'email'},
    })
    expect(event).toBeDefined()
    const argv = [`${listener.url.replace('http', 'ws')}/pushpull`, '--issuer', listener.url, '--allow-http', '--token', TOKEN, '--memory-state', '--max-events', '1', '--duration', '10s', '--json']
    const result = await runCommand(Stream, argv, {stdin: ''})
    expect(result.exitCode).toBe(0)
    const records = jsonLines(result.stdout) as Array<Record<string, unknown>>
    expect(records.find((record) => record.type === 'set')).toMatchObject({event: 'caep.session-revoked', iss: listener.url, jti: event!.jti, verified: true})
    expect(result.stderr).not.toContain('NOT checked')

    // Another issuer's name: discovery refuses before any session starts.
    const wrong = await runCommand(Stream, [`${listener.url.replace('http', 'ws')}/pushpull`, '--issuer', `${listener.url}/other`, '--allow-http', '--token', TOKEN, '--memory-state', '--json'], {stdin: ''})
    expect(wrong.exitCode).toBe(5)
    expect(errorOf(wrong).code).toBe('ERR_PEER_STATUS')
    expect(errorOf(wrong).message).toContain('answered HTTP 404')
  })

  it('over https: ssf verify and poll --issuer fetch metadata and JWKS trusting --cacert, and fail without it', async () => {
    const tlsDir = join(ROOT, 'test', 'fixtures', 'tls')
    const ca = join(tlsDir, 'localhost.crt')
    const {listener} = await start([{name: 'rx', token: TOKEN}], {cert: readFileSync(ca), key: readFileSync(join(tlsDir, 'localhost.key'))})
    expect(listener.url).toMatch(/^https:/)
    const common = ['--issuer', listener.url, '--token', TOKEN, '--cacert', ca]
    const untrusted = await runCommand(SsfStreamsList, ['--issuer', listener.url, '--token', TOKEN, '--json'])
    expect(errorOf(untrusted).code).toBe('ERR_TLS')

    const created = await runCommand(SsfStreamsCreate, [...common, '--poll', '--json'])
    expect(created.exitCode).toBe(0)
    const {stream_id: id} = JSON.parse(created.stdout) as {stream_id: string}
    const verified = await runCommand(SsfVerify, [id, ...common, '--interval', '50ms', '--verify-timeout', '10s', '--json'])
    expect(verified.exitCode).toBe(0)
    expect(JSON.parse(verified.stdout)).toMatchObject({signed: true, verified: true})

    expect((await runCommand(SsfVerify, [id, ...common, '--no-wait', '--json'])).exitCode).toBe(0)
    const polled = await runCommand(Poll, [`${listener.url}/poll`, ...common, '--memory-state', '--return-immediately', '--json'])
    expect(polled.exitCode).toBe(0)
    expect(jsonLines(polled.stdout).at(-1)).toMatchObject({acked: 1, received: 1, type: 'summary'})
  })
})
