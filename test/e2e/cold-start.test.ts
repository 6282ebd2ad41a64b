/**
 * bin/run.js serves `pushpull decode TOKEN` without loading oclif. These tests prove the fast
 * path prints exactly what the oclif command prints (stdout, stderr, exit code, with and without
 * colour) and that everything else still goes to oclif. Needs `npm run build` first.
 */
import {existsSync, mkdtempSync, readFileSync, rmSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'

import {describe, expect, it} from 'vitest'

import {ROOT, spawnCli} from '../helpers/cli.js'
import {generatePeerKey, makeSetClaims, signSet, unsignedSet} from '../helpers/peers/set-token.js'

const FIXTURE = readFileSync(join(ROOT, 'test', 'fixtures', 'rfc8935-push-example.jwt'), 'utf8').trim()
const key = generatePeerKey('ES256', 'k1')
const nowSec = Math.floor(Date.now() / 1000)

/** Run twice: fast path allowed (reporting whether it served) and fast path off. */
async function both(argv: string[], env: Record<string, string> = {}) {
  const dir = mkdtempSync(join(tmpdir(), 'pushpull-cold-'))
  const mark = join(dir, 'mark')
  try {
    const fast = await spawnCli(argv, {env: {...env, PUSHPULL_FAST_PATH_MARK: mark}})
    const served = existsSync(mark)
    const oclif = await spawnCli(argv, {env: {...env, PUSHPULL_NO_FAST_PATH: '1'}})
    return {fast, oclif, served}
  } finally {
    rmSync(dir, {force: true, recursive: true})
  }
}

const strip = ({exitCode, stderr, stdout}: {exitCode: number; stderr: string; stdout: string}) => ({exitCode, stderr, stdout})

describe('bin/run.js decode fast path', () => {
  it.each([
    ['the RFC 8935 example', FIXTURE],
    ['an SSF SET with a subject', signSet(makeSetClaims({iat: nowSec}), key)],
    ['a SET with lint findings (no sub_id, odd event)', signSet({events: {'urn:example:odd': {}}, iat: nowSec, iss: 'https://idp.example', jti: 'j1'}, key)],
  ])('serves %s with the same output and exit code as oclif', async (_name, token) => {
    const {fast, oclif, served} = await both(['decode', token])
    expect(served).toBe(true)
    expect(fast.exitCode).toBe(0)
    expect(strip(fast)).toEqual(strip(oclif))
    expect(fast.stderr).toBe('warning: no verification key given (--jwks, --verify-key or --secret): signatures are NOT checked; SETs are UNVERIFIED\n')
    expect(fast.stdout).toContain('UNVERIFIED')
  })

  it('prints the same colours as oclif when colour is forced', async () => {
    const {fast, oclif, served} = await both(['decode', FIXTURE], {FORCE_COLOR: '1', NO_COLOR: ''})
    expect(served).toBe(true)
    expect(fast.stdout).toContain('\u001B[')
    expect(strip(fast)).toEqual(strip(oclif))
  })

  it.each([
    ['a malformed token', ['decode', 'not-a-token'], 6],
    ['an unsigned SET', ['decode', unsignedSet(makeSetClaims({iat: nowSec}))], 6],
    ['an expired SET', ['decode', signSet(makeSetClaims({exp: nowSec - 3600, iat: nowSec - 7200}), key)], 6],
    ['a JWE', ['decode', 'a.b.c.d.e'], 6],
  ])('leaves %s to oclif: same error, same exit code', async (_name, argv, exitCode) => {
    const {fast, oclif, served} = await both(argv)
    expect(served).toBe(false)
    expect(fast.exitCode).toBe(exitCode)
    expect(strip(fast)).toEqual(strip(oclif))
    expect(fast.stderr).toMatch(/ERR_SET_|Error/)
  })

  it.each([
    ['a flag', ['decode', '--json', FIXTURE]],
    ['--help', ['decode', '--help']],
    ['two arguments', ['decode', FIXTURE, 'extra']],
    ['stdin', ['decode', '-']],
  ])('never serves %s', async (_name, argv) => {
    const {fast, oclif, served} = await both(argv)
    expect(served).toBe(false)
    expect(strip(fast)).toEqual(strip(oclif))
  })

  it('steps aside when a PUSHPULL_ variable could change the flags (PUSHPULL_SECRET)', async () => {
    const {fast, served} = await both(['decode', FIXTURE], {PUSHPULL_SECRET: 'wrong secret'})
    expect(served).toBe(false)
    expect(fast.exitCode).toBe(6)
    expect(fast.stderr).toContain('ERR_SET_SIGNATURE')
  })
})
