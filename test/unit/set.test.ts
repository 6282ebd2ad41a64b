import {readFileSync} from 'node:fs'
import {join} from 'node:path'

import {describe, expect, it} from 'vitest'

import {isPushpullError} from '../../src/lib/errors.js'
import {decodeSet, decodeToken, extractTokens, validateClaims} from '../../src/lib/set.js'
import {ROOT} from '../helpers/cli.js'

const VECTOR = readFileSync(join(ROOT, 'test', 'fixtures', 'rfc8935-push-example.jwt'), 'utf8')
const b64 = (value: unknown): string => Buffer.from(typeof value === 'string' ? value : JSON.stringify(value)).toString('base64url')
const token = (header: unknown, payload: unknown, signature = 'c2ln'): string => `${b64(header)}.${b64(payload)}.${signature}`
const CLAIMS = {events: {'urn:x': {}}, iat: 1, iss: 'https://i.example', jti: 'j1'}

function failure(fn: () => unknown): {code: string; message: string} {
  try {
    fn()
  } catch (error) {
    if (isPushpullError(error)) return {code: error.code, message: error.message}
    throw error
  }

  throw new Error('expected a failure')
}

describe('decodeToken / decodeSet', () => {
  it('decodes the RFC 8935 example (header JSON ends with a newline) to the published values', () => {
    const set = decodeSet(`\n  ${VECTOR}\n\n`)
    expect(set.header).toEqual({alg: 'HS256', typ: 'secevent+jwt'})
    expect(set.claims.iss).toBe('https://idp.example.com/')
    expect(set.claims.jti).toBe('756E69717565206964656E746966696572')
    expect(set.claims.iat).toBe(1_508_184_845)
    expect(set.claims.aud).toBe('636C69656E745F6964')
    expect(Object.keys(set.claims.events)).toEqual(['https://schemas.openid.net/secevent/risc/event-type/account-disabled'])
    expect(set.claims.events['https://schemas.openid.net/secevent/risc/event-type/account-disabled']?.reason).toBe('hijacking')
    expect(set.token).toBe(VECTOR.trim())
    expect(set.signature).toBe('Y4rXxMD406P2edv00cr9Wf3_XwNtLjB9n-jTqN1_lLc')
    expect(set.signingInput).toBe(VECTOR.trim().split('.').slice(0, 2).join('.'))
  })

  it('recognises a 5-part JWE as encrypted', () => {
    expect(failure(() => decodeToken('eyJhbGciOiJSU0EtT0FFUCJ9.a.b.c.d'))).toEqual({
      code: 'ERR_SET_ENCRYPTED',
      message: 'the SET is encrypted (a 5-part JWE); encrypted SETs need a decryption key',
    })
  })

  it('refuses a token over maxBytes before parsing anything', () => {
    expect(failure(() => decodeToken('!'.repeat(101), {maxBytes: 100}))).toEqual({code: 'ERR_SET_TOO_LARGE', message: 'the SET is larger than the 100-byte limit'})
    expect(failure(() => decodeToken(token({alg: 'HS256'}, {pad: 'x'.repeat(70_000)})))).toEqual({
      code: 'ERR_SET_TOO_LARGE',
      message: 'the SET is larger than the 65536-byte limit',
    })
  })

  it.each([
    ['two parts', 'abc.def', 'the SET is not a compact JWS: expected 3 dot-separated parts, found 2'],
    ['four parts', 'a.b.c.d', 'the SET is not a compact JWS: expected 3 dot-separated parts, found 4'],
    ['empty', '   ', 'the SET is empty'],
    ['header not base64url', `e*J.${b64(CLAIMS)}.x`, 'the SET header is not valid base64url'],
    ['empty header', `.${b64(CLAIMS)}.x`, 'the SET header is not valid base64url'],
    ['payload not base64url', `${b64({alg: 'HS256'})}.a+b/.x`, 'the SET payload is not valid base64url'],
    ['header not JSON', `${b64('{alg')}.${b64(CLAIMS)}.x`, 'the SET header is not JSON'],
    ['payload not JSON', `${b64({alg: 'HS256'})}.${b64('nope')}.x`, 'the SET payload is not JSON'],
    ['payload an array', token({alg: 'HS256'}, [1]), 'the SET payload is not a JSON object'],
    ['header null', token(null, CLAIMS), 'the SET header is not a JSON object'],
    ['header without alg', token({typ: 'secevent+jwt'}, CLAIMS), 'the SET header has no "alg" string'],
    ['signature not base64url', token({alg: 'HS256'}, CLAIMS, 's+g='), 'the SET signature is not valid base64url'],
  ])('refuses a malformed token: %s', (_name, input, message) => {
    expect(failure(() => decodeToken(input))).toEqual({code: 'ERR_SET_MALFORMED', message})
  })

  it('never lets a "__proto__" claim reach a prototype', () => {
    const set = decodeToken(`${b64({alg: 'HS256'})}.${b64('{"__proto__":{"polluted":true},"iss":"x"}')}.c2ln`)
    expect(set.payload.iss).toBe('x')
    expect(Object.getPrototypeOf(set.payload)).toBe(Object.prototype)
    expect(({} as Record<string, unknown>).polluted).toBeUndefined()
    expect(Object.hasOwn(set.payload, '__proto__')).toBe(false)
  })
})

describe('validateClaims', () => {
  it('accepts minimal claims and keeps optional ones', () => {
    const claims = validateClaims({...CLAIMS, aud: ['a', 'b'], sub_id: {email: 'a@b', format: 'email'}, toe: 5, txn: 't', x: 1})
    expect(claims).toMatchObject({aud: ['a', 'b'], toe: 5, txn: 't', x: 1})
  })

  it.each([
    ['iss missing', {...CLAIMS, iss: undefined}, 'the SET has no "iss" string'],
    ['iat a string', {...CLAIMS, iat: '1'}, 'the SET has no numeric "iat"'],
    ['jti missing', {...CLAIMS, jti: undefined}, 'the SET has no "jti"'],
    ['jti empty', {...CLAIMS, jti: ''}, 'the SET "jti" is empty'],
    ['jti a number', {...CLAIMS, jti: 7}, 'the SET "jti" is not a string'],
    ['events missing', {...CLAIMS, events: undefined}, 'the SET has no "events" claim'],
    ['events {}', {...CLAIMS, events: {}}, 'the SET "events" claim is empty; a SET carries at least one event'],
    ['events an array', {...CLAIMS, events: [{}]}, 'the SET "events" claim is not a JSON object'],
    ['events a string', {...CLAIMS, events: 'x'}, 'the SET "events" claim is not a JSON object'],
    ['event value not an object', {...CLAIMS, events: {'urn:x': true}}, 'the SET event "urn:x" is not a JSON object'],
    ['event value null', {...CLAIMS, events: {'urn:x': null}}, 'the SET event "urn:x" is not a JSON object'],
    ['aud a number', {...CLAIMS, aud: 3}, 'the SET "aud" is neither a string nor an array of strings'],
    ['aud with a number', {...CLAIMS, aud: ['a', 3]}, 'the SET "aud" is neither a string nor an array of strings'],
    ['txn a number', {...CLAIMS, txn: 3}, 'the SET "txn" is not a string'],
    ['toe a string', {...CLAIMS, toe: 'now'}, 'the SET "toe" is not a number'],
    ['exp a string', {...CLAIMS, exp: 'later'}, 'the SET "exp" is not a number'],
    ['sub_id a string', {...CLAIMS, sub_id: 'ana'}, 'the SET "sub_id" is not a JSON object'],
  ])('refuses %s', (_name, claims, message) => {
    expect(failure(() => validateClaims(claims as Record<string, unknown>))).toEqual({code: 'ERR_SET_CLAIMS', message})
  })
})

describe('extractTokens', () => {
  it('splits tokens on whitespace and newlines', () => {
    expect(extractTokens(' a.b.c\n\nd.e.f \t g.h.i\n')).toEqual([
      {index: 0, token: 'a.b.c'},
      {index: 1, token: 'd.e.f'},
      {index: 2, token: 'g.h.i'},
    ])
    expect(extractTokens(' \n')).toEqual([])
  })

  it('takes the "sets" of a Communication Object or poll response, keeping the keys', () => {
    const entries = extractTokens(JSON.stringify({ack: ['x'], moreAvailable: false, sets: {j1: 'a.b.c', j2: 'd.e.f'}}))
    expect(entries).toEqual([
      {index: 0, key: 'j1', token: 'a.b.c'},
      {index: 1, key: 'j2', token: 'd.e.f'},
    ])
  })

  it('reports a "sets" value that is not a string as an entry error', () => {
    const [entry] = extractTokens('{"sets":{"j1":42}}')
    expect(entry?.error?.code).toBe('ERR_SET_MALFORMED')
    expect(entry?.error?.message).toBe('the "sets" value under "j1" is not a string')
  })

  it.each([
    ['{"sets":', 'the input starts with "{" but is not valid JSON'],
    ['{"ack":[]}', 'the JSON input has no "sets" member (expected a Communication Object or poll response)'],
    ['{"sets":["a.b.c"]}', 'the "sets" member is not a JSON object'],
  ])('refuses the document %s', (text, message) => {
    expect(failure(() => extractTokens(text))).toEqual({code: 'ERR_MESSAGE_INVALID', message})
  })
})
