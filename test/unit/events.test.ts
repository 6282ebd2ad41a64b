import {describe, expect, it} from 'vitest'

import {PushpullError} from '../../src/lib/errors.js'
import {
  buildEventPayload,
  checkEventPayload,
  EVENT_TYPES,
  EVENT_URI_BASES,
  eventTypesOf,
  findEventType,
  resolveEventUri,
  shortNameOf,
} from '../../src/lib/events.js'

const CAEP = EVENT_URI_BASES.caep
const RISC = EVENT_URI_BASES.risc
const CREDENTIAL_CHANGE = `${CAEP}credential-change`

function buildError(name: string, assignments: string[] = [], base?: Record<string, unknown>): PushpullError {
  try {
    buildEventPayload(name, assignments, base)
  } catch (error) {
    expect(error).toBeInstanceOf(PushpullError)
    return error as PushpullError
  }

  throw new Error('buildEventPayload did not throw')
}

describe('catalog', () => {
  it('holds every CAEP, RISC and SSF type of the protocol profile', () => {
    expect(EVENT_TYPES.map((type) => type.shortName)).toEqual([
      'caep.session-revoked',
      'caep.token-claims-change',
      'caep.credential-change',
      'caep.assurance-level-change',
      'caep.device-compliance-change',
      'caep.session-established',
      'caep.session-presented',
      'caep.risk-level-change',
      'risc.account-credential-change-required',
      'risc.account-purged',
      'risc.account-disabled',
      'risc.account-enabled',
      'risc.identifier-changed',
      'risc.identifier-recycled',
      'risc.credential-compromise',
      'risc.opt-in',
      'risc.opt-out-initiated',
      'risc.opt-out-cancelled',
      'risc.opt-out-effective',
      'risc.recovery-activated',
      'risc.recovery-information-changed',
      'risc.sessions-revoked',
      'ssf.verification',
      'ssf.stream-updated',
    ])
    for (const type of EVENT_TYPES) {
      expect(type.uri).toBe(`${EVENT_URI_BASES[type.family]}${type.shortName.slice(type.family.length + 1)}`)
      expect(type.description.length).toBeGreaterThan(10)
    }

    expect(eventTypesOf('ssf').map((type) => type.shortName)).toEqual(['ssf.verification', 'ssf.stream-updated'])
    expect(findEventType('risc.sessions-revoked')?.deprecated).toBe(true)
  })

  it('gives every CAEP type the common optional members', () => {
    for (const type of eventTypesOf('caep')) {
      const common = type.members.filter((member) => member.common === true).map((member) => [member.name, member.required])
      expect(common).toEqual([
        ['event_timestamp', false],
        ['initiating_entity', false],
        ['reason_admin', false],
        ['reason_user', false],
      ])
    }

    const initiating = findEventType('caep.session-revoked')?.members.find((member) => member.name === 'initiating_entity')
    expect(initiating?.values).toEqual(['admin', 'user', 'policy', 'system'])
  })

  it('records the allowed values the specs name', () => {
    const values = (name: string, member: string) => findEventType(name)?.members.find((m) => m.name === member)?.values
    expect(values('caep.credential-change', 'change_type')).toEqual(['create', 'revoke', 'update', 'delete'])
    expect(values('caep.credential-change', 'credential_type')).toContain('fido2-roaming')
    expect(values('caep.device-compliance-change', 'current_status')).toEqual(['compliant', 'not-compliant'])
    expect(values('caep.risk-level-change', 'current_level')).toEqual(['LOW', 'MEDIUM', 'HIGH'])
    expect(values('caep.assurance-level-change', 'change_direction')).toEqual(['increase', 'decrease'])
    expect(values('risc.account-disabled', 'reason')).toEqual(['hijacking', 'bulk-account'])
    expect(values('ssf.stream-updated', 'status')).toEqual(['enabled', 'paused', 'disabled'])
  })

  it('is frozen', () => {
    const type = EVENT_TYPES[0]!
    expect(() => (type.members as unknown[]).push({})).toThrow(TypeError)
    expect(Object.isFrozen(type)).toBe(true)
  })
})

describe('findEventType / shortNameOf / resolveEventUri', () => {
  it('accepts the full URI, the short name (any case) and the unambiguous bare name', () => {
    const uri = `${CAEP}session-revoked`
    expect(findEventType(uri)?.shortName).toBe('caep.session-revoked')
    expect(findEventType('caep.session-revoked')?.uri).toBe(uri)
    expect(findEventType('CAEP.Session-Revoked')?.uri).toBe(uri)
    expect(findEventType('session-revoked')?.uri).toBe(uri)
    expect(findEventType(' sessions-revoked ')?.uri).toBe(`${RISC}sessions-revoked`)
    expect(findEventType('verification')?.shortName).toBe('ssf.verification')
  })

  it('returns undefined for unknown names', () => {
    expect(findEventType('caep.nope')).toBeUndefined()
    expect(findEventType('risc.session-revoked')).toBeUndefined()
    expect(findEventType(`${CAEP}nope`)).toBeUndefined()
    expect(findEventType('')).toBeUndefined()
  })

  it('shortNameOf maps catalog URIs only', () => {
    expect(shortNameOf(`${RISC}account-disabled`)).toBe('risc.account-disabled')
    expect(shortNameOf('https://example.com/event')).toBeUndefined()
  })

  it('resolveEventUri allows custom absolute URIs but not unknown short names', () => {
    expect(resolveEventUri('https://example.com/events/custom')).toBe('https://example.com/events/custom')
    expect(resolveEventUri('urn:example:event')).toBe('urn:example:event')
    expect(() => resolveEventUri('caep.nope')).toThrow(PushpullError)
    expect(() => resolveEventUri('')).toThrow('event type is empty; give a short name such as caep.session-revoked or a URI')
  })
})

describe('buildEventPayload', () => {
  it('resolves the name and parses values as JSON when they parse', () => {
    const {payload, uri} = buildEventPayload('caep.credential-change', [
      'change_type=update',
      'credential_type=password',
      'flag=true',
      'count=12',
      'obj={"a":1}',
      'quoted="12"',
      'nothing=null',
      'list=["otp","pwd"]',
      'empty=',
      'with=equals=sign',
    ])
    expect(uri).toBe(CREDENTIAL_CHANGE)
    expect(payload).toEqual({
      change_type: 'update',
      count: 12,
      credential_type: 'password',
      empty: '',
      flag: true,
      list: ['otp', 'pwd'],
      nothing: null,
      obj: {a: 1},
      quoted: '12',
      with: 'equals=sign',
    })
  })

  it('nests dotted keys and merges into existing objects', () => {
    const {payload} = buildEventPayload('session-revoked', ['reason_admin.en=Policy violation', 'reason_admin.de=Verstoß', 'a.b.c=1'])
    expect(payload).toEqual({a: {b: {c: 1}}, reason_admin: {de: 'Verstoß', en: 'Policy violation'}})
  })

  it('starts from a copy of the base and lets assignments override it', () => {
    const base = {change_type: 'create', reason_user: {en: 'Hi'}}
    const {payload} = buildEventPayload(CREDENTIAL_CHANGE, ['change_type=delete', 'reason_user.fr=Salut'], base)
    expect(payload).toEqual({change_type: 'delete', reason_user: {en: 'Hi', fr: 'Salut'}})
    expect(base).toEqual({change_type: 'create', reason_user: {en: 'Hi'}})
  })

  it('accepts a custom event URI', () => {
    expect(buildEventPayload('https://example.com/event/custom', ['x=1'])).toEqual({payload: {x: 1}, uri: 'https://example.com/event/custom'})
  })

  it('does not fill in required members', () => {
    expect(buildEventPayload('caep.credential-change').payload).toEqual({})
  })

  it.each([
    [['change_type'], 'assignment "change_type" has no "="; write key=value (e.g. change_type=update)'],
    [['=x'], 'assignment "=x" has an empty key or key segment'],
    [['a..b=1'], 'assignment "a..b=1" has an empty key or key segment'],
    [['__proto__.polluted=1'], 'assignment "__proto__.polluted=1" uses the forbidden key "__proto__"'],
    [['__proto__=1'], 'assignment "__proto__=1" uses the forbidden key "__proto__"'],
    [['a.constructor=1'], 'assignment "a.constructor=1" uses the forbidden key "constructor"'],
    [['prototype.x=1'], 'assignment "prototype.x=1" uses the forbidden key "prototype"'],
    [['x={"__proto__":{"polluted":1}}'], 'x uses the forbidden key "__proto__"'],
    [['a=1', 'a.b=2'], 'assignment "a.b=2" cannot nest under "a", which is already 1'],
  ])('refuses %j', (assignments, message) => {
    const error = buildError('caep.session-revoked', assignments)
    expect(error.code).toBe('ERR_EVENT_INVALID')
    expect(error.message).toBe(message)
    expect(({} as Record<string, unknown>).polluted).toBeUndefined()
  })

  it('refuses prototype keys in the base', () => {
    const base = JSON.parse('{"__proto__":{"polluted":1}}') as Record<string, unknown>
    const error = buildError('caep.session-revoked', [], base)
    expect(error.code).toBe('ERR_EVENT_INVALID')
    expect(error.message).toBe('payload uses the forbidden key "__proto__"')
  })

  it('refuses unknown short names with a did-you-mean', () => {
    const error = buildError('caep.sesion-revoked')
    expect(error.code).toBe('ERR_EVENT_INVALID')
    expect(error.message).toBe(
      'unknown event type "caep.sesion-revoked" (did you mean "caep.session-revoked"?); run "pushpull events" for the list, or give a full URI for a custom event',
    )
    expect(error.details).toEqual({suggestion: 'caep.session-revoked'})
    expect(buildError('credential-chnge').message).toContain('(did you mean "caep.credential-change"?)')
    expect(buildError('zzzzzzzz').message).toBe(
      'unknown event type "zzzzzzzz"; run "pushpull events" for the list, or give a full URI for a custom event',
    )
  })

  it('treats caep:/risc:/ssf: prefixed text as a mistyped short name, not a custom URI', () => {
    expect(buildError('caep:session-revoked').message).toContain('(did you mean "caep.session-revoked"?)')
  })
})

describe('checkEventPayload', () => {
  const where = `claims.events.${CREDENTIAL_CHANGE}`

  it('accepts a complete payload', () => {
    const payload = {
      change_type: 'create',
      credential_type: 'fido2-roaming',
      event_timestamp: 1_615_304_991,
      initiating_entity: 'user',
      reason_admin: {en: 'User self-enrollment'},
    }
    expect(checkEventPayload(CREDENTIAL_CHANGE, payload)).toEqual([])
    expect(checkEventPayload(`${RISC}account-purged`, {})).toEqual([])
  })

  it('reports missing required members', () => {
    expect(checkEventPayload(CREDENTIAL_CHANGE, {change_type: 'update'})).toEqual([
      {
        code: 'member-missing',
        message: 'caep.credential-change requires the member "credential_type" (Kind of credential; the listed values or any type both peers agree on.)',
        severity: 'error',
        where: `${where}.credential_type`,
      },
    ])
  })

  it('reports a value outside a closed list as an error, with a suggestion', () => {
    expect(checkEventPayload(CREDENTIAL_CHANGE, {change_type: 'updated', credential_type: 'password'})).toEqual([
      {
        code: 'member-value',
        message: '"change_type" must be one of create, revoke, update, delete, got "updated" (did you mean "update"?)',
        severity: 'error',
        where: `${where}.change_type`,
      },
    ])
  })

  it('reports a value outside an open list as a warning', () => {
    const findings = checkEventPayload(CREDENTIAL_CHANGE, {change_type: 'update', credential_type: 'retina-scan'})
    expect(findings).toHaveLength(1)
    expect(findings[0]).toMatchObject({code: 'member-value', severity: 'warning', where: `${where}.credential_type`})
    expect(findings[0]?.message).toMatch(/^"credential_type" value "retina-scan" is not a well-known value \(password, pin, /)
  })

  it('reports wrong types', () => {
    expect(checkEventPayload(CREDENTIAL_CHANGE, {change_type: 'update', credential_type: 'password', event_timestamp: '1615304991', x509_serial: 1234})).toEqual([
      {
        code: 'member-type',
        message: `"x509_serial" must be a string, got a number (on the command line quote it: x509_serial='"1234"')`,
        severity: 'error',
        where: `${where}.x509_serial`,
      },
      {code: 'member-type', message: '"event_timestamp" must be a number, got a string', severity: 'error', where: `${where}.event_timestamp`},
    ])
    const claimsChange = `${CAEP}token-claims-change`
    expect(checkEventPayload(claimsChange, {claims: []})).toEqual([
      {code: 'member-type', message: '"claims" must be an object, got an array', severity: 'error', where: `claims.events.${claimsChange}.claims`},
    ])
  })

  it('checks the shape of localized text, string arrays and timestamps', () => {
    const established = `${CAEP}session-established`
    const findings = checkEventPayload(established, {amr: ['otp', 3], event_timestamp: -1, reason_admin: {}, reason_user: {en: 5}})
    expect(findings.map((finding) => [finding.code, finding.where.slice(`claims.events.${established}`.length), finding.message])).toEqual([
      ['member-type', '.amr[1]', '"amr" must hold only strings'],
      ['member-value', '.event_timestamp', '"event_timestamp" must be a non-negative NumericDate (seconds), got -1'],
      ['member-value', '.reason_admin', '"reason_admin" must hold at least one language tag, e.g. {"en": "..."}'],
      ['member-value', '.reason_user.en', '"reason_user"."en" must be a string, got a number'],
    ])
  })

  it('flags a likely typo of a member name as a warning, and ignores other extra members', () => {
    expect(checkEventPayload(CREDENTIAL_CHANGE, {change_type: 'update', credential_type: 'pin', credential_typ: 'x', vendor_extension: 1})).toEqual([
      {
        code: 'member-unknown',
        message: '"credential_typ" is not a member of caep.credential-change (did you mean "credential_type"?)',
        severity: 'warning',
        where: `${where}.credential_typ`,
      },
    ])
  })

  it('reports a payload that is not an object', () => {
    expect(checkEventPayload(CREDENTIAL_CHANGE, 'x', 'e')).toEqual([
      {code: 'event-payload', message: 'the event payload must be a JSON object, got a string', severity: 'error', where: 'e'},
    ])
    expect(checkEventPayload(CREDENTIAL_CHANGE, null, 'e')[0]?.message).toBe('the event payload must be a JSON object, got null')
  })

  it('warns about unknown and deprecated event types', () => {
    expect(checkEventPayload('https://example.com/custom', {}, 'e')).toEqual([
      {code: 'event-unknown', message: 'event type "https://example.com/custom" is not in the CAEP/RISC/SSF catalog', severity: 'warning', where: 'e'},
    ])
    expect(checkEventPayload(`${CAEP}session-revokd`, {}, 'e')[0]?.message).toBe(
      `event type "${CAEP}session-revokd" is not in the CAEP/RISC/SSF catalog (did you mean ${CAEP}session-revoked?)`,
    )
    expect(checkEventPayload(`${RISC}sessions-revoked`, {}, 'e')).toEqual([
      {
        code: 'event-deprecated',
        message: 'risc.sessions-revoked is deprecated: All sessions of the account were revoked. Deprecated: use caep.session-revoked.',
        severity: 'warning',
        where: 'e',
      },
    ])
  })

  it('accepts every catalog type with its required members filled from its allowed values', () => {
    for (const type of EVENT_TYPES) {
      const payload: Record<string, unknown> = {}
      for (const member of type.members.filter((m) => m.required)) {
        payload[member.name] = member.type === 'object' ? {a: 'b'} : (member.values?.[0] ?? 'value')
      }

      const errors = checkEventPayload(type.uri, payload).filter((finding) => finding.severity === 'error')
      expect(errors, type.shortName).toEqual([])
    }
  })
})
