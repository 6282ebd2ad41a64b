import {mkdtempSync, readFileSync, writeFileSync} from 'node:fs'
import {createServer} from 'node:http'
import {tmpdir} from 'node:os'
import {join} from 'node:path'

import {describe, expect, it} from 'vitest'

import Decode from '../../src/commands/decode.js'
import {jsonLines, ROOT, runCommand} from '../helpers/cli.js'
import {generatePeerKey, makeSetClaims, publicJwks, signSet, unsignedSet} from '../helpers/peers/set-token.js'
import {listenLoopback} from '../helpers/ports.js'

const VECTOR = readFileSync(join(ROOT, 'test', 'fixtures', 'rfc8935-push-example.jwt'), 'utf8').trim()
const RISC_DISABLED = 'https://schemas.openid.net/secevent/risc/event-type/account-disabled'
const dir = mkdtempSync(join(tmpdir(), 'pushpull-decode-'))
const key = generatePeerKey('ES256', 'k1')
const JWKS = join(dir, 'jwks.json')
writeFileSync(JWKS, JSON.stringify(publicJwks([key])))

function expectVectorRecord(record: Record<string, unknown>): void {
  expect(record).toMatchObject({
    claims: {
      aud: '636C69656E745F6964',
      events: {[RISC_DISABLED]: {reason: 'hijacking'}},
      iat: 1_508_184_845,
      iss: 'https://idp.example.com/',
      jti: '756E69717565206964656E746966696572',
    },
    events: [{shortName: 'risc.account-disabled', uri: RISC_DISABLED}],
    header: {alg: 'HS256', typ: 'secevent+jwt'},
    unverifiedReason: 'no verification key configured',
    verified: false,
  })
}

describe('decode: the RFC 8935 example', () => {
  it('decodes from an argument (human output)', async () => {
    const result = await runCommand(Decode, [VECTOR, '--no-color'])
    expect(result.exitCode).toBe(0)
    expect(result.stdout).toContain('UNVERIFIED no verification key configured: pass --jwks, --verify-key or --secret to check the signature')
    expect(result.stdout).toContain('iss    https://idp.example.com/')
    expect(result.stdout).toContain('jti    756E69717565206964656E746966696572')
    expect(result.stdout).toContain('iat    1508184845 (2017-10-16T20:14:05.000Z)')
    expect(result.stdout).toContain('aud    636C69656E745F6964')
    expect(result.stdout).toContain(`risc.account-disabled ${RISC_DISABLED}`)
    expect(result.stdout).toContain('"reason": "hijacking"')
    expect(result.stdout).toContain('error   sub-id-missing at claims.sub_id')
    expect(result.stderr).toContain('signatures are NOT checked')
  })

  it('decodes from stdin, and from "-", as one JSON line', async () => {
    for (const argv of [['--json'], ['-', '--json']]) {
      const result = await runCommand(Decode, argv, {stdin: `${VECTOR}\n`})
      expect(result.exitCode).toBe(0)
      const lines = jsonLines(result.stdout) as Array<Record<string, unknown>>
      expect(lines).toHaveLength(1)
      expectVectorRecord(lines[0] as Record<string, unknown>)
      expect(lines[0]).not.toHaveProperty('key')
    }
  })

  it('decodes the sets of a poll response, keeping the key', async () => {
    const result = await runCommand(Decode, ['--json'], {stdin: readFileSync(join(ROOT, 'test/fixtures/poll-response.json'), 'utf8')})
    expect(result.exitCode).toBe(0)
    const [record] = jsonLines(result.stdout) as Array<Record<string, unknown>>
    expectVectorRecord(record as Record<string, unknown>)
    expect(record?.key).toBe('756E69717565206964656E746966696572')
  })

  it('--strict makes lint errors fail with ERR_SET_LINT', async () => {
    const result = await runCommand(Decode, [VECTOR, '--strict'])
    expect(result.exitCode).toBe(6)
    expect(result.error?.message).toBe(
      'the SET breaks the ssf profile (--strict): error sub-id-missing at claims.sub_id: top-level "sub_id" is missing; SSF puts the subject identifier there [ERR_SET_LINT]',
    )
  })
})

describe('decode: verification', () => {
  it('says VERIFIED with a JWKS file', async () => {
    const result = await runCommand(Decode, [signSet(makeSetClaims(), key), '--jwks', JWKS, '--no-color'])
    expect(result.exitCode).toBe(0)
    expect(result.stdout).toContain(`VERIFIED ES256 kid k1 (key from ${JWKS})`)
    expect(result.stdout).not.toContain('UNVERIFIED')
    expect(result.stderr).toBe('')
  })

  it('ignores PUSHPULL_SSF_ISSUER (it is for the ssf management commands), so --jwks still works', async () => {
    process.env.PUSHPULL_SSF_ISSUER = 'https://tx.example'
    try {
      const result = await runCommand(Decode, [signSet(makeSetClaims(), key), '--jwks', JWKS, '--no-color'])
      expect(result.exitCode).toBe(0)
      expect(result.stdout).toContain(`VERIFIED ES256 kid k1 (key from ${JWKS})`)
    } finally {
      delete process.env.PUSHPULL_SSF_ISSUER
    }
  })

  const flip = (token: string): string => {
    const [h, p, s] = token.split('.') as [string, string, string]
    const bytes = Buffer.from(s, 'base64url')
    bytes[0] = (bytes[0] ?? 0) ^ 0xff
    return `${h}.${p}.${bytes.toString('base64url')}`
  }

  const now = Math.floor(Date.now() / 1000)
  const cases: Array<[string, string, string[], string, string]> = [
    ['flipped signature byte', flip(signSet(makeSetClaims(), key)), [], 'ERR_SET_SIGNATURE', `the SET signature does not verify with the key from ${JWKS}`],
    ['wrong key', signSet(makeSetClaims(), generatePeerKey('ES256', 'k1')), [], 'ERR_SET_SIGNATURE', `the SET signature does not verify with the key from ${JWKS}`],
    ['unknown kid', signSet(makeSetClaims(), generatePeerKey('ES256', 'k7')), [], 'ERR_SET_KID_UNKNOWN', `no key with kid "k7" in ${JWKS}`],
    ['alg none', unsignedSet(makeSetClaims()), [], 'ERR_SET_UNSIGNED', 'the SET is unsigned (alg "none") and unsigned SETs are not allowed'],
    ['alg not allowed', signSet(makeSetClaims(), key), ['--alg', 'RS256'], 'ERR_SET_ALG_NOT_ALLOWED', 'algorithm ES256 is not allowed; allowed: RS256'],
    ['wrong typ', signSet(makeSetClaims(), key, {typ: 'JWT'}), [], 'ERR_SET_TYP', 'the SET header "typ" is "JWT", not "secevent+jwt"'],
    ['missing typ', signSet(makeSetClaims(), key, {typ: null}), [], 'ERR_SET_TYP', 'the SET header has no "typ"; expected "secevent+jwt"'],
    ['unknown crit', signSet(makeSetClaims(), key, {header: {crit: ['x-ext']}}), [], 'ERR_SET_CRIT', 'the SET header marks parameters critical that pushpull does not understand: x-ext'],
    ['wrong iss', signSet(makeSetClaims(), key), ['--expect-iss', 'https://idp.example'], 'ERR_SET_ISSUER', 'the SET issuer "https://peer.example" is not the expected "https://idp.example"'],
    ['wrong aud', signSet(makeSetClaims(), key), ['--expect-aud', 'https://me.example'], 'ERR_SET_AUDIENCE', 'the SET audience https://receiver.example does not include the expected "https://me.example"'],
    ['missing aud', signSet(makeSetClaims({aud: undefined}), key), ['--expect-aud', 'https://me.example'], 'ERR_SET_AUDIENCE', 'the SET has no "aud"; expected "https://me.example"'],
    ['exp past', signSet(makeSetClaims({exp: 1_000_000_000}), key), [], 'ERR_SET_EXPIRED', 'the SET expired at 2001-09-09T01:46:40.000Z'],
    ['iat future', signSet(makeSetClaims({iat: now + 7200}), key), [], 'ERR_SET_NOT_YET_VALID', `the SET "iat" ${new Date((now + 7200) * 1000).toISOString()} is more than 60 s in the future`],
    ['JWE', 'eyJhbGciOiJSU0EtT0FFUCJ9.a.b.c.d', [], 'ERR_SET_ENCRYPTED', 'the SET is encrypted (a 5-part JWE); encrypted SETs need a decryption key'],
    ['too large', signSet(makeSetClaims(), key), ['--max-set-bytes', '100'], 'ERR_SET_TOO_LARGE', 'the SET is larger than the 100-byte limit'],
    ['malformed base64url', 'ab!c.def.ghi', [], 'ERR_SET_MALFORMED', 'the SET header is not valid base64url'],
    ['payload not JSON', `eyJhbGciOiJFUzI1NiJ9.${Buffer.from('{nope').toString('base64url')}.c2ln`, [], 'ERR_SET_MALFORMED', 'the SET payload is not JSON'],
    ['jti missing', signSet(makeSetClaims({jti: undefined}), key), [], 'ERR_SET_CLAIMS', 'the SET has no "jti"'],
    ['events {}', signSet(makeSetClaims({events: {}}), key), [], 'ERR_SET_CLAIMS', 'the SET "events" claim is empty; a SET carries at least one event'],
  ]

  it.each(cases)('fails on %s with exit 6 naming the reason', async (_name, token, extra, code, message) => {
    const result = await runCommand(Decode, [token, '--jwks', JWKS, ...extra])
    expect(result.exitCode).toBe(6)
    expect(result.error?.message).toBe(`${message} [${code}]`)
    const json = await runCommand(Decode, [token, '--jwks', JWKS, '--json', ...extra])
    expect(json.exitCode).toBe(6)
    const lines = jsonLines(json.stdout)
    expect(lines).toHaveLength(1)
    expect(lines).toMatchObject([{error: {code, exitCode: 6, message}}])
  })

  it('accepts application/secevent+jwt', async () => {
    const result = await runCommand(Decode, [signSet(makeSetClaims(), key, {typ: 'application/secevent+jwt'}), '--jwks', JWKS, '--json'])
    expect(result.exitCode).toBe(0)
    expect(jsonLines(result.stdout)).toMatchObject([{verified: true}])
  })

  it('accepts alg none with --allow-unsigned, labelled UNVERIFIED', async () => {
    const result = await runCommand(Decode, [unsignedSet(makeSetClaims()), '--allow-unsigned', '--no-color'])
    expect(result.exitCode).toBe(0)
    expect(result.stdout).toContain('UNVERIFIED unsigned SET (alg "none") accepted by request')
  })

  it('verifies HS256 with --secret (or PUSHPULL_SECRET)', async () => {
    const text = {alg: 'HS256' as const, kid: 'h', secret: Buffer.from('correct horse battery staple')}
    const textToken = signSet(makeSetClaims(), text)
    const ok = await runCommand(Decode, [textToken, '--secret', 'correct horse battery staple', '--json'])
    expect(jsonLines(ok.stdout)).toMatchObject([{verified: true}])
    const bad = await runCommand(Decode, [textToken, '--secret', 'not-the-secret'])
    expect(bad.exitCode).toBe(6)
    expect(bad.error?.message).toBe('the SET signature does not verify with the key from the HMAC secret [ERR_SET_SIGNATURE]')
    expect(`${bad.stdout}${bad.stderr}`).not.toContain('not-the-secret')
    process.env.PUSHPULL_SECRET = 'correct horse battery staple'
    try {
      const fromEnv = await runCommand(Decode, [textToken, '--json'])
      expect(jsonLines(fromEnv.stdout)).toMatchObject([{verified: true}])
    } finally {
      delete process.env.PUSHPULL_SECRET
    }
  })

  it('reports each of several SETs and exits non-zero if any failed', async () => {
    const good = signSet(makeSetClaims({jti: 'g1'}), key)
    const bad = signSet(makeSetClaims({jti: 'b1'}), generatePeerKey('ES256', 'k1'))
    const stdin = `${good}\n${bad}\n  ${signSet(makeSetClaims({jti: 'g2'}), key)}\n`
    const human = await runCommand(Decode, ['--jwks', JWKS, '--no-color'], {stdin})
    expect(human.exitCode).toBe(6)
    expect(human.stdout).toContain('SET 1 of 3')
    expect(human.stdout).toContain(`SET 2 of 3\nFAILED the SET signature does not verify with the key from ${JWKS} [ERR_SET_SIGNATURE]`)
    expect(human.stdout).toContain('SET 3 of 3')
    expect(human.error?.message).toBe(`1 of 3 SETs failed (SET 2: ERR_SET_SIGNATURE); first: the SET signature does not verify with the key from ${JWKS} [ERR_SET_SIGNATURE]`)

    const json = await runCommand(Decode, ['--jwks', JWKS, '--json'], {stdin})
    expect(json.exitCode).toBe(6)
    const lines = jsonLines(json.stdout) as Array<Record<string, unknown>>
    expect(lines).toHaveLength(4)
    expect(lines[0]).toMatchObject({claims: {jti: 'g1'}, index: 0, verified: true})
    expect(lines[1]).toEqual({error: {code: 'ERR_SET_SIGNATURE', exitCode: 6, message: `the SET signature does not verify with the key from ${JWKS}`}, index: 1})
    expect(lines[2]).toMatchObject({claims: {jti: 'g2'}, index: 2, verified: true})
    expect(lines[3]).toMatchObject({error: {code: 'ERR_SET_SIGNATURE', exitCode: 6}})
  })

  it('refuses a sets key that differs from the jti', async () => {
    const token = signSet(makeSetClaims({jti: 'real'}), key)
    const stdin = JSON.stringify({sets: {other: token, real: token}})
    const result = await runCommand(Decode, ['--jwks', JWKS, '--json'], {stdin})
    expect(result.exitCode).toBe(6)
    const lines = jsonLines(result.stdout) as Array<Record<string, unknown>>
    expect(lines[0]).toEqual({error: {code: 'ERR_SET_CLAIMS', exitCode: 6, message: 'the "sets" key "other" does not equal the SET\'s jti "real"'}, index: 0, key: 'other'})
    expect(lines[1]).toMatchObject({key: 'real', verified: true})
  })

  it('--profile caep-interop adds the RS256 finding', async () => {
    const token = signSet(makeSetClaims(), key)
    const ssf = jsonLines((await runCommand(Decode, [token, '--json'])).stdout) as Array<{findings: Array<{code: string}>}>
    const caep = jsonLines((await runCommand(Decode, [token, '--json', '--profile', 'caep-interop'])).stdout) as Array<{findings: Array<{code: string}>}>
    expect(ssf[0]?.findings.map((f) => f.code)).not.toContain('alg-not-rs256')
    expect(caep[0]?.findings.map((f) => f.code)).toContain('alg-not-rs256')
  })

  it('fails with a usage error on empty input and an unreadable key file', async () => {
    const empty = await runCommand(Decode, [], {stdin: '\n'})
    expect(empty.exitCode).toBe(2)
    expect(empty.error?.message).toBe('standard input holds no token [ERR_USAGE]')
    const missing = await runCommand(Decode, [VECTOR, '--verify-key', join(dir, 'nope.pem')])
    expect(missing.exitCode).toBe(3)
    expect(missing.error?.message).toBe(`${join(dir, 'nope.pem')}: no such file [ERR_KEY_INVALID]`)
  })
})

describe('decode --jwks-max-keys', () => {
  it('refuses a JWKS file or URL with more keys than the limit (exit 3 / 4)', async () => {
    const jwks = publicJwks([key])
    const three = join(dir, 'three.json')
    writeFileSync(three, JSON.stringify({keys: [jwks.keys[0], jwks.keys[0], jwks.keys[0]]}))
    const token = signSet(makeSetClaims(), key)
    expect((await runCommand(Decode, [token, '--jwks', three, '--jwks-max-keys', '3', '--json'])).exitCode).toBe(0)
    const file = await runCommand(Decode, [token, '--jwks', three, '--jwks-max-keys', '2'])
    expect(file.exitCode).toBe(3)
    expect(file.error?.message).toBe(`${three}: the JWKS holds 3 keys, over the limit of 2 [ERR_KEY_INVALID]`)
    const viaKey = await runCommand(Decode, [token, '--verify-key', three, '--jwks-max-keys', '2'])
    expect(viaKey.error?.message).toBe(`${three}: the JWKS holds 3 keys, over the limit of 2 [ERR_KEY_INVALID]`)

    const server = createServer((_req, res) => {
      res.setHeader('content-type', 'application/json')
      res.end(readFileSync(three))
    })
    const url = `http://127.0.0.1:${await listenLoopback(server)}/jwks.json`
    try {
      const fetched = await runCommand(Decode, [token, '--jwks', url, '--jwks-max-keys', '2'])
      expect(fetched.exitCode).toBe(4)
      expect(fetched.error?.message).toBe(`JWKS ${url}: ${url}: the JWKS holds 3 keys, over the limit of 2 [ERR_JWKS_FETCH]`)
    } finally {
      server.closeAllConnections()
      await new Promise((resolve) => server.close(resolve))
    }
  })
})

describe('decode --jwks URL', () => {
  it('verifies with a JWKS served over HTTP, and exits 4 when the URL serves HTML', async () => {
    let html = false
    const server = createServer((_req, res) => {
      res.setHeader('content-type', html ? 'text/html' : 'application/json')
      res.end(html ? '<html></html>' : JSON.stringify(publicJwks([key])))
    })
    const url = `http://127.0.0.1:${await listenLoopback(server)}/jwks.json`
    try {
      const ok = await runCommand(Decode, [signSet(makeSetClaims(), key), '--jwks', url, '--json'])
      expect(ok.exitCode).toBe(0)
      expect(jsonLines(ok.stdout)).toMatchObject([{verified: true}])
      html = true
      const bad = await runCommand(Decode, [signSet(makeSetClaims(), key), '--jwks', url])
      expect(bad.exitCode).toBe(4)
      expect(bad.error?.message).toBe(`JWKS ${url}: the server answered with HTML, not a JWKS [ERR_JWKS_FETCH]`)
    } finally {
      server.closeAllConnections()
      await new Promise((resolve) => server.close(resolve))
    }
  })
})
