import {describe, expect, it} from 'vitest'

import {
  buildCommunicationObject,
  buildMultiPushRequest,
  buildMultiPushResponse,
  buildPollRequest,
  buildPollResponse,
  DEFAULT_LIMITS,
  MISSING_ERR,
  parseCommunicationObject,
  parseMultiPushRequest,
  parseMultiPushResponse,
  parsePollRequest,
  parsePollResponse,
} from '../../src/lib/communication.js'
import {failure} from '../helpers/errors.js'

const BAD_REQUEST = {status: 400, err: 'invalid_request', closeCode: 1007}
const TOO_LARGE = {status: 413, closeCode: 1009}


function setsOf(count: number): Record<string, string> {
  const sets: Record<string, string> = {}
  for (let i = 0; i < count; i++) sets[`jti-${i}`] = `h.p${i}.s`
  return sets
}

describe('DEFAULT_LIMITS', () => {
  it('has the documented defaults', () => {
    expect(DEFAULT_LIMITS).toEqual({maxBytes: 1_048_576, maxSets: 1000, maxSetBytes: 65_536, maxDepth: 32, maxDescriptionLength: 500})
  })
})

describe('parseCommunicationObject', () => {
  it('normalises a full object', () => {
    const co = parseCommunicationObject(
      JSON.stringify({sets: {a: 'h.p.s', b: 'h.q.s'}, ack: ['x', 'y', 'x'], setErrs: {z: {err: 'invalid_key', description: 'bad sig'}}, maxResponseEvents: 5}),
    )
    expect([...co.sets]).toEqual([
      ['a', 'h.p.s'],
      ['b', 'h.q.s'],
    ])
    expect(co.invalidSets.size).toBe(0)
    expect(co.ack).toEqual(['x', 'y'])
    expect([...co.setErrs]).toEqual([['z', {err: 'invalid_key', description: 'bad sig'}]])
    expect(co.conflicts).toEqual([])
    expect(co.maxResponseEvents).toBe(5)
  })

  it('accepts {} and Buffer input', () => {
    const co = parseCommunicationObject(Buffer.from('{}'))
    expect(co.sets.size).toBe(0)
    expect(co.ack).toEqual([])
    expect(co.setErrs.size).toBe(0)
    expect(co.maxResponseEvents).toBeUndefined()
  })

  // bad-inputs.md: truncated JSON; JSON that is not an object
  it.each([
    ['{"sets":{', /^body is not valid JSON: /],
    ['[]', /^Communication Object: expected a JSON object, got an array$/],
    ['42', /^Communication Object: expected a JSON object, got the number 42$/],
    ['null', /^Communication Object: expected a JSON object, got null$/],
    ['"x"', /^Communication Object: expected a JSON object, got a string$/],
  ])('rejects %s with 400 invalid_request / 1007', (text, message) => {
    const error = failure(() => parseCommunicationObject(text))
    expect(error.code).toBe('ERR_MESSAGE_INVALID')
    expect(error.message).toMatch(message)
    expect(error.details).toMatchObject(BAD_REQUEST)
  })

  // bad-inputs.md: `sets` not an object; `ack` not an array; `setErrs` not an object
  it.each([
    [{sets: []}, 'Communication Object: "sets" must be an object of jti to SET, got an array'],
    [{sets: 'h.p.s'}, 'Communication Object: "sets" must be an object of jti to SET, got a string'],
    [{sets: null}, 'Communication Object: "sets" must be an object of jti to SET, got null'],
    [{ack: 'jti-1'}, 'Communication Object: "ack" must be an array of jti strings, got a string'],
    [{ack: {a: 1}}, 'Communication Object: "ack" must be an array of jti strings, got an object'],
    [{ack: ['ok', 7]}, 'Communication Object: "ack"[1] must be a string, got the number 7'],
    [{acks: 'x'}, 'Communication Object: "acks" must be an array of jti strings, got a string'],
    [{setErrs: []}, 'Communication Object: "setErrs" must be an object of jti to {err, description}, got an array'],
    [{setErrs: 'x'}, 'Communication Object: "setErrs" must be an object of jti to {err, description}, got a string'],
  ])('rejects %j with 400 invalid_request / 1007', (body, message) => {
    const error = failure(() => parseCommunicationObject(JSON.stringify(body)))
    expect(error.code).toBe('ERR_MESSAGE_INVALID')
    expect(error.message).toBe(message)
    expect(error.details).toEqual(BAD_REQUEST)
  })

  // bad-inputs.md: a `sets` value that is not a string -> setErr invalid_request for that key
  it('reports a non-string sets value per key, keeping the others', () => {
    const co = parseCommunicationObject(JSON.stringify({sets: {good: 'h.p.s', num: 42, obj: {a: 1}, nul: null}}))
    expect([...co.sets.keys()]).toEqual(['good'])
    expect(co.invalidSets.get('num')).toEqual({err: 'invalid_request', description: 'the value for this jti is the number 42, not a compact SET string'})
    expect(co.invalidSets.get('obj')).toEqual({err: 'invalid_request', description: 'the value for this jti is an object, not a compact SET string'})
    expect(co.invalidSets.get('nul')?.err).toBe('invalid_request')
  })

  it('reports a SET over maxSetBytes per key without failing the object', () => {
    const co = parseCommunicationObject(JSON.stringify({sets: {big: 'x'.repeat(101), ok: 'h.p.s'}}), {maxSetBytes: 100})
    expect([...co.sets.keys()]).toEqual(['ok'])
    expect(co.invalidSets.get('big')).toEqual({err: 'invalid_request', description: 'SET is 101 bytes, over the 100-byte limit'})
  })

  // bad-inputs.md: `sets` key differs from the SET's jti -> the receiver compares after decoding;
  // the parser must hand over the key exactly as sent.
  it('keeps sets keys exactly as sent (the receiver compares them with the decoded jti)', () => {
    const co = parseCommunicationObject('{"sets":{"  weird key\\u0000":"h.p.s","__proto__":"h.q.s"}}')
    expect([...co.sets.keys()]).toEqual(['  weird key\u0000', '__proto__'])
    expect(({} as Record<string, unknown>)['h.q.s']).toBeUndefined()
    expect(Object.getPrototypeOf({})).toBe(Object.prototype)
  })

  // bad-inputs.md: setErrs entry missing err/description, or a huge description
  it('counts a setErrs entry without err/description as a rejection; sanitises and truncates text', () => {
    const huge = `\u001b[31mred\u001b[0m ${'x'.repeat(10_000)}`
    const co = parseCommunicationObject(JSON.stringify({setErrs: {a: {}, b: {err: 'invalid_key'}, c: {description: 'why'}, d: 'nope', e: {err: 'access_denied', description: huge}}}))
    expect(co.setErrs.get('a')).toEqual({err: MISSING_ERR, description: ''})
    expect(co.setErrs.get('b')).toEqual({err: 'invalid_key', description: ''})
    expect(co.setErrs.get('c')).toEqual({err: MISSING_ERR, description: 'why'})
    expect(co.setErrs.get('d')).toEqual({err: MISSING_ERR, description: ''})
    const e = co.setErrs.get('e')
    expect(e?.err).toBe('access_denied')
    expect(e?.description.startsWith('[31mred[0m xxx')).toBe(true)
    expect(e?.description).not.toContain('\u001b')
    expect(e?.description.length).toBe(501) // 500 characters and an ellipsis
  })

  it('honours maxDescriptionLength', () => {
    const co = parseCommunicationObject(JSON.stringify({setErrs: {a: {err: 'x', description: 'abcdefgh'}}}), {maxDescriptionLength: 3})
    expect(co.setErrs.get('a')?.description).toBe('abc…')
  })

  // bad-inputs.md: same jti in ack and setErrs -> treated as rejected; logged
  it('treats a jti in both ack and setErrs as rejected and lists it in conflicts', () => {
    const co = parseCommunicationObject(JSON.stringify({ack: ['a', 'b'], setErrs: {b: {err: 'invalid_request', description: 'no'}}}))
    expect(co.ack).toEqual(['a'])
    expect(co.setErrs.has('b')).toBe(true)
    expect(co.conflicts).toEqual(['b'])
  })

  // bad-inputs.md: maxResponseEvents negative, fractional, a string -> 400 invalid_request
  it.each([
    [-1, 'the number -1'],
    [1.5, 'the non-integer 1.5'],
    ['3', 'a string'],
    [null, 'null'],
    [true, 'a boolean'],
    [1e300, 'the number 1e+300'],
  ])('rejects maxResponseEvents %j', (value, described) => {
    const error = failure(() => parseCommunicationObject(JSON.stringify({maxResponseEvents: value})))
    expect(error.code).toBe('ERR_MESSAGE_INVALID')
    expect(error.message).toBe(`Communication Object: "maxResponseEvents" must be a non-negative integer, got ${described}`)
    expect(error.details).toEqual(BAD_REQUEST)
  })

  // bad-inputs.md: maxResponseEvents: 0 -> response carries acks but no SETs
  it('keeps maxResponseEvents 0 (distinct from absent), and a response with acks only builds', () => {
    expect(parseCommunicationObject('{"maxResponseEvents":0}').maxResponseEvents).toBe(0)
    expect(buildCommunicationObject({ack: ['a'], sets: new Map()})).toBe('{"ack":["a"]}')
  })

  // bad-inputs.md: unknown extra members -> ignored
  it('ignores unknown members', () => {
    const co = parseCommunicationObject(JSON.stringify({ack: ['a'], extra: {deep: [1, 2]}, moreAvailable: 'yes', __proto__x: 1}))
    expect(co.ack).toEqual(['a'])
    expect(Object.keys(co).sort()).toEqual(['ack', 'conflicts', 'invalidSets', 'setErrs', 'sets'])
  })

  // bad-inputs.md: more SETs in one object than the limit -> 413 / close 1009; nothing partly processed
  it('rejects more SETs than maxSets with 413 / 1009 before anything else', () => {
    const body = JSON.stringify({sets: setsOf(1001), ack: ['a']})
    const error = failure(() => parseCommunicationObject(body))
    expect(error.code).toBe('ERR_LIMIT_EXCEEDED')
    expect(error.message).toBe('Communication Object: 1001 SETs, over the limit of 1000')
    expect(error.details).toEqual({...TOO_LARGE, count: 1001, limit: 1000})
    expect(parseCommunicationObject(JSON.stringify({sets: setsOf(1000)})).sets.size).toBe(1000)
    expect(failure(() => parseCommunicationObject(JSON.stringify({sets: setsOf(3)}), {maxSets: 2})).details).toMatchObject(TOO_LARGE)
  })

  it('rejects a body over maxBytes with 413 / 1009', () => {
    const error = failure(() => parseCommunicationObject(JSON.stringify({sets: {a: 'x'.repeat(200)}}), {maxBytes: 100}))
    expect(error.code).toBe('ERR_LIMIT_EXCEEDED')
    expect(error.message).toBe('JSON body is 217 bytes, over the 100-byte limit')
    expect(error.details).toEqual({...TOO_LARGE, size: 217, limit: 100})
  })

  it('rejects deep nesting within the size limit with 400 / 1007', () => {
    const error = failure(() => parseCommunicationObject(`{"x":${'['.repeat(5000)}${']'.repeat(5000)}}`))
    expect(error.code).toBe('ERR_MESSAGE_INVALID')
    expect(error.message).toBe('JSON nesting is deeper than the limit of 32')
    expect(error.details).toMatchObject(BAD_REQUEST)
  })

  // bad-inputs.md: `acks` instead of `ack` -> accepted as `ack`
  it('accepts acks as an alias of ack, merging both', () => {
    expect(parseCommunicationObject('{"acks":["a","b"]}').ack).toEqual(['a', 'b'])
    expect(parseCommunicationObject('{"ack":["a"],"acks":["b","a"]}').ack).toEqual(['a', 'b'])
  })

  it('refuses invalid limits with ERR_CONFIG', () => {
    const error = failure(() => parseCommunicationObject('{}', {maxSets: -1}))
    expect(error.code).toBe('ERR_CONFIG')
    expect(error.message).toBe('maxSets must be a non-negative integer, got -1')
  })
})

describe('buildCommunicationObject', () => {
  it('builds {} when everything is empty', () => {
    expect(buildCommunicationObject()).toBe('{}')
    expect(buildCommunicationObject({sets: {}, ack: [], setErrs: new Map()})).toBe('{}')
  })

  it('always sends ack (never acks), deduplicated, and round-trips', () => {
    const text = buildCommunicationObject({
      sets: new Map([['j1', 'h.p.s']]),
      ack: ['a', 'a', 'b'],
      setErrs: {c: {err: 'invalid_key', description: 'no key'}},
      maxResponseEvents: 0,
    })
    expect(JSON.parse(text)).toEqual({sets: {j1: 'h.p.s'}, ack: ['a', 'b'], setErrs: {c: {err: 'invalid_key', description: 'no key'}}, maxResponseEvents: 0})
    expect(text).not.toContain('acks')
    const back = parseCommunicationObject(text)
    expect(back.sets.get('j1')).toBe('h.p.s')
    expect(back.ack).toEqual(['a', 'b'])
  })

  it('writes a __proto__ jti as an ordinary key', () => {
    const text = buildCommunicationObject({sets: [['__proto__', 'h.p.s']], ack: ['__proto__']})
    expect(text).toBe('{"sets":{"__proto__":"h.p.s"},"ack":["__proto__"]}')
  })

  it('refuses bad input with ERR_USAGE', () => {
    const negative = failure(() => buildCommunicationObject({maxResponseEvents: -1}))
    expect(negative.code).toBe('ERR_USAGE')
    expect(negative.message).toBe('maxResponseEvents must be a non-negative integer, got -1')
    const empty = failure(() => buildCommunicationObject({ack: ['']}))
    expect(empty.code).toBe('ERR_USAGE')
    expect(empty.message).toBe('every ack must be a non-empty jti string')
    const noJti = failure(() => buildCommunicationObject({sets: {'': 'h.p.s'}}))
    expect(noJti.message).toBe('every SET needs a non-empty jti key')
  })
})

describe('RFC 8936 poll', () => {
  it('parses a plain poll {} with defaults', () => {
    const request = parsePollRequest('{}')
    expect(request).toEqual({ack: [], setErrs: new Map(), conflicts: [], returnImmediately: false})
  })

  it('parses an ack-only poll', () => {
    const request = parsePollRequest(JSON.stringify({maxEvents: 0, returnImmediately: true, ack: ['a'], setErrs: {b: {err: 'invalid_issuer', description: 'who?'}}}))
    expect(request.maxEvents).toBe(0)
    expect(request.returnImmediately).toBe(true)
    expect(request.ack).toEqual(['a'])
    expect(request.setErrs.get('b')).toEqual({err: 'invalid_issuer', description: 'who?'})
  })

  it.each([
    [{maxEvents: -1}, 'poll request: "maxEvents" must be a non-negative integer, got the number -1'],
    [{maxEvents: '10'}, 'poll request: "maxEvents" must be a non-negative integer, got a string'],
    [{returnImmediately: 'true'}, 'poll request: "returnImmediately" must be a boolean, got a string'],
    [{ack: 'a'}, 'poll request: "ack" must be an array of jti strings, got a string'],
    [{setErrs: ['a']}, 'poll request: "setErrs" must be an object of jti to {err, description}, got an array'],
    [[], 'poll request: expected a JSON object, got an array'],
  ])('rejects the poll request %j with 400', (body, message) => {
    const error = failure(() => parsePollRequest(JSON.stringify(body)))
    expect(error.code).toBe('ERR_MESSAGE_INVALID')
    expect(error.message).toBe(message)
    expect(error.details).toEqual(BAD_REQUEST)
  })

  it('builds poll requests, omitting what is not given', () => {
    expect(buildPollRequest()).toBe('{}')
    expect(buildPollRequest({maxEvents: 0, returnImmediately: true, ack: ['a'], setErrs: new Map([['b', {err: 'invalid_key', description: 'd'}]])})).toBe(
      '{"maxEvents":0,"returnImmediately":true,"ack":["a"],"setErrs":{"b":{"err":"invalid_key","description":"d"}}}',
    )
    expect(buildPollRequest({maxEvents: 10, ack: []})).toBe('{"maxEvents":10}')
    expect(failure(() => buildPollRequest({maxEvents: 1.5})).message).toBe('maxEvents must be a non-negative integer, got 1.5')
  })

  it('parses poll responses: sets required, moreAvailable optional', () => {
    const response = parsePollResponse(JSON.stringify({sets: {a: 'h.p.s', b: 3}, moreAvailable: true}))
    expect([...response.sets]).toEqual([['a', 'h.p.s']])
    expect(response.invalidSets.get('b')?.err).toBe('invalid_request')
    expect(response.moreAvailable).toBe(true)
    expect(parsePollResponse('{"sets":{}}')).toEqual({sets: new Map(), invalidSets: new Map(), moreAvailable: false})
  })

  it.each([
    ['{}', 'poll response: "sets" is required'],
    ['{"sets":[]}', 'poll response: "sets" must be an object of jti to SET, got an array'],
    ['{"sets":{},"moreAvailable":1}', 'poll response: "moreAvailable" must be a boolean, got the number 1'],
    ['[]', 'poll response: expected a JSON object, got an array'],
  ])('refuses the poll response %s as a peer protocol error', (text, message) => {
    const error = failure(() => parsePollResponse(text))
    expect(error.code).toBe('ERR_PEER_PROTOCOL')
    expect(error.message).toBe(message)
  })

  it('refuses a poll response body that is not JSON or too large', () => {
    expect(failure(() => parsePollResponse('<html>')).code).toBe('ERR_PEER_PROTOCOL')
    const large = failure(() => parsePollResponse('{"sets":{}}', {maxBytes: 5}))
    expect(large.code).toBe('ERR_RESPONSE_TOO_LARGE')
    expect(large.message).toBe('JSON body is 11 bytes, over the 5-byte limit')
    const many = failure(() => parsePollResponse(JSON.stringify({sets: setsOf(3)}), {maxSets: 2}))
    expect(many.code).toBe('ERR_LIMIT_EXCEEDED')
    expect(many.message).toBe('poll response: 3 SETs, over the limit of 2')
  })

  it('builds poll responses with sets always present', () => {
    expect(buildPollResponse({sets: {}})).toBe('{"sets":{}}')
    expect(buildPollResponse({sets: new Map([['a', 'h.p.s']]), moreAvailable: false})).toBe('{"sets":{"a":"h.p.s"},"moreAvailable":false}')
    const back = parsePollResponse(buildPollResponse({sets: {a: 't'}, moreAvailable: true}))
    expect(back.moreAvailable).toBe(true)
  })
})

describe('multi-SET push', () => {
  it('parses requests; {} and {"sets":{}} ask for late acks', () => {
    expect(parseMultiPushRequest('{}').sets.size).toBe(0)
    expect(parseMultiPushRequest('{"sets":{}}').sets.size).toBe(0)
    const request = parseMultiPushRequest(JSON.stringify({sets: {a: 'h.p.s', b: false}}))
    expect([...request.sets.keys()]).toEqual(['a'])
    expect(request.invalidSets.get('b')).toEqual({err: 'invalid_request', description: 'the value for this jti is a boolean, not a compact SET string'})
  })

  it('rejects bad requests with 400 and over-limit batches with 413', () => {
    const bad = failure(() => parseMultiPushRequest('{"sets":"x"}'))
    expect(bad.code).toBe('ERR_MESSAGE_INVALID')
    expect(bad.message).toBe('multi-SET push request: "sets" must be an object of jti to SET, got a string')
    expect(bad.details).toEqual(BAD_REQUEST)
    const many = failure(() => parseMultiPushRequest(JSON.stringify({sets: setsOf(5)}), {maxSets: 4}))
    expect(many.code).toBe('ERR_LIMIT_EXCEEDED')
    expect(many.details).toEqual({...TOO_LARGE, count: 5, limit: 4})
  })

  it('builds requests with sets always present', () => {
    expect(buildMultiPushRequest({sets: {}})).toBe('{"sets":{}}')
    expect(buildMultiPushRequest({sets: [['a', 't']]})).toBe('{"sets":{"a":"t"}}')
  })

  it('parses responses: ack required, setErrs optional, acks alias accepted', () => {
    const response = parseMultiPushResponse(JSON.stringify({ack: ['a', 'b'], setErrs: {b: {err: 'invalid_key', description: 'x'}, c: {err: 'invalid_request', description: 'y'}}}))
    expect(response.ack).toEqual(['a'])
    expect([...response.setErrs.keys()]).toEqual(['b', 'c'])
    expect(response.conflicts).toEqual(['b'])
    expect(parseMultiPushResponse('{"acks":["z"]}').ack).toEqual(['z'])
    const missing = failure(() => parseMultiPushResponse('{"setErrs":{}}'))
    expect(missing.code).toBe('ERR_PEER_PROTOCOL')
    expect(missing.message).toBe('multi-SET push response: "ack" is required')
  })

  it('builds responses with ack always present and setErrs only when not empty', () => {
    expect(buildMultiPushResponse({ack: []})).toBe('{"ack":[]}')
    expect(buildMultiPushResponse({ack: ['a'], setErrs: {}})).toBe('{"ack":["a"]}')
    expect(buildMultiPushResponse({ack: [], setErrs: {b: {err: 'invalid_key', description: 'd'}}})).toBe('{"ack":[],"setErrs":{"b":{"err":"invalid_key","description":"d"}}}')
  })
})
