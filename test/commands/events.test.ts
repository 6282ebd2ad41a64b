import {describe, expect, it} from 'vitest'

import Events from '../../src/commands/events.js'
import {EVENT_TYPES, type EventType} from '../../src/lib/events.js'
import {jsonLines, runCommand} from '../helpers/cli.js'

describe('pushpull events', () => {
  it('prints a table naming every event type with its URI and required members', async () => {
    const {exitCode, stdout, stderr} = await runCommand(Events, ['--no-color'])
    expect(exitCode).toBe(0)
    expect(stderr).toBe('')
    for (const type of EVENT_TYPES) {
      expect(stdout).toContain(type.shortName)
      expect(stdout).toContain(type.uri)
    }

    expect(stdout).toMatch(/caep\.credential-change.*credential_type, change_type/)
    expect(stdout).toContain('risc.sessions-revoked (deprecated)')
  })

  it('--json prints the whole catalog as one compact line', async () => {
    const {exitCode, stdout} = await runCommand(Events, ['--json'])
    expect(exitCode).toBe(0)
    const lines = jsonLines(stdout)
    expect(lines).toHaveLength(1)
    const types = lines[0] as EventType[]
    expect(types.map((type) => type.shortName)).toEqual(EVENT_TYPES.map((type) => type.shortName))
  })

  it('--family filters the table and the JSON', async () => {
    const {exitCode, stdout} = await runCommand(Events, ['--family', 'ssf', '--json'])
    expect(exitCode).toBe(0)
    const types = jsonLines(stdout)[0] as EventType[]
    expect(types.map((type) => type.shortName)).toEqual(['ssf.verification', 'ssf.stream-updated'])

    const human = await runCommand(Events, ['--family', 'risc', '--no-color'])
    expect(human.stdout).toContain('risc.account-disabled')
    expect(human.stdout).not.toContain('caep.session-revoked')
  })

  it('a bad --family value is a usage error (exit 2)', async () => {
    const {exitCode, error} = await runCommand(Events, ['--family', 'oauth'])
    expect(exitCode).toBe(2)
    expect(error?.message).toBe('--family must be one of caep, risc, ssf, got "oauth" [ERR_USAGE]')
  })

  it('NAME shows one type with members, types and allowed values', async () => {
    const {exitCode, stdout} = await runCommand(Events, ['caep.credential-change', '--no-color'])
    expect(exitCode).toBe(0)
    expect(stdout).toContain('https://schemas.openid.net/secevent/caep/event-type/credential-change')
    expect(stdout).toContain('change_type')
    for (const value of ['create', 'revoke', 'update', 'delete', 'admin, user, policy, system']) expect(stdout).toContain(value)
    expect(stdout).toContain('fido2-platform')
    expect(stdout).toContain('initiating_entity')
  })

  it('NAME accepts the bare name and the full URI; --json prints the one type', async () => {
    const bare = await runCommand(Events, ['account-disabled', '--json'])
    expect(bare.exitCode).toBe(0)
    const type = jsonLines(bare.stdout)[0] as EventType
    expect(type.shortName).toBe('risc.account-disabled')
    expect(type.members).toEqual([expect.objectContaining({name: 'reason', required: false, values: ['hijacking', 'bulk-account']})])

    const byUri = await runCommand(Events, ['https://schemas.openid.net/secevent/ssf/event-type/verification', '--json'])
    expect((jsonLines(byUri.stdout)[0] as EventType).shortName).toBe('ssf.verification')
  })

  it('a type without members says so', async () => {
    const {exitCode, stdout} = await runCommand(Events, ['risc.opt-in', '--no-color'])
    expect(exitCode).toBe(0)
    expect(stdout).toContain('Members: none defined')
  })

  it('an unknown NAME exits 2 with a did-you-mean', async () => {
    const {exitCode, error} = await runCommand(Events, ['caep.sesion-revoked'])
    expect(exitCode).toBe(2)
    expect(error?.message).toContain('unknown event type "caep.sesion-revoked" (did you mean "caep.session-revoked"?)')
    expect(error?.message).toContain('[ERR_EVENT_INVALID]')
  })

  it('an unknown NAME under --json prints the error as JSON and exits 2', async () => {
    const {exitCode, stdout} = await runCommand(Events, ['risc.acount-disabled', '--json'])
    expect(exitCode).toBe(2)
    const [record] = jsonLines(stdout) as [{error: {code: string; message: string; exitCode: number; suggestion: string}}]
    expect(record.error.code).toBe('ERR_EVENT_INVALID')
    expect(record.error.exitCode).toBe(2)
    expect(record.error.suggestion).toBe('risc.account-disabled')
    expect(record.error.message).toMatch(/did you mean "risc.account-disabled"/)
  })

  it('NAME from another family than --family is a usage error', async () => {
    const {exitCode, error} = await runCommand(Events, ['caep.session-revoked', '--family', 'risc'])
    expect(exitCode).toBe(2)
    expect(error?.message).toContain('caep.session-revoked is a caep event, not risc')
    expect(error?.message).toContain('[ERR_USAGE]')
  })
})
