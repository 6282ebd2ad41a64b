import fc from 'fast-check'
import {describe, expect, it} from 'vitest'

import {PushpullError} from '../../src/lib/errors.js'
import {describeSubject, parseSubject, SUBJECT_FORMAT_NAMES, validateSubject} from '../../src/lib/subject.js'

function parseError(input: string): PushpullError {
  try {
    parseSubject(input)
  } catch (error) {
    expect(error).toBeInstanceOf(PushpullError)
    return error as PushpullError
  }

  throw new Error(`parseSubject(${input}) did not throw`)
}

describe('parseSubject shorthand', () => {
  it.each([
    ['email:ana@example.com', {email: 'ana@example.com', format: 'email'}],
    ['iss_sub:https://idp.example|1234', {format: 'iss_sub', iss: 'https://idp.example', sub: '1234'}],
    ['iss_sub:https://idp.example|a|b', {format: 'iss_sub', iss: 'https://idp.example', sub: 'a|b'}],
    ['opaque:stream-1', {format: 'opaque', id: 'stream-1'}],
    ['phone_number:+15551234567', {format: 'phone_number', phone_number: '+15551234567'}],
    ['phone:+15551234567', {format: 'phone_number', phone_number: '+15551234567'}],
    ['account:acct:ana@example.com', {format: 'account', uri: 'acct:ana@example.com'}],
    ['account:ana@example.com', {format: 'account', uri: 'acct:ana@example.com'}],
    ['uri:https://example.com/users/ana', {format: 'uri', uri: 'https://example.com/users/ana'}],
    ['did:example:123456', {format: 'did', url: 'did:example:123456'}],
    ['did:did:example:123456', {format: 'did', url: 'did:example:123456'}],
    ['jwt_id:https://idp.example|f61t6e20', {format: 'jwt_id', iss: 'https://idp.example', jti: 'f61t6e20'}],
    ['saml_assertion_id:https://idp.example|_a75adf55', {assertion_id: '_a75adf55', format: 'saml_assertion_id', issuer: 'https://idp.example'}],
    ['ip-addresses:1.2.3.4, ::1', {format: 'ip-addresses', 'ip-addresses': ['1.2.3.4', '::1']}],
    ['  email:ana@example.com\n', {email: 'ana@example.com', format: 'email'}],
  ])('%s', (input, expected) => {
    expect(parseSubject(input)).toEqual(expected)
  })

  it('accepts JSON objects, including aliases and complex', () => {
    expect(parseSubject('{"format":"opaque","id":"x"}')).toEqual({format: 'opaque', id: 'x'})
    const aliases = {format: 'aliases', identifiers: [{email: 'a@example.com', format: 'email'}, {format: 'phone_number', phone_number: '+12065550100'}]}
    expect(parseSubject(JSON.stringify(aliases))).toEqual(aliases)
    const complex = {
      device: {format: 'iss_sub', iss: 'https://idp.example', sub: 'dev-1'},
      format: 'complex',
      tenant: {format: 'opaque', id: '123'},
      user: {format: 'aliases', identifiers: [{email: 'a@example.com', format: 'email'}]},
    }
    expect(parseSubject(JSON.stringify(complex))).toEqual(complex)
  })
})

describe('parseSubject refusals (ERR_SUBJECT_INVALID)', () => {
  it.each([
    ['', 'subject is empty; give FORMAT:VALUE (e.g. email:ana@example.com) or a JSON object'],
    ['ana@example.com', 'subject "ana@example.com" is neither FORMAT:VALUE (e.g. email:ana@example.com) nor a JSON object'],
    ['emial:ana@example.com', 'unknown subject format "emial" (did you mean "email"?)'],
    ['wat:x', 'unknown subject format "wat"'],
    ['email:', 'subject "email:" has no value after "email:"'],
    ['email:not-an-email', 'invalid subject: subject.email: "not-an-email" does not look like an email address'],
    ['phone_number:5551234', 'invalid subject: subject.phone_number: phone_number must be E.164: "+" then 2 to 15 digits, got "5551234"'],
    ['iss_sub:https://idp.example', 'subject "iss_sub:https://idp.example" must be iss_sub:ISS|SUB'],
    ['iss_sub:|1234', 'subject "iss_sub:|1234" must be iss_sub:ISS|SUB'],
    ['jwt_id:iss|', 'subject "jwt_id:iss|" must be jwt_id:ISS|JTI'],
    ['saml_assertion_id:only', 'subject "saml_assertion_id:only" must be saml_assertion_id:ISSUER|ASSERTION_ID'],
    ['ip-addresses:1.2.3.4,not-ip', 'invalid subject: subject.ip-addresses[1]: "not-ip" is not an IPv4 or IPv6 address'],
    ['uri:not a uri', 'invalid subject: subject.uri: "not a uri" is not an absolute URI'],
    ['did:nomethod', 'invalid subject: subject.url: did url must start with did:<method>:, got "did:nomethod"'],
    ['aliases:x', 'subject format "aliases" has no shorthand; give it as a JSON object'],
    ['complex:x', 'subject format "complex" has no shorthand; give it as a JSON object'],
  ])('%j', (input, message) => {
    const error = parseError(input)
    expect(error.code).toBe('ERR_SUBJECT_INVALID')
    expect(error.message).toBe(message)
  })

  it('bad JSON', () => {
    const error = parseError('{"format":"email",')
    expect(error.code).toBe('ERR_SUBJECT_INVALID')
    expect(error.message).toMatch(/^subject JSON does not parse: /)
  })

  it('JSON that is not an object', () => {
    const error = parseError('["email"]')
    expect(error.code).toBe('ERR_SUBJECT_INVALID')
    expect(error.message).toBe('invalid subject: subject: a subject identifier must be a JSON object, got an array')
  })

  it('missing and foreign members', () => {
    expect(parseError('{"format":"iss_sub","iss":"https://idp"}').message).toBe(
      'invalid subject: subject.sub: format "iss_sub" requires the member "sub"',
    )
    expect(parseError('{"format":"email","email":"a@example.com","sub":"x"}').message).toBe(
      'invalid subject: subject.sub: member "sub" is not defined for format "email"',
    )
  })

  it('prototype keys are foreign members and never reach a prototype', () => {
    const error = parseError('{"format":"opaque","id":"x","__proto__":{"polluted":true}}')
    expect(error.message).toBe('invalid subject: subject.__proto__: member "__proto__" is not defined for format "opaque"')
    expect(parseError('{"format":"opaque","id":"x","constructor":{"prototype":{}}}').message).toBe(
      'invalid subject: subject.constructor: member "constructor" is not defined for format "opaque"',
    )
    expect(({} as Record<string, unknown>).polluted).toBeUndefined()
  })

  it('nested aliases', () => {
    const nested = {format: 'aliases', identifiers: [{format: 'aliases', identifiers: [{email: 'a@example.com', format: 'email'}]}]}
    expect(parseError(JSON.stringify(nested)).message).toBe('invalid subject: subject.identifiers[0].format: aliases must not be nested inside aliases')
  })

  it('complex needs a member and cannot nest complex', () => {
    expect(parseError('{"format":"complex"}').message).toBe(
      'invalid subject: subject: a complex subject needs at least one of: user, device, session, application, tenant, org_unit, group',
    )
    expect(parseError('{"format":"complex","user":{"format":"complex","device":{"format":"opaque","id":"d"}}}').message).toBe(
      'invalid subject: subject.user.format: a complex subject cannot be nested inside another subject',
    )
    expect(parseError('{"format":"complex","user":{"format":"email","email":"bad"}}').message).toBe(
      'invalid subject: subject.user.email: "bad" does not look like an email address',
    )
  })
})

describe('validateSubject', () => {
  it('returns no findings for every valid format', () => {
    const valid: unknown[] = [
      {format: 'account', uri: 'acct:ana@example.com'},
      {email: 'ana@example.com', format: 'email'},
      {format: 'iss_sub', iss: 'https://idp', sub: '1'},
      {format: 'opaque', id: 'x'},
      {format: 'phone_number', phone_number: '+12065550100'},
      {format: 'did', url: 'did:example:123'},
      {format: 'uri', uri: 'urn:example:1'},
      {format: 'aliases', identifiers: [{format: 'opaque', id: 'x'}]},
      {format: 'jwt_id', iss: 'https://idp', jti: 'j'},
      {assertion_id: 'a', format: 'saml_assertion_id', issuer: 'https://idp'},
      {format: 'ip-addresses', 'ip-addresses': ['10.0.0.1', '2001:db8::1']},
      {format: 'complex', session: {format: 'opaque', id: 's'}},
    ]
    expect(valid.map((value) => (value as {format: string}).format).sort()).toEqual([...SUBJECT_FORMAT_NAMES].sort())
    for (const value of valid) expect(validateSubject(value)).toEqual([])
  })

  it('uses the given location in findings', () => {
    expect(validateSubject({format: 'email'}, 'claims.sub_id')).toEqual([
      {code: 'subject-invalid', message: 'format "email" requires the member "email"', severity: 'error', where: 'claims.sub_id.email'},
    ])
  })

  it('reports wrong member types', () => {
    expect(validateSubject({format: 'opaque', id: 42})).toEqual([
      {code: 'subject-invalid', message: '"id" must be a non-empty string, got a number', severity: 'error', where: 'sub_id.id'},
    ])
    expect(validateSubject({format: 'aliases', identifiers: []})).toEqual([
      {code: 'subject-invalid', message: '"identifiers" must be a non-empty array, got an array', severity: 'error', where: 'sub_id.identifiers'},
    ])
    expect(validateSubject({format: 7})).toEqual([
      {code: 'subject-invalid', message: '"format" must be a string, got a number', severity: 'error', where: 'sub_id.format'},
    ])
  })

  it('missing format', () => {
    expect(validateSubject({email: 'a@example.com'})).toEqual([
      {code: 'subject-invalid', message: 'the subject identifier has no "format" member', severity: 'error', where: 'sub_id.format'},
    ])
  })

  it('reports legacy subject_type as a warning and still validates the members', () => {
    expect(validateSubject({email: 'a@example.com', subject_type: 'email'})).toEqual([
      {code: 'legacy-subject', message: 'legacy "subject_type" used instead of "format" (deprecated; use "format")', severity: 'warning', where: 'sub_id.subject_type'},
    ])
    const findings = validateSubject({subject_type: 'iss-sub', iss: 'https://idp', sub: '1'})
    expect(findings.map((finding) => [finding.code, finding.severity])).toEqual([
      ['legacy-subject', 'warning'],
      ['subject-invalid', 'error'],
    ])
    expect(findings[1]?.message).toBe('unknown subject format "iss-sub" (did you mean "iss_sub"?)')
  })

  it('strips control characters from peer values quoted in messages', () => {
    const [finding] = validateSubject({email: '\u001b[31mred\u202e', format: 'email'})
    expect(finding?.message).toBe('"[31mred" does not look like an email address')
  })

  it('describeSubject is a sanitised one-liner', () => {
    expect(describeSubject({email: 'ana@example.com', format: 'email'})).toBe('email:ana@example.com')
    expect(describeSubject({format: 'complex', user: {format: 'opaque', id: 'u\u0007'}})).toBe('complex(user=opaque:u)')
  })

  it.each([
    'email:ana@example.com',
    'iss_sub:https://idp|1234',
    'opaque:stream-1',
    'phone_number:+15551234567',
    'account:acct:ana@example.com',
    'did:example:123',
    'uri:https://rp.example/users/1',
    'jwt_id:https://idp.example|jti-1',
    'saml_assertion_id:https://idp.example/saml|ID_1',
    'ip-addresses:1.2.3.4,::1',
  ])('describeSubject shows %s as the shorthand the user types', (text) => {
    expect(describeSubject(parseSubject(text))).toBe(text)
  })

  it('describeSubject: readable aliases and complex, key=value for anything without a shorthand', () => {
    const aliases = {format: 'aliases', identifiers: [{email: 'a@example.com', format: 'email'}, {format: 'opaque', id: 'u1'}]}
    expect(describeSubject(aliases)).toBe('aliases(email:a@example.com, opaque:u1)')
    expect(describeSubject({format: 'complex', session: {format: 'opaque', id: 'a b'}, user: aliases})).toBe('complex(session=(opaque:a b), user=aliases(email:a@example.com, opaque:u1))')
    expect(describeSubject({email: 'a@example.com', extra: 1, format: 'email'})).toBe('email email=a@example.com extra=1')
    expect(describeSubject({format: 'iss_sub', iss: 'https://idp|x', sub: '1'})).toBe('iss_sub iss=https://idp|x sub=1')
    expect(describeSubject({email: 'a@example.com', subject_type: 'email'})).toBe('email email=a@example.com')
    expect(describeSubject({format: 'did', url: 'did:did:x'})).toBe('did:did:did:x')
    expect(describeSubject({format: 'email', email: '\u001b[31mred\u202e@example.com'})).toBe('email:[31mred@example.com')
  })

  it('property: the shorthand describeSubject shows parses back to the same subject', () => {
    const part = fc.stringMatching(/^[\w.+@:/-]{1,20}$/)
    const ip = fc.oneof(fc.ipV4(), fc.ipV6())
    const subject = fc.oneof(
      part.map((v) => ({email: `${v}@example.com`, format: 'email'})),
      part.map((v) => ({format: 'opaque', id: v})),
      fc.integer({max: 99_999_999_999, min: 1_000_000}).map((n) => ({format: 'phone_number', phone_number: `+${n}`})),
      part.map((v) => ({format: 'account', uri: `acct:${v}@example.com`})),
      part.map((v) => ({format: 'did', url: `did:example:${v}`})),
      part.map((v) => ({format: 'uri', uri: `https://example.com/${v}`})),
      fc.tuple(part, fc.string({maxLength: 20, minLength: 1})).map(([a, b]) => ({format: 'iss_sub', iss: `https://${a}`, sub: b.trim() === '' ? 'x' : b.trim()})),
      fc.tuple(part, part).map(([a, b]) => ({format: 'jwt_id', iss: `https://${a}`, jti: b})),
      fc.tuple(part, part).map(([a, b]) => ({assertion_id: b, format: 'saml_assertion_id', issuer: `https://${a}`})),
      fc.array(ip, {maxLength: 4, minLength: 1}).map((list) => ({format: 'ip-addresses', 'ip-addresses': list})),
    )
    fc.assert(
      fc.property(subject, (value) => {
        if (validateSubject(value).some((f) => f.severity === 'error')) return
        const shown = describeSubject(value)
        expect(shown.startsWith(value.format === 'did' ? 'did:' : `${value.format}:`)).toBe(true)
        expect(parseSubject(shown)).toEqual(value)
      }),
      {numRuns: 500, seed: 424_242},
    )
  })
})
