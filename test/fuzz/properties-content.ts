/**
 * Fuzz properties for what a SET carries: subject identifiers (src/lib/subject.ts), event payloads
 * (src/lib/events.ts) and the SSF profile lint (src/lib/lint.ts).
 */
import {strict as assert} from 'node:assert'

import * as fc from 'fast-check'

import {buildEventPayload, checkEventPayload, EVENT_TYPES, type EventMember, type EventType} from '../../src/lib/events.js'
import {lintSet} from '../../src/lib/lint.js'
import {describeSubject, parseSubject, validateSubject} from '../../src/lib/subject.js'
import {hostileJsonText, HOSTILE_KEYS, jsonScalarText, objectText, peerKey, peerString, pollutionText} from './arbitraries.js'
import {type FuzzProperty, fuzzProperty, outcome, total, UNSAFE_TEXT} from './harness.js'

const SUBJECT_CODES = new Set(['subject-invalid', 'legacy-subject'])
const EVENT_CODES = new Set(['event-payload', 'event-unknown', 'event-deprecated', 'member-missing', 'member-type', 'member-value', 'member-unknown'])
const LINT_CODES = new Set([
  'typ-missing', 'typ-wrong', 'sub-present', 'exp-present', 'sub-id-missing', 'subject-invalid', 'legacy-subject', 'events-missing', 'events-count',
  'event-payload', 'event-unknown', 'event-deprecated', 'member-missing', 'member-type', 'member-value', 'member-unknown', 'verification-subject',
  'alg-not-rs256', 'key-too-small',
])

const parseText = (text: string): unknown => JSON.parse(text) as unknown

/** buildEventPayload refuses these keys anywhere in a value (by design), so round trips avoid them. */
function hasForbiddenKey(value: unknown): boolean {
  if (typeof value !== 'object' || value === null) return false
  return Object.keys(value).some((key) => ['__proto__', 'constructor', 'prototype'].includes(key) || hasForbiddenKey((value as Record<string, unknown>)[key]))
}

// ---------------------------------------------------------------------------------------------
// Valid subjects, one generator per format

const word = fc.string({maxLength: 10, minLength: 1, unit: fc.constantFrom(...'abcdefghijklmnopqrstuvwxyz0123456789'.split(''))})
const simpleSubject: fc.Arbitrary<Record<string, unknown>> = fc.oneof(
  fc.tuple(word, word).map(([user, host]) => ({format: 'email', email: `${user}@${host}.example`})),
  fc.tuple(word, word).map(([user, host]) => ({format: 'account', uri: `acct:${user}@${host}.example`})),
  fc.tuple(fc.webUrl(), word).map(([iss, sub]) => ({format: 'iss_sub', iss, sub})),
  fc.string({minLength: 1}).map((id) => ({format: 'opaque', id})),
  fc.integer({max: 999_999_999_999, min: 10}).map((n) => ({format: 'phone_number', phone_number: `+${n}`})),
  word.map((id) => ({format: 'did', url: `did:example:${id}`})),
  fc.webUrl().map((uri) => ({format: 'uri', uri})),
  fc.tuple(fc.webUrl(), word).map(([iss, jti]) => ({format: 'jwt_id', iss, jti})),
  fc.tuple(fc.webUrl(), word).map(([issuer, id]) => ({assertion_id: id, format: 'saml_assertion_id', issuer})),
  fc.array(fc.oneof(fc.ipV4(), fc.ipV6()), {maxLength: 3, minLength: 1}).map((ips) => ({format: 'ip-addresses', 'ip-addresses': ips})),
)

const aliasesSubject = fc.array(simpleSubject, {maxLength: 3, minLength: 1}).map((identifiers) => ({format: 'aliases', identifiers}))

const complexSubject = fc
  .dictionary(fc.constantFrom('user', 'device', 'session', 'application', 'tenant', 'org_unit', 'group'), fc.oneof(simpleSubject, aliasesSubject), {maxKeys: 3, minKeys: 1})
  .map((members) => ({format: 'complex', ...members}))

const validSubject: fc.Arbitrary<Record<string, unknown>> = fc.oneof({arbitrary: simpleSubject, weight: 4}, aliasesSubject, complexSubject)

/** A valid subject as JSON text with one change that makes it invalid. */
const invalidSubjectText: fc.Arbitrary<string> = fc
  .tuple(validSubject, fc.constantFrom('drop-format', 'unknown-member', 'hostile-member', 'format-type', 'format-unknown', 'drop-member', 'member-type', 'nest-aliases', 'nest-complex'), jsonScalarText, fc.constantFrom(...HOSTILE_KEYS))
  .map(([subject, change, scalar, hostile]) => {
    const entries: Array<[string, string]> = Object.keys(subject).map((key) => [key, JSON.stringify(subject[key])])
    const members = entries.filter(([key]) => key !== 'format')
    switch (change) {
      case 'drop-format': return objectText(members)
      case 'unknown-member': return objectText([...entries, ['not_a_member', scalar]])
      case 'hostile-member': return objectText([...entries, [hostile, '{"polluted":true}']])
      case 'format-type': return objectText([['format', scalar.startsWith('"') ? '1' : scalar], ...members])
      case 'format-unknown': return objectText([['format', '"emial"'], ...members])
      case 'drop-member': return subject.format === 'complex' ? objectText([['format', '"complex"']]) : objectText([['format', JSON.stringify(subject.format)], ...members.slice(1)])
      case 'member-type': return objectText([['format', JSON.stringify(subject.format)], ...members.map(([key]) => [key, 'null'] as [string, string])])
      case 'nest-aliases': return JSON.stringify({format: 'aliases', identifiers: [{format: 'aliases', identifiers: [subject]}]})
      default: return JSON.stringify({format: 'complex', user: {format: 'complex', user: subject}})
    }
  })

const subjectInput: fc.Arbitrary<string> = fc.oneof(
  validSubject.map((s) => JSON.stringify(s)),
  invalidSubjectText,
  fc.tuple(fc.constantFrom('email', 'opaque', 'phone', 'phone_number', 'account', 'uri', 'iss_sub', 'jwt_id', 'saml_assertion_id', 'ip-addresses', 'did', 'aliases', 'complex', 'emial', ''), peerString(30)).map(([format, rest]) => `${format}:${rest}`),
  hostileJsonText,
  peerString(60),
)

// ---------------------------------------------------------------------------------------------
// Valid event payloads from the catalog

function memberValue(spec: EventMember): fc.Arbitrary<unknown> {
  if (spec.values !== undefined && !spec.open) return fc.constantFrom(...spec.values)
  switch (spec.type) {
    case 'number': return fc.nat()
    case 'boolean': return fc.boolean()
    case 'array': return fc.array(fc.string(), {maxLength: 3})
    case 'object': return spec.shape === 'localized' ? fc.record({en: fc.string()}) : fc.constant({})
    default: return spec.values === undefined ? fc.string() : fc.constantFrom(...spec.values)
  }
}

function validPayload(type: EventType): fc.Arbitrary<Record<string, unknown>> {
  const required = type.members.filter((m) => m.required)
  const optional = type.members.filter((m) => !m.required)
  return fc
    .tuple(fc.tuple(...required.map((m) => memberValue(m))), fc.subarray(optional), fc.constant(0))
    .chain(([values, chosen]) =>
      fc.tuple(...chosen.map((m) => memberValue(m))).map((optionalValues) => {
        const payload: Record<string, unknown> = {}
        required.forEach((m, i) => (payload[m.name] = values[i]))
        chosen.forEach((m, i) => (payload[m.name] = optionalValues[i]))
        return payload
      }),
    )
}

const catalogEvent: fc.Arbitrary<{type: EventType; payload: Record<string, unknown>}> = fc.constantFrom(...EVENT_TYPES).chain((type) => validPayload(type).map((payload) => ({payload, type})))

// ---------------------------------------------------------------------------------------------
// Properties

function checkFindings(findings: ReadonlyArray<{code: string; message: string; severity: string; where: string}>, codes: ReadonlySet<string>): void {
  for (const finding of findings) {
    assert.ok(codes.has(finding.code), `undocumented finding code ${finding.code}`)
    assert.ok(finding.severity === 'error' || finding.severity === 'warning')
    assert.ok(!UNSAFE_TEXT.test(finding.message), `finding message with control characters: ${JSON.stringify(finding.message)}`)
  }
}

export const contentProperties: FuzzProperty[] = [
  fuzzProperty(
    'subject: parseSubject returns only subjects validateSubject accepts, or ERR_SUBJECT_INVALID',
    400,
    fc.property(subjectInput, (text) => {
      const result = outcome('parseSubject', ['ERR_SUBJECT_INVALID'], () => parseSubject(text), {operatorText: true})
      if (!result.ok) return
      const findings = total('validateSubject', () => validateSubject(result.value))
      assert.deepEqual(findings.filter((f) => f.severity === 'error'), [])
      assert.equal(typeof result.value.format, 'string')
    }),
  ),
  fuzzProperty(
    'subject: valid subjects round trip (JSON text -> parseSubject -> equal) and validate clean',
    300,
    fc.property(validSubject, (subject) => {
      assert.deepEqual(total('validateSubject', () => validateSubject(subject)).filter((f) => f.severity === 'error'), [])
      const result = outcome('parseSubject', [], () => parseSubject(JSON.stringify(subject)))
      assert.ok(result.ok)
      assert.deepEqual(result.value, subject)
    }),
  ),
  fuzzProperty(
    'subject: a valid subject changed in one place is refused (validateSubject error, parseSubject ERR_SUBJECT_INVALID)',
    300,
    fc.property(invalidSubjectText, (text) => {
      const findings = total('validateSubject', () => validateSubject(parseText(text)))
      checkFindings(findings, SUBJECT_CODES)
      assert.ok(findings.some((f) => f.severity === 'error'), `no error for ${text}`)
      const result = outcome('parseSubject', ['ERR_SUBJECT_INVALID'], () => parseSubject(text), {operatorText: true})
      assert.ok(!result.ok)
    }),
  ),
  fuzzProperty(
    'subject: validateSubject and describeSubject never throw on any JSON; output is safe to display',
    300,
    fc.property(fc.oneof(hostileJsonText, invalidSubjectText, pollutionText), (text) => {
      const value = parseText(text)
      checkFindings(total('validateSubject', () => validateSubject(value)), SUBJECT_CODES)
      const shown = total('describeSubject', () => describeSubject(value))
      assert.ok(!UNSAFE_TEXT.test(shown))
      assert.ok(shown.length <= 501)
    }),
  ),
  fuzzProperty(
    'events: buildEventPayload throws only ERR_EVENT_INVALID and never creates prototype-reaching keys',
    300,
    fc.property(
      fc.oneof(fc.constantFrom(...EVENT_TYPES.map((t) => t.shortName), 'session-revoked', 'caep.nope', 'urn:example:custom', 'https://example.com/ev'), peerString(30)),
      fc.array(
        fc.oneof(
          fc.tuple(fc.oneof(peerKey, fc.constantFrom('a.b', '__proto__.polluted', 'constructor.prototype.polluted', 'a..b', 'reason_admin.en')), fc.oneof(jsonScalarText, hostileJsonText, pollutionText, peerString())).map(([k, v]) => `${k}=${v}`),
          peerString(30),
        ),
        {maxLength: 4},
      ),
      fc.oneof(fc.constant('{}'), hostileJsonText, pollutionText),
      (name, assignments, baseText) => {
        const base = parseText(baseText)
        const result = outcome('buildEventPayload', ['ERR_EVENT_INVALID'], () => buildEventPayload(name, assignments, base as Record<string, unknown>), {
          operatorText: true,
        })
        if (!result.ok) return
        const walk = (value: unknown): void => {
          if (typeof value !== 'object' || value === null) return
          for (const key of Object.keys(value)) {
            assert.ok(!['__proto__', 'constructor', 'prototype'].includes(key), `payload holds the key ${key}`)
            walk((value as Record<string, unknown>)[key])
          }

          assert.ok(Array.isArray(value) || Object.getPrototypeOf(value) === Object.prototype || Object.getPrototypeOf(value) === null)
        }

        walk(result.value.payload)
      },
    ),
  ),
  fuzzProperty(
    'events: key=value assignments round trip (value parsed as JSON, nested by dots)',
    300,
    fc.property(
      fc.uniqueArray(fc.tuple(fc.array(fc.stringMatching(/^[a-z_][a-z0-9_]{0,6}$/), {maxLength: 2, minLength: 1}).map((p) => p.join('.')), fc.jsonValue({maxDepth: 2}).filter((value) => !hasForbiddenKey(value))), {maxLength: 4, selector: ([key]) => key.split('.')[0]}),
      (pairs) => {
        const assignments = pairs.map(([key, value]) => `${key}=${JSON.stringify(value)}`)
        const result = outcome('buildEventPayload', [], () => buildEventPayload('https://example.com/custom', assignments))
        assert.ok(result.ok)
        for (const [key, value] of pairs) {
          const got: unknown = key.split('.').reduce<unknown>((at, segment) => (at as Record<string, unknown>)[segment], result.value.payload)
          assert.deepEqual(got, JSON.parse(JSON.stringify(value)))
        }
      },
    ),
  ),
  fuzzProperty(
    'events: checkEventPayload never throws; a valid catalog payload has no errors; a required member dropped or mistyped is an error',
    300,
    fc.property(catalogEvent, fc.constantFrom('none', 'drop', 'mistype'), fc.oneof(hostileJsonText, pollutionText), ({type, payload}, change, junk) => {
      const required = type.members.filter((m) => m.required)
      const target = required[0]
      const changed: Record<string, unknown> = {...payload}
      if (change !== 'none' && target !== undefined) {
        if (change === 'drop') delete changed[target.name]
        else changed[target.name] = target.type === 'string' ? 12 : 'not-the-right-type'
      }

      const findings = total('checkEventPayload', () => checkEventPayload(type.uri, changed))
      checkFindings(findings, EVENT_CODES)
      const errors = findings.filter((f) => f.severity === 'error')
      if (change === 'none' || target === undefined) assert.deepEqual(errors, [])
      else assert.ok(errors.some((f) => f.code === (change === 'drop' ? 'member-missing' : 'member-type')), `no error for ${change} of ${target.name}`)
      checkFindings(total('checkEventPayload', () => checkEventPayload(type.uri, parseText(junk))), EVENT_CODES)
      checkFindings(total('checkEventPayload', () => checkEventPayload(JSON.stringify(junk), parseText(junk))), EVENT_CODES)
    }),
  ),
  fuzzProperty(
    'lint: never throws on any header and claims; a valid SSF SET has no errors; each one-field violation is reported with its code',
    300,
    fc.property(
      catalogEvent,
      validSubject,
      fc.constantFrom('none', 'sub', 'exp', 'typ-missing', 'typ-wrong', 'two-events', 'no-sub-id', 'bad-sub-id', 'no-events'),
      fc.oneof(hostileJsonText, pollutionText),
      ({type, payload}, subject, change, junk) => {
        const header: Record<string, unknown> = {alg: 'RS256', typ: 'secevent+jwt'}
        const claims: Record<string, unknown> = {events: {[type.uri]: payload}, iat: 1, iss: 'https://op.example', jti: 'j1', sub_id: subject}
        const expected: Record<string, string> = {
          'bad-sub-id': 'subject-invalid', exp: 'exp-present', 'no-events': 'events-missing', 'no-sub-id': 'sub-id-missing', sub: 'sub-present',
          'two-events': 'events-count', 'typ-missing': 'typ-missing', 'typ-wrong': 'typ-wrong',
        }
        if (change === 'sub') claims.sub = 'x'
        if (change === 'exp') claims.exp = 2
        if (change === 'typ-missing') delete header.typ
        if (change === 'typ-wrong') header.typ = 'JWT'
        if (change === 'two-events') claims.events = {...payload && {[type.uri]: payload}, 'https://example.com/other': {}}
        if (change === 'no-sub-id') delete claims.sub_id
        if (change === 'bad-sub-id') claims.sub_id = {format: 'email'}
        if (change === 'no-events') delete claims.events
        for (const profile of ['ssf', 'caep-interop'] as const) {
          const findings = total('lintSet', () => lintSet({claims, header}, {keyBits: 2048, profile}))
          checkFindings(findings, LINT_CODES)
          const errors = findings.filter((f) => f.severity === 'error')
          if (change === 'none') assert.deepEqual(errors, [], `errors for a valid SET: ${JSON.stringify(errors)}`)
          else assert.ok(errors.some((f) => f.code === expected[change]), `${change}: expected ${expected[change]}, got ${JSON.stringify(errors.map((f) => f.code))}`)
        }

        const value = parseText(junk)
        checkFindings(total('lintSet', () => lintSet({claims: value as Record<string, unknown>, header: value as Record<string, unknown>})), LINT_CODES)
        checkFindings(total('lintSet', () => lintSet({claims: {...claims, events: value}, header: {typ: value}})), LINT_CODES)
      },
    ),
  ),
]
