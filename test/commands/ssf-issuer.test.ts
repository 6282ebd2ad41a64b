/**
 * `--issuer` on decode (against the spec SSF transmitter in test/helpers), and `--cacert` /
 * `--insecure` applied to the JWKS fetch (a --jwks URL or a discovered jwks_uri) over real TLS
 * with the fixtures in test/fixtures/tls.
 */
import {readFileSync} from 'node:fs'
import {createServer} from 'node:https'
import type {AddressInfo} from 'node:net'
import {join} from 'node:path'

import {afterEach, describe, expect, it} from 'vitest'

import Decode from '../../src/commands/decode.js'
import Listen from '../../src/commands/listen.js'
import {prepareVerification} from '../../src/cli/issuer-flag.js'
import {jsonLines, runCommand, ROOT} from '../helpers/cli.js'
import {rejection} from '../helpers/errors.js'
import {startSsfTransmitter} from '../helpers/peers/ssf-transmitter.js'
import {unusedPort} from '../helpers/ports.js'
import {generatePeerKey, makeSetClaims, type PeerSigningKey, publicJwks, signSet} from '../helpers/peers/set-token.js'

const TLS_DIR = join(ROOT, 'test', 'fixtures', 'tls')
const CA = join(TLS_DIR, 'localhost.crt')
const cleanups: Array<() => Promise<void>> = []

afterEach(async () => {
  while (cleanups.length > 0) await cleanups.pop()?.()
})

function errorOf(result: {stdout: string}): {code: string; message: string} {
  return (JSON.parse(result.stdout.trim().split('\n').at(-1) ?? '{}') as {error: {code: string; message: string}}).error
}

/** A minimal https transmitter: metadata for issuer https://127.0.0.1:PORT and its JWKS. Counts requests per path. */
async function startHttpsTransmitter(key: PeerSigningKey): Promise<{issuer: string; hits: Map<string, number>}> {
  const hits = new Map<string, number>()
  let issuer = ''
  const server = createServer({cert: readFileSync(CA), key: readFileSync(join(TLS_DIR, 'localhost.key'))}, (req, res) => {
    const path = new URL(req.url ?? '/', 'https://127.0.0.1').pathname
    hits.set(path, (hits.get(path) ?? 0) + 1)
    const send = (body: unknown): void => {
      res.writeHead(200, {'content-type': 'application/json'}).end(JSON.stringify(body))
    }

    if (path === '/.well-known/ssf-configuration') send({delivery_methods_supported: ['urn:ietf:rfc:8936'], issuer, jwks_uri: `${issuer}/jwks`, spec_version: '1_0'})
    else if (path === '/jwks') send(publicJwks([key]))
    else res.writeHead(404).end()
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  issuer = `https://127.0.0.1:${(server.address() as AddressInfo).port}`
  cleanups.push(async () => {
    server.closeAllConnections()
    await new Promise<void>((resolve) => server.close(() => resolve()))
  })
  return {hits, issuer}
}

describe('decode --issuer against the spec SSF transmitter', () => {
  async function start(options: Parameters<typeof startSsfTransmitter>[0] = {}): Promise<Awaited<ReturnType<typeof startSsfTransmitter>>> {
    const peer = await startSsfTransmitter(options)
    cleanups.push(async () => peer.close())
    return peer
  }

  it('verifies a SET with the discovered jwks_uri and expects the issuer', async () => {
    const peer = await start({issuerPath: '/t1'})
    const token = signSet(makeSetClaims({iss: peer.issuer}), peer.key)
    const result = await runCommand(Decode, ['--issuer', peer.issuer, '--allow-http', token, '--json'])
    expect(result.exitCode).toBe(0)
    const record = JSON.parse(result.stdout) as {verified: boolean; claims: {iss: string}}
    expect(record.verified).toBe(true)
    expect(record.claims.iss).toBe(peer.issuer)
    expect(result.stderr).not.toContain('signatures are NOT checked')
    expect(peer.requests.map((request) => request.path)).toEqual(['/.well-known/ssf-configuration/t1', '/jwks'])
  })

  it('refuses a SET from another issuer, and one signed with another key', async () => {
    const peer = await start()
    const foreign = signSet(makeSetClaims({iss: 'https://other.example'}), peer.key)
    const wrongIss = await runCommand(Decode, ['--issuer', peer.issuer, '--allow-http', foreign, '--json'])
    expect(wrongIss.exitCode).toBe(6)
    expect(errorOf(wrongIss).code).toBe('ERR_SET_ISSUER')
    expect(errorOf(wrongIss).message).toContain('https://other.example')
    expect(errorOf(wrongIss).message).toContain(peer.issuer)

    const stranger = generatePeerKey('ES256', peer.key.kid)
    const forged = signSet(makeSetClaims({iss: peer.issuer}), stranger)
    const badSig = await runCommand(Decode, ['--issuer', peer.issuer, '--allow-http', forged, '--json'])
    expect(badSig.exitCode).toBe(6)
    expect(errorOf(badSig).code).toBe('ERR_SET_SIGNATURE')
  })

  it('fails clearly on bad metadata and on conflicting flags', async () => {
    const liar = await start({metadata: {issuer: 'https://evil.example'}})
    const token = signSet(makeSetClaims({iss: liar.issuer}), liar.key)
    const mismatch = await runCommand(Decode, ['--issuer', liar.issuer, '--allow-http', token, '--json'])
    expect(mismatch.exitCode).toBe(5)
    expect(errorOf(mismatch).code).toBe('ERR_PEER_PROTOCOL')
    expect(errorOf(mismatch).message).toContain('transmitter metadata names the issuer "https://evil.example", not')

    const keyless = await start({metadata: {jwks_uri: undefined}})
    const noJwks = await runCommand(Decode, ['--issuer', keyless.issuer, '--allow-http', token, '--json'])
    expect(errorOf(noJwks).code).toBe('ERR_PEER_PROTOCOL')
    expect(errorOf(noJwks).message).toContain('transmitter metadata has no "jwks_uri"')

    const plain = await runCommand(Decode, ['--issuer', liar.issuer, token, '--json'])
    expect(plain.exitCode).toBe(2)
    expect(errorOf(plain).code).toBe('ERR_USAGE')
    expect(errorOf(plain).message).toContain('uses http; SSF requires https')

    const both = await runCommand(Decode, ['--issuer', liar.issuer, '--allow-http', '--jwks', 'keys.json', token, '--json'])
    expect(errorOf(both)).toEqual(expect.objectContaining({code: 'ERR_USAGE', message: '--issuer and --jwks both name the verification keys; give one of them'}))
    const iss = await runCommand(Decode, [token, '--issuer', liar.issuer, '--allow-http', '--expect-iss', 'x', '--json'])
    expect(errorOf(iss)).toEqual(expect.objectContaining({code: 'ERR_USAGE', message: '--issuer already sets the expected issuer; drop --expect-iss'}))
  })
})

describe('listen --issuer against the spec SSF transmitter', () => {
  it('verifies pushed SETs with the discovered keys and refuses another issuer with invalid_issuer', async () => {
    const peer = await startSsfTransmitter()
    cleanups.push(async () => peer.close())
    const port = await unusedPort()
    const running = runCommand(Listen, ['--issuer', peer.issuer, '--allow-http', '--port', String(port), '--memory-state', '--max-events', '1', '--json'])
    const push = async (token: string): Promise<{status: number; body: string}> => {
      for (let attempt = 0; ; attempt++) {
        try {
          const response = await fetch(`http://127.0.0.1:${port}/events`, {body: token, headers: {'content-type': 'application/secevent+jwt'}, method: 'POST'})
          return {body: await response.text(), status: response.status}
        } catch (error) {
          if (attempt > 200) throw error
          await new Promise((resolve) => setTimeout(resolve, 25))
        }
      }
    }

    const foreign = await push(signSet(makeSetClaims({iss: 'https://other.example'}), peer.key))
    expect(foreign.status).toBe(400)
    expect(JSON.parse(foreign.body)).toMatchObject({err: 'invalid_issuer'})
    const good = await push(signSet(makeSetClaims({iss: peer.issuer}), peer.key))
    expect(good.status).toBe(202)
    const result = await running
    expect(result.exitCode).toBe(0)
    const records = jsonLines(result.stdout) as Array<Record<string, unknown>>
    expect(records[0]).toMatchObject({type: 'listening', verified: true})
    expect(records.find((record) => record.type === 'set')).toMatchObject({iss: peer.issuer, status: 'new', verified: true})
    expect(peer.requests.map((request) => request.path)).toEqual(['/.well-known/ssf-configuration', '/jwks'])
  })
})

describe('JWKS over TLS honours --cacert and --insecure', () => {
  it('decode --jwks https URL: refused without the CA, verified with --cacert or --insecure', async () => {
    const key = generatePeerKey('ES256', 'tls-key')
    const tx = await startHttpsTransmitter(key)
    const token = signSet(makeSetClaims({iss: tx.issuer}), key)
    const jwks = `${tx.issuer}/jwks`

    const untrusted = await runCommand(Decode, ['--jwks', jwks, token, '--json'])
    expect(untrusted.exitCode).not.toBe(0)
    expect(errorOf(untrusted).code).toBe('ERR_JWKS_FETCH')
    expect(errorOf(untrusted).message).toContain(`JWKS ${jwks}: fetch failed`)

    const trusted = await runCommand(Decode, ['--jwks', jwks, '--cacert', CA, token, '--json'])
    expect(trusted.exitCode).toBe(0)
    expect((JSON.parse(trusted.stdout) as {verified: boolean}).verified).toBe(true)

    const insecure = await runCommand(Decode, ['--jwks', jwks, '--insecure', token, '--json'])
    expect(insecure.exitCode).toBe(0)
    expect(insecure.stderr).toContain('--insecure: the TLS certificate of the --jwks URL is NOT verified')
    expect(tx.hits.get('/jwks')).toBe(2)
  })

  it('decode --issuer https: discovery and the discovered jwks_uri both trust --cacert', async () => {
    const key = generatePeerKey('ES256', 'tls-key')
    const tx = await startHttpsTransmitter(key)
    const token = signSet(makeSetClaims({iss: tx.issuer}), key)

    const untrusted = await runCommand(Decode, ['--issuer', tx.issuer, token, '--json'])
    expect(errorOf(untrusted).code).toBe('ERR_TLS')
    expect(errorOf(untrusted).message).toContain('use --cacert FILE to trust a private CA')

    const trusted = await runCommand(Decode, ['--issuer', tx.issuer, '--cacert', CA, token, '--json'])
    expect(trusted.exitCode).toBe(0)
    expect((JSON.parse(trusted.stdout) as {verified: boolean}).verified).toBe(true)
    expect(tx.hits.get('/.well-known/ssf-configuration')).toBe(1)
    expect(tx.hits.get('/jwks')).toBe(1)

    const insecure = await runCommand(Decode, ['--issuer', tx.issuer, '--insecure', token, '--json'])
    expect(insecure.exitCode).toBe(0)
    // One warning for the run (discovery), not one per fetch.
    expect(insecure.stderr.match(/--insecure/g)).toHaveLength(1)
  })

  it('prepareVerification: no dispatcher without TLS flags; a bad CA file is ERR_CONFIG', async () => {
    const warnings: string[] = []
    const plain = await prepareVerification({jwks: 'https://127.0.0.1:1/jwks'}, {warn: (m) => warnings.push(m)})
    expect(plain.dispatcher).toBeUndefined()
    await plain.close()
    const error = await rejection(prepareVerification({cacert: join(TLS_DIR, 'README.md'), jwks: 'https://127.0.0.1:1/jwks'}, {warn: (m) => warnings.push(m)}))
    expect(error.code).toBe('ERR_CONFIG')
    expect(error.message).toBe(`the CA file ${join(TLS_DIR, 'README.md')} holds no PEM certificate`)
    const file = await prepareVerification({cacert: join(TLS_DIR, 'README.md'), jwks: 'keys/jwks.json'}, {warn: (m) => warnings.push(m)})
    expect(file.dispatcher).toBeUndefined()
    const withCa = await prepareVerification({cacert: CA, jwks: 'https://127.0.0.1:1/jwks'}, {warn: (m) => warnings.push(m)})
    expect(withCa.dispatcher).toBeDefined()
    await withCa.close()
    await withCa.close()
    expect(warnings).toEqual([])
  })
})
