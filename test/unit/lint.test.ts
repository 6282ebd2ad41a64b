import {describe, expect, it} from 'vitest'

import {EVENT_URI_BASES} from '../../src/lib/events.js'
import type {Finding} from '../../src/lib/findings.js'
import {lintSet} from '../../src/lib/lint.js'

const SESSION_REVOKED = `${EVENT_URI_BASES.caep}session-revoked`
const VERIFICATION = `${EVENT_URI_BASES.ssf}verification`

/** A SET that passes the SSF profile; each test breaks one thing. */
function goodSet(): {header: Record<string, unknown>; claims: Record<string, unknown>} {
  return {
    claims: {
      aud: 'https://sp.example.com/caep',
      events: {[SESSION_REVOKED]: {event_timestamp: 1_615_304_991, initiating_entity: 'policy'}},
      iat: 1_615_305_159,
      iss: 'https://idp.example.com/',
      jti: '24c63fb56e5a2d77a6b512616ca9fa24',
      sub_id: {format: 'opaque', id: 'dMTlD|1600802906337.16|16008.16'},
    },
    header: {alg: 'RS256', kid: 'k1', typ: 'secevent+jwt'},
  }
}

const codes = (findings: Finding[]) => findings.map((finding) => finding.code)

describe('lintSet (ssf profile)', () => {
  it('a conforming SET has no findings', () => {
    expect(lintSet(goodSet())).toEqual([])
  })

  it('typ-missing / typ-wrong / application/secevent+jwt accepted', () => {
    const set = goodSet()
    delete set.header.typ
    expect(lintSet(set)).toEqual([
      {code: 'typ-missing', message: 'header "typ" is missing; a SET must say "secevent+jwt"', severity: 'error', where: 'header.typ'},
    ])
    set.header.typ = 'JWT'
    expect(lintSet(set)).toEqual([{code: 'typ-wrong', message: 'header "typ" is "JWT"; a SET must say "secevent+jwt"', severity: 'error', where: 'header.typ'}])
    set.header.typ = 42
    expect(lintSet(set)[0]?.message).toBe('header "typ" is 42; a SET must say "secevent+jwt"')
    set.header.typ = 'Application/SecEvent+JWT'
    expect(lintSet(set)).toEqual([])
  })

  it('sub-present', () => {
    const set = goodSet()
    set.claims.sub = 'ana'
    expect(lintSet(set)).toEqual([
      {code: 'sub-present', message: 'SETs must not carry "sub"; use "sub_id" for the subject', severity: 'error', where: 'claims.sub'},
    ])
  })

  it('exp-present', () => {
    const set = goodSet()
    set.claims.exp = 1_615_400_000
    expect(lintSet(set)).toEqual([
      {code: 'exp-present', message: 'SETs must not carry "exp": an event does not expire', severity: 'error', where: 'claims.exp'},
    ])
  })

  it('sub-id-missing', () => {
    const set = goodSet()
    delete set.claims.sub_id
    expect(lintSet(set)).toEqual([
      {code: 'sub-id-missing', message: 'top-level "sub_id" is missing; SSF puts the subject identifier there', severity: 'error', where: 'claims.sub_id'},
    ])
  })

  it('subject-invalid for a bad sub_id', () => {
    const set = goodSet()
    set.claims.sub_id = {email: 'nope', format: 'email', extra: 1}
    expect(lintSet(set)).toEqual([
      {code: 'subject-invalid', message: 'member "extra" is not defined for format "email"', severity: 'error', where: 'claims.sub_id.extra'},
      {code: 'subject-invalid', message: '"nope" does not look like an email address', severity: 'error', where: 'claims.sub_id.email'},
    ])
  })

  it('legacy-subject for subject_type in sub_id', () => {
    const set = goodSet()
    set.claims.sub_id = {id: 'x', subject_type: 'opaque'}
    expect(lintSet(set)).toEqual([
      {
        code: 'legacy-subject',
        message: 'legacy "subject_type" used instead of "format" (deprecated; use "format")',
        severity: 'warning',
        where: 'claims.sub_id.subject_type',
      },
    ])
  })

  it('legacy-subject for a subject inside the event (old RISC shape); its problems are only warnings', () => {
    const set = goodSet()
    delete set.claims.sub_id
    set.claims.events = {[`${EVENT_URI_BASES.risc}account-disabled`]: {reason: 'hijacking', subject: {iss: 'https://idp', sub: '1', subject_type: 'iss-sub'}}}
    const findings = lintSet(set)
    const where = `claims.events.${EVENT_URI_BASES.risc}account-disabled`
    expect(findings.map((finding) => [finding.code, finding.severity, finding.where])).toEqual([
      ['sub-id-missing', 'error', 'claims.sub_id'],
      ['legacy-subject', 'warning', `${where}.subject`],
      ['legacy-subject', 'warning', `${where}.subject.subject_type`],
      ['subject-invalid', 'warning', `${where}.subject.subject_type`],
    ])
    expect(findings[3]?.message).toBe('unknown subject format "iss-sub" (did you mean "iss_sub"?)')
  })

  it('legacy-subject for subject_type inside the event', () => {
    const set = goodSet()
    set.claims.events = {[SESSION_REVOKED]: {subject_type: 'email'}}
    expect(lintSet(set)).toEqual([
      {
        code: 'legacy-subject',
        message: 'legacy "subject_type" inside the event; SSF uses "sub_id" with "format"',
        severity: 'warning',
        where: `claims.events.${SESSION_REVOKED}.subject_type`,
      },
    ])
  })

  it('events-missing', () => {
    const set = goodSet()
    delete set.claims.events
    expect(lintSet(set)).toEqual([{code: 'events-missing', message: '"events" is missing or not a JSON object', severity: 'error', where: 'claims.events'}])
    set.claims.events = ['x']
    expect(codes(lintSet(set))).toEqual(['events-missing'])
  })

  it('events-count: none or more than one', () => {
    const set = goodSet()
    set.claims.events = {}
    expect(lintSet(set)).toEqual([
      {code: 'events-count', message: 'SSF requires exactly one event per SET, found 0', severity: 'error', where: 'claims.events'},
    ])
    set.claims.events = {[SESSION_REVOKED]: {}, [`${EVENT_URI_BASES.caep}session-presented`]: {}}
    expect(lintSet(set)).toEqual([
      {code: 'events-count', message: 'SSF requires exactly one event per SET, found 2', severity: 'error', where: 'claims.events'},
    ])
  })

  it('event-unknown is a warning', () => {
    const set = goodSet()
    set.claims.events = {'https://example.com/custom': {}}
    expect(lintSet(set)).toEqual([
      {
        code: 'event-unknown',
        message: 'event type "https://example.com/custom" is not in the CAEP/RISC/SSF catalog',
        severity: 'warning',
        where: 'claims.events.https://example.com/custom',
      },
    ])
  })

  it('member-missing and member-value come from the payload check', () => {
    const set = goodSet()
    const uri = `${EVENT_URI_BASES.caep}device-compliance-change`
    set.claims.events = {[uri]: {current_status: 'broken'}}
    expect(lintSet(set).map((finding) => [finding.code, finding.severity, finding.where])).toEqual([
      ['member-missing', 'error', `claims.events.${uri}.previous_status`],
      ['member-value', 'error', `claims.events.${uri}.current_status`],
    ])
  })

  it('event-payload when the event value is not an object', () => {
    const set = goodSet()
    set.claims.events = {[SESSION_REVOKED]: 'revoked'}
    expect(codes(lintSet(set))).toEqual(['event-payload'])
  })

  it('verification-subject: a verification event wants an opaque stream id', () => {
    const set = goodSet()
    set.claims.events = {[VERIFICATION]: {state: 'abc'}}
    expect(lintSet(set)).toEqual([])
    set.claims.sub_id = {email: 'a@example.com', format: 'email'}
    expect(lintSet(set)).toEqual([
      {
        code: 'verification-subject',
        message: 'a verification event identifies the stream: "sub_id" should be {"format": "opaque", "id": <stream id>}',
        severity: 'warning',
        where: 'claims.sub_id.format',
      },
    ])
  })

  it('does not apply caep-interop checks under the ssf profile', () => {
    const set = goodSet()
    set.header.alg = 'ES256'
    expect(lintSet(set, {keyBits: 1024})).toEqual([])
  })

  it('survives non-object header and claims', () => {
    const findings = lintSet({claims: null as unknown as Record<string, unknown>, header: 'x' as unknown as Record<string, unknown>})
    expect(codes(findings)).toEqual(['typ-missing', 'sub-id-missing', 'events-missing'])
  })
})

describe('lintSet (caep-interop profile)', () => {
  it('RS256 with a 2048-bit key passes', () => {
    expect(lintSet(goodSet(), {keyBits: 2048, profile: 'caep-interop'})).toEqual([])
    expect(lintSet(goodSet(), {profile: 'caep-interop'})).toEqual([])
  })

  it('alg-not-rs256', () => {
    const set = goodSet()
    set.header.alg = 'ES256'
    expect(lintSet(set, {profile: 'caep-interop'})).toEqual([
      {code: 'alg-not-rs256', message: 'the CAEP interoperability profile requires RS256, header "alg" is "ES256"', severity: 'error', where: 'header.alg'},
    ])
    delete set.header.alg
    expect(lintSet(set, {profile: 'caep-interop'})[0]?.message).toBe('the CAEP interoperability profile requires RS256, header "alg" is missing')
  })

  it('key-too-small', () => {
    expect(lintSet(goodSet(), {keyBits: 1024, profile: 'caep-interop'})).toEqual([
      {
        code: 'key-too-small',
        message: 'the CAEP interoperability profile requires an RSA key of at least 2048 bits, this one has 1024',
        severity: 'error',
        where: 'header.kid',
      },
    ])
  })
})
