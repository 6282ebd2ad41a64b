/**
 * Regression tests for bounds added by the input-hardening audit (docs/hardening-audit.md).
 * Each test names the finding it guards.
 */
import {describe, expect, it} from 'vitest'

import {encodeBase64url} from '../../src/lib/base64url.js'
import {parseCommunicationObject, parsePollResponse} from '../../src/lib/communication.js'
import {PushpullError} from '../../src/lib/errors.js'
import {checkEventPayload} from '../../src/lib/events.js'
import {readSigningKey, readVerificationKeys} from '../../src/lib/keys.js'
import {lintSet} from '../../src/lib/lint.js'
import {decodeSet, decodeToken, extractTokens} from '../../src/lib/set.js'
import {describeSubject} from '../../src/lib/subject.js'
import {closestMatch, editDistance} from '../../src/lib/suggest.js'
import {createVerifier} from '../../src/lib/verify.js'

const HEADER = '{"alg":"none","typ":"secevent+jwt"}'

function unsigned(payload: string, header = HEADER): string {
  return `${encodeBase64url(header)}.${encodeBase64url(payload)}.`
}

function nestedObject(depth: number): string {
  return `${'{"a":'.repeat(depth)}1${'}'.repeat(depth)}`
}

function caught(fn: () => unknown): PushpullError {
  try {
    fn()
  } catch (error) {
    expect(error).toBeInstanceOf(PushpullError)
    return error as PushpullError
  }

  throw new Error('expected a PushpullError')
}

describe('A1: SET header and payload nesting depth (set.ts decodeToken)', () => {
  // Before the fix a payload with sub_id nested 2000 deep decoded, and describeSubject (used by the
  // receiver and by `decode`) then threw a RangeError (stack overflow), not a PushpullError.
  it('refuses a payload nested deeper than 32 before parsing it', () => {
    const token = unsigned(`{"iss":"a","iat":1,"jti":"j","events":{"x:y":{}},"sub_id":{"format":"opaque","id":"x","n":${nestedObject(2000)}}}`)
    const error = caught(() => decodeToken(token))
    expect(error.code).toBe('ERR_SET_MALFORMED')
    expect(error.message).toBe('the SET payload is nested deeper than the limit of 32')
    expect(error.details).toEqual({limit: 32})
  })

  it('refuses a header nested deeper than the limit, and the verifier reports it as malformed', async () => {
    const typ = `${'['.repeat(40)}${']'.repeat(40)}`
    const token = unsigned('{"iss":"a","iat":1,"jti":"j","events":{"x:y":{}}}', `{"alg":"ES256","typ":${typ}}`)
    expect(caught(() => decodeToken(token)).message).toBe('the SET header is nested deeper than the limit of 32')
    await expect(createVerifier().verify(token)).rejects.toMatchObject({
      code: 'ERR_SET_MALFORMED',
      message: 'the SET header is nested deeper than the limit of 32',
    })
  })

  it('accepts exactly the limit, and the limit is an option', () => {
    // payload object (1) + events (2) + event (3) + 29 more levels = 32
    const payload = `{"iss":"a","iat":1,"jti":"j","events":{"x:y":${nestedObject(29).replace(/1(?=})/, '{}')}}}`
    expect(decodeSet(unsigned(payload)).claims.jti).toBe('j')
    const error = caught(() => decodeToken(unsigned(payload), {maxDepth: 31}))
    expect(error.message).toBe('the SET payload is nested deeper than the limit of 31')
  })

  it('does not count brackets inside strings', () => {
    const payload = `{"iss":"${'['.repeat(100)}","iat":1,"jti":"j","events":{"x:y":{}}}`
    expect(decodeSet(unsigned(payload)).claims.iss).toBe('['.repeat(100))
  })

  it('refuses a bad maxDepth option with ERR_CONFIG', () => {
    const error = caught(() => decodeToken(unsigned('{}'), {maxDepth: 0}))
    expect(error.code).toBe('ERR_CONFIG')
    expect(error.message).toBe('maxDepth must be a positive integer, got 0')
  })
})

describe('A2: describeSubject recursion (subject.ts)', () => {
  it('stops at a fixed depth instead of exhausting the stack', () => {
    let subject: Record<string, unknown> = {format: 'opaque', id: 'leaf'}
    for (let i = 0; i < 50_000; i++) subject = {format: 'complex', user: subject}
    const text = describeSubject(subject)
    expect(text).toBe('complex(user=complex(user=complex(user=complex(user=…))))')
  })

  it('does not stringify nested arrays (Array#toString recurses)', () => {
    let deep: unknown = []
    for (let i = 0; i < 50_000; i++) deep = [deep]
    expect(describeSubject({format: 'ip-addresses', 'ip-addresses': [deep, '::1']})).toBe('ip-addresses ip-addresses=[…],::1')
    expect(describeSubject(deep)).toBe('[…]')
  })

  it('still shows a valid nested subject in full', () => {
    const subject = {format: 'complex', user: {format: 'aliases', identifiers: [{format: 'email', email: 'a@example.com'}, {format: 'opaque', id: 'u1'}]}}
    expect(describeSubject(subject)).toBe('complex(user=aliases(email:a@example.com, opaque:u1))')
  })
})

describe('A3: did-you-mean on long peer text (suggest.ts closestMatch)', () => {
  // Before the fix, lint of a SET whose event URI was 48 KB long spent ~0.6 s in edit distances
  // (64 KiB x 30 catalog URIs); a 4 MiB URI took about a minute. The length prune makes it linear.
  it('a 4 MiB unknown event URI is reported without a suggestion, quickly enough to finish at all', () => {
    const uri = `https://example.com/${'a'.repeat(4 * 1024 * 1024)}`
    const findings = checkEventPayload(uri, {})
    expect(findings).toHaveLength(1)
    expect(findings[0]?.code).toBe('event-unknown')
    expect(findings[0]?.message).not.toContain('did you mean')
  })

  it('lint of a SET with a long unknown member name still finishes and warns about nothing else', () => {
    const uri = 'https://schemas.openid.net/secevent/caep/event-type/session-revoked'
    const claims = {events: {[uri]: {['x'.repeat(200_000)]: 1}}, iat: 1, iss: 'a', jti: 'j', sub_id: {format: 'opaque', id: 'x'}}
    expect(lintSet({claims, header: {alg: 'RS256', typ: 'secevent+jwt'}})).toEqual([])
  })

  it('gives the same answer as the unpruned search', () => {
    const candidates = ['session-revoked', 'credential-change', 'caep.session-revoked', 'risc.account-disabled', 'opt-in', 'verification']
    const reference = (input: string, maxDistance?: number): string | undefined => {
      const needle = input.trim().toLowerCase()
      if (needle === '') return undefined
      const limit = maxDistance ?? Math.max(2, Math.floor(needle.length / 3))
      let best: string | undefined
      let bestDistance = Number.POSITIVE_INFINITY
      for (const candidate of candidates) {
        const hay = candidate.toLowerCase()
        const contains = needle.length >= 4 && hay.length >= 4 && (hay.includes(needle) || needle.includes(hay))
        const distance = contains ? Math.min(1, editDistance(needle, hay)) : editDistance(needle, hay)
        if (distance < bestDistance) {
          best = candidate
          bestDistance = distance
        }
      }

      return bestDistance <= limit ? best : undefined
    }

    const inputs = ['sesion-revoked', 'session', 'SESSION-REVOKED', 'opt', 'optin', 'x', 'verifcation', 'caep.session-revoke', 'account-disabled', 'risc.account', 'zzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzz', 'credential']
    for (const input of inputs) {
      expect(closestMatch(input, candidates), input).toBe(reference(input))
      expect(closestMatch(input, candidates, 2), input).toBe(reference(input, 2))
    }
  })
})

describe('A4: JSON syntax errors quote peer text (json.ts parseJsonBounded)', () => {
  // V8's JSON.parse messages quote the text around the error. Before the fix that text went into
  // our message as it was, so a peer could put an OSC/CSI escape into the user's terminal.
  const hostile = '{"sets":x\u001b]2;pwned\u0007\u001b[31m\u202Ered}'

  it('strips control and bidi characters from the message of a request parser', () => {
    const error = caught(() => parseCommunicationObject(hostile))
    expect(error.code).toBe('ERR_MESSAGE_INVALID')
    expect(error.message).toMatch(/^body is not valid JSON: Unexpected token 'x', "\{"sets":x\]2;pwned/)
    expect(error.message).not.toContain('\u001b')
    expect(error.message).not.toContain('\u0007')
  })

  it('and of a response parser', () => {
    const error = caught(() => parsePollResponse(hostile))
    expect(error.code).toBe('ERR_PEER_PROTOCOL')
    expect(error.message).toMatch(/^body is not valid JSON: /)
    for (const char of ['\u001b', '\u0007', '\u202e']) expect(error.message).not.toContain(char)
  })
})

describe('A5: extractTokens names a bad "sets" key safely (set.ts)', () => {
  it('quotes the key after sanitising it', () => {
    const [entry] = extractTokens('{"sets":{"j\\u001b[2J1":5}}')
    expect(entry?.error?.code).toBe('ERR_SET_MALFORMED')
    expect(entry?.error?.message).toBe('the "sets" value under "j[2J1" is not a string')
  })
})

describe('A6: lint shows a non-string typ sanitised (lint.ts)', () => {
  it('strips bidi overrides from a JSON typ (JSON.stringify escapes C0 controls but not U+202E)', () => {
    const findings = lintSet({claims: {}, header: {typ: [{'\u202Eevil\u001b[2J': {}}]}})
    expect(findings[0]).toEqual({code: 'typ-wrong', message: 'header "typ" is [{"evil\\u001b[2J":{}}]; a SET must say "secevent+jwt"', severity: 'error', where: 'header.typ'})
  })
})

describe('A7: NumericDates outside the Date range (set.ts validateClaims)', () => {
  // Before the fix the verifier formatted `exp`/`nbf` with new Date(v * 1000).toISOString(), which
  // throws a RangeError (not a PushpullError) for values beyond ±8.64e12 s. Found by fuzz-long.
  const claims = (extra: string): string => `{"iss":"a","iat":1,"jti":"j","events":{"x:y":{}}${extra}}`

  it.each([
    ['exp', '-8640000000000.001'],
    ['nbf', '9007199254740992'],
    ['toe', '1e300'],
  ])('refuses %s = %s with ERR_SET_CLAIMS, in decodeSet and in the verifier', async (name, value) => {
    const token = unsigned(claims(`,"${name}":${value}`))
    const message = `the SET "${name}" is outside the representable range of dates (±8640000000000 s)`
    expect(caught(() => decodeSet(token))).toMatchObject({code: 'ERR_SET_CLAIMS', message})
    await expect(createVerifier({allowUnsigned: true}).verify(token)).rejects.toMatchObject({code: 'ERR_SET_CLAIMS', message})
  })

  it('refuses such an iat too, and accepts the edge of the range', () => {
    expect(caught(() => decodeSet(unsigned('{"iss":"a","iat":8640000000001,"jti":"j","events":{"x:y":{}}}'))).message).toBe(
      'the SET "iat" is outside the representable range of dates (±8640000000000 s)',
    )
    expect(decodeSet(unsigned(claims(',"exp":8640000000000,"nbf":-8640000000000'))).claims.exp).toBe(8_640_000_000_000)
  })
})

describe('A8: an event URI in a claims error is sanitised (set.ts validateClaims)', () => {
  it('quotes the URI after stripping control and bidi characters', () => {
    const token = unsigned('{"iss":"a","iat":1,"jti":"j","events":{"\\u001b[31m\\u202Eevil":[]}}')
    expect(caught(() => decodeSet(token))).toMatchObject({code: 'ERR_SET_CLAIMS', message: 'the SET event "[31mevil" is not a JSON object'})
  })
})

describe('A9: key files are read with a size bound (keys.ts readKeyFile)', () => {
  // Before the fix `--key /dev/zero` (or any huge file) was read whole until memory ran out.
  it('refuses an endless file after 16 MiB with ERR_KEY_INVALID, for verification and signing keys', async () => {
    const message = '/dev/zero: is larger than 16777216 bytes; not a key file'
    await expect(readVerificationKeys('/dev/zero')).rejects.toMatchObject({code: 'ERR_KEY_INVALID', message})
    await expect(readSigningKey('/dev/zero')).rejects.toMatchObject({code: 'ERR_KEY_INVALID', message})
  })

  it('still names a missing file and a directory plainly', async () => {
    await expect(readVerificationKeys('/nonexistent/key.pem')).rejects.toMatchObject({code: 'ERR_KEY_INVALID', message: '/nonexistent/key.pem: no such file'})
    await expect(readVerificationKeys('/tmp')).rejects.toMatchObject({code: 'ERR_KEY_INVALID', message: '/tmp: cannot be read (EISDIR)'})
  })
})
