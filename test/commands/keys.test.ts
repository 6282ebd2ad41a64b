import {mkdtempSync, readFileSync, statSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'

import {describe, expect, it} from 'vitest'

import KeysGenerate from '../../src/commands/keys/generate.js'
import {runCommand} from '../helpers/cli.js'

describe('keys generate', () => {
  it('writes the private JWK and PEM (0600) and the public JWKS, and prints the paths', async () => {
    const dir = join(mkdtempSync(join(tmpdir(), 'pushpull-keys-')), 'nested')
    const result = await runCommand(KeysGenerate, ['--out', dir, '--kid', 'k1'])
    expect(result.exitCode).toBe(0)
    const paths = [join(dir, 'private.jwk.json'), join(dir, 'private.pem'), join(dir, 'jwks.json')]
    expect(result.stdout).toBe(`${paths.join('\n')}\n`)
    expect(result.stderr).toContain('ES256 key pair, kid k1')
    expect(statSync(paths[0] as string).mode & 0o777).toBe(0o600)
    expect(statSync(paths[1] as string).mode & 0o777).toBe(0o600)
    const jwks = JSON.parse(readFileSync(paths[2] as string, 'utf8')) as {keys: Array<Record<string, unknown>>}
    expect(jwks.keys).toHaveLength(1)
    expect(jwks.keys[0]).toMatchObject({alg: 'ES256', crv: 'P-256', kid: 'k1', kty: 'EC', use: 'sig'})
    expect(jwks.keys[0]).not.toHaveProperty('d')
    expect(readFileSync(paths[1] as string, 'utf8')).toMatch(/^-----BEGIN PRIVATE KEY-----/)
  })

  it('refuses to overwrite unless --force, and prints a JSON object with --json', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'pushpull-keys-'))
    expect((await runCommand(KeysGenerate, ['--out', dir])).exitCode).toBe(0)
    const again = await runCommand(KeysGenerate, ['--out', dir, '--alg', 'EdDSA'])
    expect(again.exitCode).toBe(2)
    expect(again.error?.message).toBe(`${join(dir, 'jwks.json')} already exists; pass --force to overwrite it [ERR_USAGE]`)
    const forced = await runCommand(KeysGenerate, ['--out', dir, '--alg', 'EdDSA', '--force', '--json'])
    expect(forced.exitCode).toBe(0)
    const record = JSON.parse(forced.stdout) as Record<string, string>
    expect(record).toMatchObject({alg: 'EdDSA', jwks: join(dir, 'jwks.json'), privateJwk: join(dir, 'private.jwk.json'), privatePem: join(dir, 'private.pem')})
    expect(record.kid).toEqual(expect.any(String))
    expect(JSON.parse(readFileSync(join(dir, 'jwks.json'), 'utf8'))).toMatchObject({keys: [{crv: 'Ed25519', kid: record.kid}]})
  })

  it('refuses an algorithm it cannot generate', async () => {
    const result = await runCommand(KeysGenerate, ['--alg', 'HS256'])
    expect(result.exitCode).toBe(2)
    expect(result.error?.message).toContain('Expected --alg=HS256 to be one of: RS256, PS256, ES256, ES384, EdDSA')
  })
})
