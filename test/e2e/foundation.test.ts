import {existsSync, mkdtempSync, readFileSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'

import {beforeAll, describe, expect, it} from 'vitest'

import {jsonLines, ROOT, spawnCli} from '../helpers/cli.js'

const VECTOR = readFileSync(join(ROOT, 'test', 'fixtures', 'rfc8935-push-example.jwt'), 'utf8')

describe('bin/run.js end to end', () => {
  beforeAll(() => {
    if (!existsSync(join(ROOT, 'dist', 'commands', 'decode.js'))) throw new Error('dist/ is missing: run `npm run build` before the e2e tests')
  })

  it('--help lists the commands', async () => {
    const result = await spawnCli(['--help'])
    expect(result.exitCode).toBe(0)
    expect(result.stdout).toContain('decode')
    expect(result.stdout).toContain('mint')
    expect(result.stdout).toMatch(/^ {2}keys {2}/m)
    const keysHelp = await spawnCli(['keys', '--help'])
    expect(keysHelp.stdout).toContain('keys generate')
    const decodeHelp = await spawnCli(['decode', '--help'])
    expect(decodeHelp.exitCode).toBe(0)
    expect(decodeHelp.stdout).toContain('--jwks=URL|FILE')
    expect(decodeHelp.stdout).toContain('PUSHPULL_SECRET')
  })

  it('decodes the RFC 8935 example from a stdin pipe', async () => {
    const result = await spawnCli(['decode'], {stdin: VECTOR})
    expect(result.exitCode).toBe(0)
    expect(result.stdout).toContain('UNVERIFIED')
    expect(result.stdout).toContain('iss    https://idp.example.com/')
    expect(result.stderr).toContain('signatures are NOT checked')
  })

  it('keys generate -> mint -> decode: --json lines parse, exit 0; a tampered SET exits 6; a bad flag exits 2', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'pushpull-e2e-'))
    const keys = await spawnCli(['keys', 'generate', '--out', dir, '--json'])
    expect(keys.exitCode).toBe(0)
    expect(jsonLines(keys.stdout)).toMatchObject([{alg: 'ES256', jwks: join(dir, 'jwks.json')}])

    const mint = await spawnCli(['mint', '--signing-key', join(dir, 'private.jwk.json'), '--iss', 'https://idp.example', '--event', 'caep.session-revoked', '--subject', 'email:ana@example.com', '--count', '3', '--json'])
    expect(mint.exitCode).toBe(0)
    const minted = jsonLines(mint.stdout) as Array<{token: string}>
    expect(minted).toHaveLength(3)

    const tokens = minted.map((m) => m.token).join('\n')
    const decode = await spawnCli(['decode', '--jwks', join(dir, 'jwks.json'), '--json'], {stdin: tokens})
    expect(decode.exitCode).toBe(0)
    expect(jsonLines(decode.stdout)).toMatchObject([{verified: true}, {verified: true}, {verified: true}])

    const first = minted[0]?.token ?? ''
    const tampered = `${first.slice(0, -4)}${first.endsWith('AAAA') ? 'BBBB' : 'AAAA'}`
    const bad = await spawnCli(['decode', tampered, '--jwks', join(dir, 'jwks.json')])
    expect(bad.exitCode).toBe(6)
    expect(bad.stderr).toContain('[ERR_SET_SIGNATURE]')

    const usage = await spawnCli(['decode', '--no-such-flag'])
    expect(usage.exitCode).toBe(2)
  })
})
