import {chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'

import {afterAll, describe, expect, it} from 'vitest'

import {BaseCommand} from '../../src/cli/base-command.js'
import {httpClientOptionsFrom, parseByteSize, parseDuration, parseHeaderFlags, readTokenFile, transportFlags} from '../../src/cli/transport-flags.js'
import {PushpullError} from '../../src/lib/errors.js'
import type {HttpClientOptions} from '../../src/lib/transport/http.js'
import {ROOT, runCommand} from '../helpers/cli.js'

const TOKEN = 'flag-t0ken-value'
const dir = mkdtempSync(join(tmpdir(), 'pushpull-flags-'))
afterAll(() => rmSync(dir, {force: true, recursive: true}))

/** A command that only turns its transport flags into client options (what send/poll will do). */
class TransportProbe extends BaseCommand<typeof TransportProbe> {
  static override description = 'test probe'
  static override flags = {...transportFlags}

  async run(): Promise<HttpClientOptions> {
    return httpClientOptionsFrom(this.flags, {userAgent: `pushpull/${this.config.version}`, warn: (message) => this.warnLoud(message)})
  }
}

function tokenFile(name: string, content: string, mode: number): string {
  const path = join(dir, name)
  writeFileSync(path, content)
  chmodSync(path, mode)
  return path
}

describe('transport flags through a real command', () => {
  it('maps every flag to client options', async () => {
    const cacert = join(ROOT, 'test/fixtures/tls/localhost.crt')
    const {exitCode, result, stderr} = await runCommand(TransportProbe, [
      '--token',
      TOKEN,
      '--header',
      'X-One: 1',
      '--header',
      'X-Two:  two words ',
      '--cacert',
      cacert,
      '--connect-timeout',
      '500ms',
      '--timeout',
      '2',
      '--max-response-bytes',
      '64KiB',
    ])
    expect(exitCode).toBe(0)
    expect(stderr).toBe('')
    expect(result).toEqual({
      bodyTimeoutMs: 2000,
      ca: readFileSync(cacert, 'utf8'),
      caFile: cacert,
      connectTimeoutMs: 500,
      headers: {'X-One': '1', 'X-Two': 'two words'},
      headersTimeoutMs: 2000,
      maxResponseBytes: 65_536,
      token: TOKEN,
      userAgent: expect.stringMatching(/^pushpull\/\d+\.\d+\.\d+/),
    })
  })

  it('--insecure warns loudly on stderr', async () => {
    const {exitCode, result, stderr} = await runCommand(TransportProbe, ['--insecure'])
    expect(exitCode).toBe(0)
    expect(result).toMatchObject({insecure: true})
    expect(stderr).toContain('warning: --insecure: TLS certificates are NOT verified')
  })

  it('reads PUSHPULL_TOKEN', async () => {
    process.env.PUSHPULL_TOKEN = TOKEN
    try {
      const {result} = await runCommand(TransportProbe, [])
      expect(result).toMatchObject({token: TOKEN})
    } finally {
      delete process.env.PUSHPULL_TOKEN
    }
  })

  it('--token-file: first line; a private file is quiet, a world-readable one warns without the token', async () => {
    const quiet = await runCommand(TransportProbe, ['--token-file', tokenFile('private', `${TOKEN}\n`, 0o600)])
    expect(quiet.result).toMatchObject({token: TOKEN})
    expect(quiet.stderr).toBe('')
    const open = tokenFile('open', `${TOKEN}\r\nignored second line\n`, 0o644)
    const loud = await runCommand(TransportProbe, ['--token-file', open])
    expect(loud.result).toMatchObject({token: TOKEN})
    expect(loud.stderr).toContain(`the token file ${open} is readable by other users (mode 644); run: chmod 600 ${open}`)
    expect(loud.stderr).not.toContain(TOKEN)
  })

  it('--token and --token-file are exclusive', async () => {
    const {exitCode, error} = await runCommand(TransportProbe, ['--token', TOKEN, '--token-file', tokenFile('x', TOKEN, 0o600)])
    expect(exitCode).toBe(2)
    expect(error?.message).toContain('--token=')
    expect(error?.message).toContain('cannot also be provided when using --token-file')
  })

  it('--header Authorization is refused without echoing the value; --json errors never hold the token', async () => {
    const {exitCode, stdout} = await runCommand(TransportProbe, ['--json', '--header', `Authorization: Bearer ${TOKEN}`])
    expect(exitCode).toBe(2)
    expect(JSON.parse(stdout)).toEqual({
      error: {code: 'ERR_USAGE', exitCode: 2, message: '--header cannot set Authorization; use --token or --token-file (or PUSHPULL_TOKEN)'},
    })
    expect(stdout).not.toContain(TOKEN)
  })

  it('a bad duration fails flag parsing with exit 2', async () => {
    const {error, exitCode} = await runCommand(TransportProbe, ['--timeout', 'soon'])
    expect(exitCode).toBe(2)
    expect(error?.message).toContain('--timeout must be a duration such as 500ms, 10s or 2m (a bare number means seconds), got "soon"')
  })
})

describe('transport flag parsers', () => {
  it('parseDuration', () => {
    expect(parseDuration('500ms', 'timeout')).toBe(500)
    expect(parseDuration('10s', 'timeout')).toBe(10_000)
    expect(parseDuration('1.5', 'timeout')).toBe(1500)
    expect(parseDuration('2m', 'timeout')).toBe(120_000)
    expect(() => parseDuration('0', 'timeout')).toThrow(expect.objectContaining({code: 'ERR_USAGE', message: '--timeout must be between 1ms and 24h, got "0"'}))
    expect(() => parseDuration('-1s', 'connect-timeout')).toThrow(
      expect.objectContaining({code: 'ERR_USAGE', message: '--connect-timeout must be a duration such as 500ms, 10s or 2m (a bare number means seconds), got "-1s"'}),
    )
    expect(() => parseDuration('2d', 'timeout')).toThrow(PushpullError)
  })

  it('parseByteSize', () => {
    expect(parseByteSize('1048576', 'max-response-bytes')).toBe(1_048_576)
    expect(parseByteSize('512k', 'max-response-bytes')).toBe(524_288)
    expect(parseByteSize('4MiB', 'max-response-bytes')).toBe(4_194_304)
    expect(() => parseByteSize('0', 'max-response-bytes')).toThrow(
      expect.objectContaining({code: 'ERR_USAGE', message: '--max-response-bytes must be a positive size such as 1048576, 512KiB or 4MiB, got "0"'}),
    )
    expect(() => parseByteSize('1.5MB', 'max-response-bytes')).toThrow(PushpullError)
  })

  it('parseHeaderFlags', () => {
    expect(parseHeaderFlags(['A: b: c'])).toEqual({A: 'b: c'})
    expect(() => parseHeaderFlags(['no colon'])).toThrow(expect.objectContaining({code: 'ERR_USAGE', message: '--header must look like \'Name: value\', got "no colon"'}))
    expect(() => parseHeaderFlags(['Bad Name: x'])).toThrow(expect.objectContaining({code: 'ERR_USAGE'}))
    const proto = parseHeaderFlags(['__proto__: x'])
    expect(Object.getPrototypeOf(proto)).toBeNull()
    expect(({} as Record<string, unknown>).x).toBeUndefined()
  })

  it('readTokenFile errors name the file, never the content', async () => {
    const missing = join(dir, 'missing')
    await expect(readTokenFile(missing, () => {})).rejects.toMatchObject({code: 'ERR_USAGE', message: `cannot read --token-file ${missing}: ENOENT`})
    const empty = tokenFile('empty', '\n', 0o600)
    await expect(readTokenFile(empty, () => {})).rejects.toMatchObject({code: 'ERR_USAGE', message: `--token-file ${empty} is empty`})
    await expect(readTokenFile(dir, () => {})).rejects.toMatchObject({code: 'ERR_USAGE', message: `--token-file ${dir} is not a regular file`})
  })

  it('a token with spaces is refused without being echoed', async () => {
    const error = await httpClientOptionsFrom({token: `${TOKEN} extra`}, {warn: () => {}}).catch((caught: unknown) => caught)
    expect(error).toMatchObject({code: 'ERR_USAGE', message: 'the bearer token contains spaces, control or non-ASCII characters'})
    expect((error as Error).message).not.toContain(TOKEN)
  })
})
