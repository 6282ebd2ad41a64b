import {mkdtempSync, writeFileSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'

import {describe, expect, it} from 'vitest'

import Decode from '../../src/commands/decode.js'
import KeysGenerate from '../../src/commands/keys/generate.js'
import Mint from '../../src/commands/mint.js'
import {jsonLines, runCommand} from '../helpers/cli.js'
import {decodeSetUnverified} from '../helpers/peers/set-token.js'

const CAEP = 'https://schemas.openid.net/secevent/caep/event-type/'
const dir = mkdtempSync(join(tmpdir(), 'pushpull-mint-'))
const SECRET = ['--secret', 'a-test-secret-of-some-length']
const ISS = ['--iss', 'https://idp.example', '--aud', 'https://rp.example']

type Minted = {jti: string; token: string; claims: Record<string, unknown>}

describe('round trip: keys generate -> mint -> decode --jwks', () => {
  it.each(['RS256', 'PS256', 'ES256', 'ES384', 'EdDSA'])('%s says VERIFIED and exits 0', async (alg) => {
    const out = join(dir, alg)
    expect((await runCommand(KeysGenerate, ['--alg', alg, '--out', out])).exitCode).toBe(0)
    for (const keyFile of ['private.jwk.json', 'private.pem']) {
      // A PEM says nothing about the algorithm (RSA defaults to RS256): name it; the JWK carries "alg".
      const algFlag = keyFile.endsWith('.pem') ? ['--alg', alg] : []
      const minted = await runCommand(Mint, ['--signing-key', join(out, keyFile), ...algFlag, ...ISS, '--event', 'caep.session-revoked', '--subject', 'email:ana@example.com'])
      expect(minted.exitCode).toBe(0)
      const token = minted.stdout.trim()
      expect(decodeSetUnverified(token).header).toMatchObject({alg, typ: 'secevent+jwt'})
      const decoded = await runCommand(Decode, [token, '--jwks', join(out, 'jwks.json'), '--expect-iss', 'https://idp.example', '--expect-aud', 'https://rp.example', '--no-color'])
      expect(decoded.exitCode).toBe(0)
      expect(decoded.stdout).toMatch(new RegExp(`^VERIFIED ${alg} kid `))
      expect(decoded.stdout).toContain('caep.session-revoked')
      expect(decoded.stdout).toContain('sub_id email')
    }
  })

  it('HS256 with a secret', async () => {
    const minted = await runCommand(Mint, [...SECRET, ...ISS, '--event', 'caep.session-revoked', '--subject', 'email:ana@example.com'])
    const decoded = await runCommand(Decode, [minted.stdout.trim(), ...SECRET, '--json'])
    expect(decoded.exitCode).toBe(0)
    expect(jsonLines(decoded.stdout)).toMatchObject([{findings: [], header: {alg: 'HS256'}, verified: true}])
  })
})

describe('mint', () => {
  it('builds a SET from --event, --subject and --set', async () => {
    const result = await runCommand(Mint, [
      ...SECRET,
      ...ISS,
      '--event', 'caep.credential-change',
      '--subject', 'email:ana@example.com',
      '--set', 'change_type=update',
      '--set', 'credential_type=password',
      '--set', 'reason_admin.en=rotated',
      '--txn', 'tx-1',
      '--kid', 'hs-1',
      '--json',
    ])
    expect(result.exitCode).toBe(0)
    const [record] = jsonLines(result.stdout) as Minted[]
    expect(record?.claims).toMatchObject({
      aud: 'https://rp.example',
      events: {[`${CAEP}credential-change`]: {change_type: 'update', credential_type: 'password', reason_admin: {en: 'rotated'}}},
      iss: 'https://idp.example',
      sub_id: {email: 'ana@example.com', format: 'email'},
      txn: 'tx-1',
    })
    expect(record?.jti).toBe(record?.claims.jti)
    expect(decodeSetUnverified(record?.token ?? '').header).toEqual({alg: 'HS256', kid: 'hs-1', typ: 'secevent+jwt'})
  })

  it('--count N makes N distinct SETs; several --aud make an array', async () => {
    const result = await runCommand(Mint, [...SECRET, '--iss', 'i', '--aud', 'a', '--aud', 'b', '--event', 'caep.session-revoked', '--count', '5'])
    const tokens = result.stdout.trim().split('\n')
    expect(tokens).toHaveLength(5)
    const claims = tokens.map((t) => decodeSetUnverified(t).claims)
    expect(new Set(claims.map((c) => c.jti)).size).toBe(5)
    expect(claims[0]?.aud).toEqual(['a', 'b'])
  })

  it('reads event files: a full claims object, and {event, subject, payload}', async () => {
    const full = join(dir, 'full.json')
    writeFileSync(full, JSON.stringify({aud: 'file-aud', events: {[`${CAEP}session-revoked`]: {}}, iss: 'https://file.example', jti: 'fixed-1', sub_id: {format: 'opaque', id: 's1'}, toe: 100}, null, 2))
    const short = join(dir, 'short.json')
    writeFileSync(short, JSON.stringify({event: 'risc.account-disabled', payload: {reason: 'hijacking'}, subject: 'iss_sub:https://idp.example|1234'}))
    const result = await runCommand(Mint, [...SECRET, full, short, '--iss', 'https://flag.example', '--json'])
    expect(result.exitCode).toBe(0)
    const [a, b] = jsonLines(result.stdout) as Minted[]
    expect(a?.claims).toMatchObject({aud: 'file-aud', iss: 'https://flag.example', jti: 'fixed-1', sub_id: {format: 'opaque', id: 's1'}, toe: 100})
    expect(b?.claims).toMatchObject({
      events: {'https://schemas.openid.net/secevent/risc/event-type/account-disabled': {reason: 'hijacking'}},
      sub_id: {format: 'iss_sub', iss: 'https://idp.example', sub: '1234'},
    })
  })

  it('reads NDJSON on stdin, one object per line', async () => {
    const ndjson = [
      JSON.stringify({event: 'caep.session-revoked', iss: 'https://first.example', subject: 'email:a@example.com'}),
      '',
      JSON.stringify({event: 'caep.session-revoked', iss: 'https://line.example', subject: {email: 'b@example.com', format: 'email'}}),
    ].join('\n')
    const result = await runCommand(Mint, [...SECRET, '--json'], {stdin: `${ndjson}\n`})
    expect(result.exitCode).toBe(0)
    const records = jsonLines(result.stdout) as Minted[]
    expect(records).toHaveLength(2)
    expect(records[0]?.claims).toMatchObject({iss: 'https://first.example', sub_id: {email: 'a@example.com', format: 'email'}})
    expect(records[1]?.claims).toMatchObject({iss: 'https://line.example', sub_id: {email: 'b@example.com'}})
  })

  it('needs an issuer', async () => {
    const result = await runCommand(Mint, [...SECRET], {stdin: `${JSON.stringify({event: 'caep.session-revoked'})}\n`})
    expect(result.exitCode).toBe(2)
    expect(result.error?.message).toBe('stdin line 1: no issuer; pass --iss or put "iss" in the input [ERR_USAGE]')
  })

  it('reads a pretty-printed object on stdin', async () => {
    const stdin = JSON.stringify({event: 'caep.session-revoked', subject: 'opaque:x'}, null, 2)
    const result = await runCommand(Mint, [...SECRET, '--iss', 'i', '-'], {stdin})
    expect(result.exitCode).toBe(0)
    expect(result.stdout.trim().split('\n')).toHaveLength(1)
  })

  it('refuses to mint without a key unless --unsigned', async () => {
    const result = await runCommand(Mint, ['--iss', 'i', '--event', 'caep.session-revoked'])
    expect(result.exitCode).toBe(2)
    expect(result.error?.message).toBe('no signing key: pass --signing-key FILE or --secret (or PUSHPULL_SECRET); --unsigned mints unsigned SETs for tests [ERR_USAGE]')
    const unsigned = await runCommand(Mint, ['--iss', 'i', '--event', 'caep.session-revoked', '--subject', 'opaque:x', '--unsigned'])
    expect(unsigned.exitCode).toBe(0)
    expect(unsigned.stderr).toContain('minting UNSIGNED SETs')
    const token = unsigned.stdout.trim()
    expect(decodeSetUnverified(token).header).toEqual({alg: 'none', typ: 'secevent+jwt'})
    expect((await runCommand(Decode, [token])).exitCode).toBe(6)
    expect((await runCommand(Decode, [token, '--allow-unsigned'])).exitCode).toBe(0)
  })

  it('refuses ready-made tokens, bad events, bad subjects and --count with a fixed jti', async () => {
    const token = await runCommand(Mint, [...SECRET, '--iss', 'i', '--event', 'caep.session-revoked'])
    const passed = await runCommand(Mint, [...SECRET], {stdin: token.stdout})
    expect(passed.exitCode).toBe(2)
    expect(passed.error?.message).toBe('stdin line 1: holds a ready-made compact SET; mint builds new SETs (send passes tokens through) [ERR_USAGE]')

    const missing = await runCommand(Mint, [...SECRET, '--iss', 'i', '--event', 'caep.credential-change', '--set', 'change_type=update'])
    expect(missing.exitCode).toBe(2)
    expect(missing.error?.message).toMatch(/^--event: error member-missing at claims\.events\..*credential_type.* \[ERR_EVENT_INVALID\]$/)

    const unknown = await runCommand(Mint, [...SECRET, '--iss', 'i', '--event', 'caep.no-such-thing'])
    expect(unknown.exitCode).toBe(2)
    expect(unknown.error?.message).toContain('[ERR_EVENT_INVALID]')

    const subject = await runCommand(Mint, [...SECRET, '--iss', 'i', '--event', 'caep.session-revoked', '--subject', 'fax:123'])
    expect(subject.exitCode).toBe(2)
    expect(subject.error?.message).toContain('unknown subject format "fax"')
    expect(subject.error?.message).toContain('[ERR_SUBJECT_INVALID]')

    const fixed = await runCommand(Mint, [...SECRET, '--iss', 'i', '--count', '2'], {stdin: JSON.stringify({event: 'caep.session-revoked', jti: 'j'})})
    expect(fixed.exitCode).toBe(2)
    expect(fixed.error?.message).toBe('stdin line 1: --count 2 needs distinct jti values, but the input fixes "jti" [ERR_USAGE]')

    const bad = await runCommand(Mint, [...SECRET, '--iss', 'i'], {stdin: '{"event": \n'})
    expect(bad.exitCode).toBe(2)
    expect(bad.error?.message).toBe('stdin line 1: not valid JSON and not a compact SET [ERR_USAGE]')

    const neither = await runCommand(Mint, [...SECRET, '--iss', 'i'], {stdin: '{"foo": 1}\n'})
    expect(neither.error?.message).toBe('stdin line 1: an input object needs "events" (a full claims object) or "event" (a short name or URI) [ERR_USAGE]')

    const both = await runCommand(Mint, [...SECRET, '--iss', 'i', '--event', 'caep.session-revoked', join(dir, 'short.json')])
    expect(both.error?.message).toBe('give either --event or input files, not both [ERR_USAGE]')
  })

  it('refuses a public key as signing key and a missing key file', async () => {
    const out = join(dir, 'pub')
    await runCommand(KeysGenerate, ['--out', out])
    const pub = await runCommand(Mint, ['--signing-key', join(out, 'jwks.json'), '--iss', 'i', '--event', 'caep.session-revoked'])
    expect(pub.exitCode).toBe(3)
    expect(pub.error?.message).toBe(`${join(out, 'jwks.json')}: a JWKS used for signing must hold exactly one private key, found 0 [ERR_KEY_INVALID]`)
  })
})
