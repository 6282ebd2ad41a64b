/**
 * Every `pushpull ssf` command against the spec transmitter in test/helpers (written from SSF 1.0
 * alone) and against pushpull's own transmitter handler mounted on a plain node:http server.
 */
import {createPrivateKey} from 'node:crypto'
import {createServer, type Server} from 'node:http'
import type {AddressInfo} from 'node:net'

import {afterEach, describe, expect, it} from 'vitest'

import SsfDiscover from '../../src/commands/ssf/discover.js'
import SsfStatusGet from '../../src/commands/ssf/status/get.js'
import SsfStatusSet from '../../src/commands/ssf/status/set.js'
import SsfStreamsCreate from '../../src/commands/ssf/streams/create.js'
import SsfStreamsDelete from '../../src/commands/ssf/streams/delete.js'
import SsfStreamsGet from '../../src/commands/ssf/streams/get.js'
import SsfStreamsList from '../../src/commands/ssf/streams/list.js'
import SsfStreamsReplace from '../../src/commands/ssf/streams/replace.js'
import SsfStreamsUpdate from '../../src/commands/ssf/streams/update.js'
import SsfSubjectsAdd from '../../src/commands/ssf/subjects/add.js'
import SsfSubjectsRemove from '../../src/commands/ssf/subjects/remove.js'
import SsfVerify from '../../src/commands/ssf/verify.js'
import {generateKeyPair} from '../../src/lib/keys.js'
import {createSsfTransmitter, type SsfTransmitter, type SsfTransmitterOptions} from '../../src/lib/ssf/transmitter.js'
import {runCommand} from '../helpers/cli.js'
import {type SsfPeer, type SsfPeerOptions, startSsfTransmitter} from '../helpers/peers/ssf-transmitter.js'

const TOKEN = 'rx-management-token'
const cleanups: Array<() => Promise<void>> = []

afterEach(async () => {
  while (cleanups.length > 0) await cleanups.pop()?.()
})

interface Target {
  issuer: string
  /** jtis acked on the stream's poll endpoint, and setErrs, as the transmitter saw them. */
  ackedJtis(): string[]
  reportedErrs(): Record<string, {err: string}>
}

async function startPeer(options: SsfPeerOptions = {}): Promise<SsfPeer & Target> {
  const peer = await startSsfTransmitter({token: TOKEN, ...options})
  cleanups.push(async () => peer.close())
  return Object.assign(peer, {ackedJtis: () => peer.acked, reportedErrs: () => peer.setErrs})
}

async function startOwn(options: Partial<SsfTransmitterOptions> = {}): Promise<Target & {transmitter: SsfTransmitter; server: Server}> {
  const pair = await generateKeyPair('ES256', 'own-key')
  const acked: string[] = []
  const setErrs: Record<string, {err: string}> = {}
  const holder: {transmitter?: SsfTransmitter} = {}
  const server = createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://127.0.0.1')
    const body: Buffer[] = []
    // Record what the poller reports, then let the handler serve the request.
    if (url.pathname.includes('/ssf/poll/')) {
      req.on('data', (chunk: Buffer) => body.push(chunk))
      req.on('end', () => {
        const value = JSON.parse(Buffer.concat(body).toString('utf8') || '{}') as {ack?: string[]; setErrs?: Record<string, {err: string}>}
        acked.push(...(value.ack ?? []))
        Object.assign(setErrs, value.setErrs ?? {})
      })
    }

    void holder.transmitter?.handle(req, res, url).then((handled) => {
      if (!handled) res.writeHead(404).end()
    })
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const issuer = `http://127.0.0.1:${(server.address() as AddressInfo).port}`
  const transmitter = createSsfTransmitter({
    issuer,
    jwks: pair.publicJwks as unknown as {keys: Array<Record<string, unknown>>},
    longPollMs: 50,
    signer: {alg: 'ES256', key: createPrivateKey(pair.privatePem), kid: pair.kid},
    token: TOKEN,
    ...options,
  })
  holder.transmitter = transmitter
  cleanups.push(async () => {
    transmitter.close()
    server.closeAllConnections()
    await new Promise<void>((resolve) => server.close(() => resolve()))
  })
  return {ackedJtis: () => acked, issuer, reportedErrs: () => setErrs, server, transmitter}
}

const common = (target: Target): string[] => ['--issuer', target.issuer, '--allow-http', '--token', TOKEN]

function errorOf(result: {stdout: string}): {code: string; message: string} {
  return (JSON.parse(result.stdout.trim().split('\n').at(-1) ?? '{}') as {error: {code: string; message: string}}).error
}

describe.each([
  ['the spec transmitter', async (): Promise<Target> => startPeer()],
  ["pushpull's transmitter handler", async (): Promise<Target> => startOwn()],
])('ssf commands against %s', (_name, start) => {
  it('discovers, creates a poll stream, manages it, verifies it and deletes it', async () => {
    const target = await start()
    const discover = await runCommand(SsfDiscover, [target.issuer, '--allow-http', '--json'])
    expect(discover.exitCode).toBe(0)
    const metadata = JSON.parse(discover.stdout) as Record<string, unknown>
    expect(metadata.issuer).toBe(target.issuer)
    expect(metadata.delivery_methods_supported).toContain('urn:ietf:rfc:8936')
    expect(String(metadata.jwks_uri)).toMatch(/^http:\/\/127\.0\.0\.1:\d+\//)

    const human = await runCommand(SsfDiscover, [target.issuer, '--allow-http'])
    expect(human.stdout).toContain('verification_endpoint')
    expect(human.stdout).toContain('poll (RFC 8936)')

    const created = await runCommand(SsfStreamsCreate, [...common(target), '--poll', '--event', 'caep.session-revoked', '--description', 'demo', '--json'])
    expect(created.exitCode).toBe(0)
    const stream = JSON.parse(created.stdout) as {stream_id: string; delivery: {method: string; endpoint_url: string}; iss: string; events_delivered: string[]}
    expect(stream.iss).toBe(target.issuer)
    expect(stream.delivery.method).toBe('urn:ietf:rfc:8936')
    expect(stream.delivery.endpoint_url).toMatch(/^http:\/\/127\.0\.0\.1:\d+\//)
    expect(stream.events_delivered).toEqual(['https://schemas.openid.net/secevent/caep/event-type/session-revoked'])
    const id = stream.stream_id

    const list = await runCommand(SsfStreamsList, [...common(target), '--json'])
    expect((JSON.parse(list.stdout) as Array<{stream_id: string}>).map((item) => item.stream_id)).toEqual([id])
    const listHuman = await runCommand(SsfStreamsList, common(target))
    expect(listHuman.stdout).toContain(id)

    const got = await runCommand(SsfStreamsGet, [id, ...common(target), '--json'])
    expect((JSON.parse(got.stdout) as {description: string}).description).toBe('demo')

    const updated = await runCommand(SsfStreamsUpdate, [id, ...common(target), '--description', 'renamed', '--json'])
    const afterUpdate = JSON.parse(updated.stdout) as {description: string; events_requested: string[]}
    expect(afterUpdate.description).toBe('renamed')
    expect(afterUpdate.events_requested).toEqual(['https://schemas.openid.net/secevent/caep/event-type/session-revoked'])

    const replaced = await runCommand(SsfStreamsReplace, [id, ...common(target), '--event', 'ssf.verification', '--json'])
    const afterReplace = JSON.parse(replaced.stdout) as {description?: string; events_requested: string[]; delivery: {method: string}}
    expect(afterReplace.description).toBeUndefined()
    expect(afterReplace.events_requested).toEqual(['https://schemas.openid.net/secevent/ssf/event-type/verification'])
    expect(afterReplace.delivery.method).toBe('urn:ietf:rfc:8936')

    const status = await runCommand(SsfStatusGet, [id, ...common(target), '--json'])
    expect(JSON.parse(status.stdout)).toEqual({status: 'enabled', stream_id: id})
    const paused = await runCommand(SsfStatusSet, [id, 'paused', '--reason', 'maintenance', ...common(target), '--json'])
    expect(JSON.parse(paused.stdout)).toEqual({reason: 'maintenance', status: 'paused', stream_id: id})
    const enabled = await runCommand(SsfStatusSet, [id, 'enabled', ...common(target)])
    expect(enabled.stdout).toContain(`stream ${id}: enabled`)

    const added = await runCommand(SsfSubjectsAdd, [id, 'email:ana@example.com', '--verified', ...common(target), '--json'])
    expect(JSON.parse(added.stdout)).toEqual({added: true, stream_id: id, subject: {email: 'ana@example.com', format: 'email'}})
    const removed = await runCommand(SsfSubjectsRemove, [id, 'email:ana@example.com', ...common(target), '--json'])
    expect(removed.exitCode).toBe(0)

    const verified = await runCommand(SsfVerify, [id, ...common(target), '--interval', '50ms', '--verify-timeout', '5s', '--json'])
    expect(verified.stderr).not.toContain(TOKEN)
    expect(verified.exitCode).toBe(0)
    const outcome = JSON.parse(verified.stdout) as {verified: boolean; signed: boolean; jti: string; state: string; streamId: string}
    expect(outcome.verified).toBe(true)
    expect(outcome.signed).toBe(true)
    expect(outcome.streamId).toBe(id)
    expect(outcome.state).toMatch(/^[\w-]{22}$/)
    expect(target.ackedJtis()).toContain(outcome.jti)
    expect(target.reportedErrs()).toEqual({})

    const deleted = await runCommand(SsfStreamsDelete, [id, ...common(target), '--json'])
    expect(JSON.parse(deleted.stdout)).toEqual({deleted: true, stream_id: id})
    const gone = await runCommand(SsfStreamsGet, [id, ...common(target), '--json'])
    expect(gone.exitCode).toBe(5)
    expect(errorOf(gone).code).toBe('ERR_PEER_REJECTED')
    expect(errorOf(gone).message).toContain(`streams get: no stream "${id}" for this receiver (HTTP 404)`)
  })

  it('maps a wrong bearer token to ERR_CREDENTIALS without echoing it', async () => {
    const target = await start()
    const result = await runCommand(SsfStreamsList, ['--issuer', target.issuer, '--allow-http', '--token', 'wrong-token', '--json'])
    expect(result.exitCode).toBe(3)
    expect(errorOf(result).code).toBe('ERR_CREDENTIALS')
    expect(errorOf(result).message).toContain('streams list: the transmitter did not accept the bearer token (HTTP 401)')
    expect(result.stdout + result.stderr).not.toContain('wrong-token')
  })

  it('refuses plain http without --allow-http', async () => {
    const target = await start()
    const result = await runCommand(SsfDiscover, [target.issuer, '--json'])
    expect(result.exitCode).toBe(2)
    expect(errorOf(result)).toMatchObject({code: 'ERR_USAGE'})
    expect(errorOf(result).message).toContain('uses http; SSF requires https')
  })

  it('refuses to watch a push stream and says what to do', async () => {
    const target = await start()
    const created = await runCommand(SsfStreamsCreate, [...common(target), '--push', 'https://rx.example/events', '--push-token', 'push-secret', '--json'])
    expect(created.exitCode).toBe(0)
    const stream = JSON.parse(created.stdout) as {stream_id: string; delivery: {method: string; authorization_header?: string}}
    expect(stream.delivery.method).toBe('urn:ietf:rfc:8935')
    expect(created.stdout).not.toContain('push-secret')
    const result = await runCommand(SsfVerify, [stream.stream_id, ...common(target), '--json'])
    expect(result.exitCode).toBe(2)
    expect(errorOf(result).message).toContain('uses urn:ietf:rfc:8935 delivery, which "ssf verify" cannot watch')
    const noWait = await runCommand(SsfVerify, [stream.stream_id, ...common(target), '--no-wait', '--json'])
    expect(JSON.parse(noWait.stdout)).toMatchObject({requested: true, stream_id: stream.stream_id, verified: false})
  })
})

describe('ssf commands: bad metadata and error statuses (spec transmitter)', () => {
  it('follows the issuer-path rule and the legacy RISC location', async () => {
    const peer = await startPeer({issuerPath: '/t1'})
    expect(peer.issuer).toMatch(/\/t1$/)
    const ok = await runCommand(SsfDiscover, [peer.issuer, '--allow-http', '--json'])
    expect(ok.exitCode).toBe(0)
    expect(peer.requests.some((request) => request.path === '/.well-known/ssf-configuration/t1')).toBe(true)

    const risc = await startPeer({riscOnly: true})
    const missing = await runCommand(SsfDiscover, [risc.issuer, '--allow-http', '--json'])
    expect(missing.exitCode).toBe(5)
    expect(errorOf(missing)).toMatchObject({code: 'ERR_PEER_STATUS'})
    expect(errorOf(missing).message).toContain('answered HTTP 404 (an old RISC transmitter? try --legacy-risc)')
    const legacy = await runCommand(SsfDiscover, [risc.issuer, '--allow-http', '--legacy-risc', '--json'])
    expect(legacy.exitCode).toBe(0)
  })

  it('refuses metadata whose issuer differs', async () => {
    const peer = await startPeer({metadata: {issuer: 'https://evil.example'}})
    const result = await runCommand(SsfDiscover, [peer.issuer, '--allow-http', '--json'])
    expect(result.exitCode).toBe(5)
    expect(errorOf(result).code).toBe('ERR_PEER_PROTOCOL')
    expect(errorOf(result).message).toContain('transmitter metadata names the issuer "https://evil.example", not')
  })

  it('refuses http endpoints on a non-loopback host even with --allow-http', async () => {
    const peer = await startPeer({metadata: {configuration_endpoint: 'http://tx.example/streams'}})
    const result = await runCommand(SsfStreamsList, [...common(peer), '--json'])
    expect(errorOf(result).code).toBe('ERR_PEER_PROTOCOL')
    expect(errorOf(result).message).toBe('configuration_endpoint http://tx.example/streams uses http on a non-loopback host; http is only ever accepted for localhost, 127.0.0.0/8 and [::1]')
  })

  it('refuses metadata without jwks_uri for discovery and verification', async () => {
    const peer = await startPeer({metadata: {jwks_uri: undefined}})
    const result = await runCommand(SsfDiscover, [peer.issuer, '--allow-http', '--json'])
    expect(errorOf(result).code).toBe('ERR_PEER_PROTOCOL')
    expect(errorOf(result).message).toContain('transmitter metadata has no "jwks_uri"')
    const unsigned = await runCommand(SsfDiscover, [peer.issuer, '--allow-http', '--allow-unsigned', '--json'])
    expect(unsigned.exitCode).toBe(0)
    const created = await runCommand(SsfStreamsCreate, [...common(peer), '--json'])
    const id = (JSON.parse(created.stdout) as {stream_id: string}).stream_id
    const verify = await runCommand(SsfVerify, [id, ...common(peer), '--json'])
    expect(errorOf(verify).code).toBe('ERR_PEER_PROTOCOL')
    expect(errorOf(verify).message).toContain('has no jwks_uri, so its verification SET cannot be verified')
  })

  it('checks iss in stream configurations', async () => {
    const peer = await startPeer({streamOverrides: {iss: 'https://other.example'}})
    const result = await runCommand(SsfStreamsCreate, [...common(peer), '--json'])
    expect(errorOf(result).code).toBe('ERR_PEER_PROTOCOL')
    expect(errorOf(result).message).toContain('"iss" is "https://other.example", not the discovered issuer')
  })

  it('maps 400, 401, 404 and 409 from each endpoint to clear errors', async () => {
    const peer = await startPeer({
      failWith: {add: 404, create: 400, delete: 404, remove: 400, replace: 400, 'status-get': 404, 'status-set': 401, update: 404, verify: 404},
    })
    const bad = await runCommand(SsfStreamsCreate, [...common(peer), '--json'])
    expect(bad.exitCode).toBe(5)
    expect(errorOf(bad).code).toBe('ERR_PEER_REJECTED')
    expect(errorOf(bad).message).toBe('streams create: the transmitter rejected the request as invalid (HTTP 400): invalid_request - scripted 400 for create')

    // A stream to address (the peer only fails the scripted operations).
    peer.streams.set('s1', {config: {aud: 'x', delivery: {endpoint_url: `${peer.url}/poll/s1`, method: 'urn:ietf:rfc:8936'}, events_delivered: [], iss: peer.issuer, stream_id: 's1'}, queue: [], status: 'enabled', subjects: []})
    const cases: Array<[Parameters<typeof runCommand>[0], string[], string, string]> = [
      [SsfStreamsUpdate, ['s1', '--description', 'x'], 'ERR_PEER_REJECTED', 'streams update: no stream "s1" for this receiver (HTTP 404)'],
      [SsfStreamsReplace, ['s1'], 'ERR_PEER_REJECTED', 'streams replace: the transmitter rejected the request as invalid (HTTP 400)'],
      [SsfStreamsDelete, ['s1'], 'ERR_PEER_REJECTED', 'streams delete: no stream "s1" for this receiver (HTTP 404)'],
      [SsfStatusGet, ['s1'], 'ERR_PEER_REJECTED', 'status get: no such stream for this receiver (or the subject is not known) (HTTP 404)'],
      [SsfStatusSet, ['s1', 'paused'], 'ERR_CREDENTIALS', 'status set: the transmitter did not accept the bearer token (HTTP 401)'],
      [SsfSubjectsAdd, ['s1', 'email:a@example.com'], 'ERR_PEER_REJECTED', 'add subject: no such stream, or the transmitter does not recognise the subject (HTTP 404)'],
      [SsfSubjectsRemove, ['s1', 'email:a@example.com'], 'ERR_PEER_REJECTED', 'remove subject: the transmitter rejected the request as invalid (HTTP 400)'],
      [SsfVerify, ['s1', '--no-wait'], 'ERR_PEER_REJECTED', 'verify: no stream "s1" for this receiver (HTTP 404)'],
    ]
    for (const [command, argv, code, message] of cases) {
      const result = await runCommand(command, [...argv, ...common(peer), '--json'])
      expect(errorOf(result).code, argv.join(' ')).toBe(code)
      expect(errorOf(result).message).toContain(message)
    }
  })

  it('explains 409 when the transmitter allows one stream', async () => {
    const peer = await startPeer({singleStream: true})
    expect((await runCommand(SsfStreamsCreate, [...common(peer), '--json'])).exitCode).toBe(0)
    const second = await runCommand(SsfStreamsCreate, [...common(peer), '--json'])
    expect(second.exitCode).toBe(5)
    expect(errorOf(second).code).toBe('ERR_PEER_REJECTED')
    expect(errorOf(second).message).toContain('streams create: the transmitter allows one stream per receiver and one already exists (HTTP 409)')
  })

  it('answers a verification SET with the wrong state with invalid_state and fails', async () => {
    const peer = await startPeer({wrongState: 'not-our-state'})
    const created = await runCommand(SsfStreamsCreate, [...common(peer), '--json'])
    const id = (JSON.parse(created.stdout) as {stream_id: string}).stream_id
    const result = await runCommand(SsfVerify, [id, ...common(peer), '--interval', '20ms', '--verify-timeout', '300ms', '--json'])
    expect(result.exitCode).toBe(6)
    expect(errorOf(result).code).toBe('ERR_SET_STATE')
    expect(errorOf(result).message).toContain('carries state "not-our-state", not the state')
    const errs = Object.values(peer.setErrs)
    expect(errs).toHaveLength(1)
    expect(errs[0]?.err).toBe('invalid_state')
    expect(peer.acked).toEqual([])
  })

  it('shows stream-updated events and leaves other SETs for the real consumer', async () => {
    const peer = await startPeer()
    const created = await runCommand(SsfStreamsCreate, [...common(peer), '--json'])
    const id = (JSON.parse(created.stdout) as {stream_id: string}).stream_id
    const other = peer.enqueue(id, {events: {'https://schemas.openid.net/secevent/caep/event-type/session-revoked': {}}, sub_id: {email: 'a@example.com', format: 'email'}})
    peer.enqueue(id, {events: {'https://schemas.openid.net/secevent/ssf/event-type/stream-updated': {reason: 'admin', status: 'paused'}}, sub_id: {format: 'opaque', id}})
    const result = await runCommand(SsfVerify, [id, ...common(peer), '--interval', '20ms', '--verify-timeout', '5s'])
    expect(result.exitCode).toBe(0)
    expect(result.stderr).toContain(`stream ${id} is now paused (admin)`)
    expect(result.stdout).toContain('verified')
    expect(peer.acked).not.toContain(other)
    expect(peer.streams.get(id)?.queue.map((item) => item.jti)).toContain(other)
  })
})

describe("ssf commands: pushpull's transmitter specifics", () => {
  it('answers 409 on a second stream when only one is allowed', async () => {
    const own = await startOwn({allowMultipleStreams: false})
    expect((await runCommand(SsfStreamsCreate, [...common(own), '--json'])).exitCode).toBe(0)
    const second = await runCommand(SsfStreamsCreate, [...common(own), '--json'])
    expect(errorOf(second).code).toBe('ERR_PEER_REJECTED')
    expect(errorOf(second).message).toContain('(HTTP 409)')
  })

  it('answers 429 with Retry-After inside min_verification_interval', async () => {
    const own = await startOwn({minVerificationIntervalSec: 60})
    const created = await runCommand(SsfStreamsCreate, [...common(own), '--json'])
    const stream = JSON.parse(created.stdout) as {stream_id: string; min_verification_interval: number}
    expect(stream.min_verification_interval).toBe(60)
    expect((await runCommand(SsfVerify, [stream.stream_id, ...common(own), '--no-wait', '--json'])).exitCode).toBe(0)
    const again = await runCommand(SsfVerify, [stream.stream_id, ...common(own), '--no-wait', '--json'])
    expect(errorOf(again).code).toBe('ERR_PEER_STATUS')
    expect(errorOf(again).message).toContain('verify: the transmitter says too many requests (HTTP 429); it asks to wait 60 s')
  })
})
