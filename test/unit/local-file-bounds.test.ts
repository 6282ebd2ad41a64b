/**
 * O5 (docs/hardening-audit.md): every local file read whole is bounded (one reader,
 * `readFileBounded` in src/lib/keys.ts): event files, token files, TLS files. A FIFO still works;
 * `/dev/zero` or a huge file is refused with a message naming the file and the limit.
 */
import {mkdtempSync, rmSync, writeFileSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'

import {afterAll, describe, expect, it} from 'vitest'

import {readSetInputs} from '../../src/cli/set-input.js'
import {DEFAULT_TOKEN_FILE_MAX_BYTES, readCaFile, readFlagFile, readTokenFile} from '../../src/cli/transport-flags.js'
import Listen from '../../src/commands/listen.js'
import Send from '../../src/commands/send.js'
import {isPushpullError, PushpullError} from '../../src/lib/errors.js'
import {readFileBounded} from '../../src/lib/keys.js'
import {jsonLines, ROOT, runCommand} from '../helpers/cli.js'

const dir = mkdtempSync(join(tmpdir(), 'pushpull-bounds-'))
afterAll(() => rmSync(dir, {force: true, recursive: true}))
const write = (name: string, text: string | Buffer): string => {
  const path = join(dir, name)
  writeFileSync(path, text, {mode: 0o600})
  return path
}

async function failure(promise: Promise<unknown>): Promise<{code: string; message: string}> {
  try {
    await promise
  } catch (error) {
    if (isPushpullError(error)) return {code: error.code, message: error.message}
    throw error
  }

  throw new Error('expected a failure')
}

async function drain(files: string[], maxFileBytes?: number): Promise<number> {
  let n = 0
  for await (const _item of readSetInputs({files, maxFileBytes})) n++
  return n
}

describe('readFileBounded', () => {
  const fail = (failure: {reason: string; text: string}) => new PushpullError('ERR_USAGE', `${failure.reason}: ${failure.text}`)

  it('reads a file up to the limit and refuses one byte more', async () => {
    const path = write('ten', '0123456789')
    expect((await readFileBounded(path, {fail, maxBytes: 10})).toString()).toBe('0123456789')
    expect(await failure(readFileBounded(path, {fail, maxBytes: 9}))).toEqual({code: 'ERR_USAGE', message: 'too-large: is larger than 9 bytes'})
  })

  it('stops reading an endless device at the limit', async () => {
    expect(await failure(readFileBounded('/dev/zero', {fail, maxBytes: 100_000}))).toEqual({code: 'ERR_USAGE', message: 'too-large: is larger than 100000 bytes'})
  })

  it('reports a missing file and a directory', async () => {
    expect(await failure(readFileBounded(join(dir, 'nope'), {fail}))).toEqual({code: 'ERR_USAGE', message: 'missing: no such file'})
    expect(await failure(readFileBounded(dir, {fail}))).toEqual({code: 'ERR_USAGE', message: 'unreadable: cannot be read (EISDIR)'})
  })
})

describe('event files', () => {
  const line = `${JSON.stringify({event: 'caep.session-revoked', subject: 'opaque:1'})}\n`

  it('refuses /dev/zero at the 16 MiB default, naming the file and the limit', async () => {
    expect(await failure(drain(['/dev/zero']))).toEqual({
      code: 'ERR_USAGE',
      message: '/dev/zero: is larger than 16777216 bytes; feed a longer event stream on stdin (-) instead',
    })
  })

  it('honours maxFileBytes and still names a missing file', async () => {
    const path = write('events.ndjson', line.repeat(3))
    expect(await drain([path], line.length * 3)).toBe(3)
    expect(await failure(drain([path], line.length * 3 - 1))).toEqual({
      code: 'ERR_USAGE',
      message: `${path}: is larger than ${line.length * 3 - 1} bytes; feed a longer event stream on stdin (-) instead`,
    })
    expect(await failure(drain([join(dir, 'missing.json')]))).toEqual({code: 'ERR_USAGE', message: `${join(dir, 'missing.json')}: no such file`})
  })

  it('send refuses an oversize event file before sending anything (exit 2)', async () => {
    const result = await runCommand(Send, ['--to', 'http://127.0.0.1:9/events', '--memory-state', '/dev/zero', '--iss', 'https://tx.example', '--unsigned', '--json'])
    expect(result.exitCode).toBe(2)
    expect(result.error?.message ?? JSON.stringify(jsonLines(result.stdout).at(-1))).toContain('/dev/zero: is larger than 16777216 bytes')
  })
})

describe('token files', () => {
  it('refuses a token file over 1 MiB, never echoing its content', async () => {
    const token = 'tok3n-value-'
    const big = write('big-token', Buffer.alloc(DEFAULT_TOKEN_FILE_MAX_BYTES + 1, token))
    const result = await failure(readTokenFile(big, () => {}))
    expect(result).toEqual({code: 'ERR_USAGE', message: `--token-file ${big} is larger than 1048576 bytes`})
    expect(result.message).not.toContain(token)
    expect(await readTokenFile(write('ok-token', `${token}\n`), () => {})).toBe(token)
  })

  it('listen --token-file refuses an oversize file (exit 2)', async () => {
    const big = write('listen-tokens', Buffer.alloc(DEFAULT_TOKEN_FILE_MAX_BYTES + 1, 'a=b\n'))
    const result = await runCommand(Listen, ['--port', '0', '--memory-state', '--json', '--token-file', big])
    expect(result.exitCode).toBe(2)
    expect(jsonLines(result.stdout).at(-1)).toMatchObject({error: {code: 'ERR_USAGE', message: `--token-file ${big} is larger than 1048576 bytes`}})
  })
})

describe('TLS files', () => {
  it('readFlagFile names the flag, the file and the limit', async () => {
    expect(await failure(readFlagFile('/dev/zero', '--tls-key', {maxBytes: 4096}))).toEqual({code: 'ERR_USAGE', message: '--tls-key /dev/zero is larger than 4096 bytes'})
    expect(await failure(readFlagFile(join(dir, 'none.pem'), '--tls-cert'))).toEqual({code: 'ERR_USAGE', message: `cannot read --tls-cert ${join(dir, 'none.pem')}: ENOENT`})
  })

  it('--cacert: bounded, must hold a PEM certificate (ERR_CONFIG)', async () => {
    expect(await failure(readCaFile('/dev/zero'))).toEqual({code: 'ERR_CONFIG', message: '--cacert /dev/zero is larger than 16777216 bytes'})
    const notPem = write('not.pem', 'hello')
    expect(await failure(readCaFile(notPem))).toEqual({code: 'ERR_CONFIG', message: `the CA file ${notPem} holds no PEM certificate`})
    expect(await readCaFile(join(ROOT, 'test/fixtures/tls/localhost.crt'))).toContain('-----BEGIN CERTIFICATE-----')
  })

  it('send --cacert /dev/zero and listen --tls-cert /dev/zero are refused with the limit', async () => {
    const send = await runCommand(Send, ['--to', 'https://127.0.0.1:9/events', '--memory-state', '--event', 'caep.session-revoked', '--subject', 'opaque:1', '--iss', 'https://tx.example', '--unsigned', '--cacert', '/dev/zero', '--json'])
    expect(send.exitCode).toBe(3)
    expect(JSON.stringify(jsonLines(send.stdout).at(-1)) + (send.error?.message ?? '')).toContain('--cacert /dev/zero is larger than 16777216 bytes')
    const key = join(ROOT, 'test/fixtures/tls/localhost.key')
    const listen = await runCommand(Listen, ['--port', '0', '--memory-state', '--json', '--tls-cert', '/dev/zero', '--tls-key', key])
    expect(listen.exitCode).toBe(2)
    expect(jsonLines(listen.stdout).at(-1)).toMatchObject({error: {code: 'ERR_USAGE', message: '--tls-cert /dev/zero is larger than 16777216 bytes'}})
  })
})
