/**
 * Fuzz properties for bounded JSON (src/lib/json.ts) and the Communication Object / poll /
 * multi-SET push parsers and builders (src/lib/communication.ts).
 *
 * The "strict validator" here is an independent reference model written from docs/protocol.md:
 * given the JSON a peer sent, it says whether the body must be refused (and with which code) and
 * what the parse must yield. The parsers must agree with it exactly.
 */
import {strict as assert} from 'node:assert'

import * as fc from 'fast-check'

import {
  buildCommunicationObject,
  buildMultiPushRequest,
  buildMultiPushResponse,
  buildPollRequest,
  buildPollResponse,
  type CommunicationLimits,
  DEFAULT_LIMITS,
  MISSING_ERR,
  parseCommunicationObject,
  parseMultiPushRequest,
  parseMultiPushResponse,
  parsePollRequest,
  parsePollResponse,
  type SetErr,
} from '../../src/lib/communication.js'
import type {ErrorCode} from '../../src/lib/errors.js'
import {maxNestingDepth, parseJsonBounded} from '../../src/lib/json.js'
import {sanitizeText} from '../../src/lib/text.js'
import {
  deepJsonText,
  frameBytes,
  hostileJsonText,
  jsonScalarText,
  jtiArb,
  objectText,
  peerKey,
  peerString,
  pollutionText,
  textMutation,
  tokenLikeString,
} from './arbitraries.js'
import {depthOf, type FuzzProperty, fuzzProperty, outcome} from './harness.js'

// ---------------------------------------------------------------------------------------------
// Bounded JSON

const JSON_CODES: readonly ErrorCode[] = ['ERR_MESSAGE_INVALID', 'ERR_LIMIT_EXCEEDED']
const strictUtf8 = new TextDecoder('utf-8', {fatal: true})

type Expected = {accept: true; value: unknown} | {accept: false; codes: readonly ErrorCode[]}

/**
 * Nesting depth of valid JSON TEXT (independent of json.ts: strings blanked by a regex, then
 * brackets counted). Differs from the parsed value's depth when a duplicate key drops a deeper
 * value; the text is what costs the parser, so the text is what the limit applies to.
 */
export function textDepth(text: string): number {
  const bare = text.replace(/"(?:[^"\\]|\\.)*"/g, '""')
  let depth = 0
  let deepest = 0
  for (const char of bare) {
    if (char === '[' || char === '{') deepest = Math.max(deepest, ++depth)
    else if (char === ']' || char === '}') depth--
  }

  return deepest
}

/** What parseJsonBounded must do with `input` (reference: sizes, UTF-8, depth, then JSON). */
function expectedJson(input: string | Uint8Array, maxBytes: number, maxDepth: number): Expected {
  const size = typeof input === 'string' ? Buffer.byteLength(input, 'utf8') : input.byteLength
  if (size > maxBytes) return {accept: false, codes: ['ERR_LIMIT_EXCEEDED']}
  let text: string
  try {
    text = typeof input === 'string' ? input : strictUtf8.decode(input)
  } catch {
    return {accept: false, codes: ['ERR_MESSAGE_INVALID']}
  }

  let value: unknown
  try {
    value = JSON.parse(text)
  } catch {
    return {accept: false, codes: ['ERR_MESSAGE_INVALID']}
  }

  return textDepth(text) > maxDepth ? {accept: false, codes: ['ERR_MESSAGE_INVALID']} : {accept: true, value}
}

const jsonInput: fc.Arbitrary<string | Uint8Array> = fc.oneof(
  hostileJsonText,
  fc.tuple(hostileJsonText, textMutation).map(([text, mutate]) => mutate(text)),
  deepJsonText(6),
  peerString(64),
  frameBytes,
)

const jsonProperties: FuzzProperty[] = [
  fuzzProperty(
    'json: parseJsonBounded agrees with the reference (size, UTF-8, depth, JSON) and never throws anything else',
    400,
    fc.property(jsonInput, fc.integer({max: 256, min: 1}), fc.integer({max: 8, min: 1}), (input, maxBytes, maxDepth) => {
      const result = outcome('parseJsonBounded', JSON_CODES, () => parseJsonBounded(input, {maxBytes, maxDepth}))
      const expected = expectedJson(input, maxBytes, maxDepth)
      if (expected.accept) {
        assert.ok(result.ok, `refused valid JSON within limits: ${result.ok ? '' : result.error.message}`)
        assert.deepEqual(result.value, expected.value)
      } else {
        assert.ok(!result.ok, 'accepted input the reference refuses')
        assert.ok(expected.codes.includes(result.error.code), `code ${result.error.code}, expected ${expected.codes.join('|')}`)
      }
    }),
  ),
  fuzzProperty(
    'json: maxNestingDepth of valid JSON text equals the reference text depth, and bounds the parsed depth',
    300,
    fc.property(fc.oneof(hostileJsonText, deepJsonText(40), fc.json({maxDepth: 6})), (text) => {
      const value = JSON.parse(text) as unknown
      assert.equal(maxNestingDepth(text), textDepth(text))
      assert.ok(maxNestingDepth(text) >= depthOf(value))
    }),
  ),
  fuzzProperty(
    'json: round trip of any JSON value (JSON.stringify -> parseJsonBounded -> equal)',
    200,
    fc.property(fc.jsonValue({maxDepth: 6}), (value) => {
      const text = JSON.stringify(value)
      const result = outcome('parseJsonBounded', JSON_CODES, () => parseJsonBounded(text, {maxBytes: 1024 * 1024, maxDepth: 32}))
      assert.ok(result.ok)
      assert.deepEqual(result.value, JSON.parse(text))
    }),
  ),
]

// ---------------------------------------------------------------------------------------------
// Communication Objects: the reference model

type Kind = 'communication' | 'pollRequest' | 'pollResponse' | 'multiPushRequest' | 'multiPushResponse'

interface KindSpec {
  parse: (input: string | Uint8Array, limits?: Partial<CommunicationLimits>) => unknown
  request: boolean
  what: string
  /** Members and whether each is read. */
  sets?: 'optional' | 'required'
  report?: 'optional' | 'ackRequired'
  integers: readonly string[]
  booleans: readonly string[]
}

const KINDS: Readonly<Record<Kind, KindSpec>> = {
  communication: {integers: ['maxResponseEvents'], booleans: [], parse: parseCommunicationObject, report: 'optional', request: true, sets: 'optional', what: 'Communication Object'},
  multiPushRequest: {integers: [], booleans: [], parse: parseMultiPushRequest, request: true, sets: 'optional', what: 'multi-SET push request'},
  multiPushResponse: {integers: [], booleans: [], parse: parseMultiPushResponse, report: 'ackRequired', request: false, what: 'multi-SET push response'},
  pollRequest: {integers: ['maxEvents'], booleans: ['returnImmediately'], parse: parsePollRequest, report: 'optional', request: true, what: 'poll request'},
  pollResponse: {integers: [], booleans: ['moreAvailable'], parse: parsePollResponse, request: false, sets: 'required', what: 'poll response'},
}

const isObject = (value: unknown): value is Record<string, unknown> => typeof value === 'object' && value !== null && !Array.isArray(value)
const own = (value: Record<string, unknown>, key: string): unknown => (Object.hasOwn(value, key) ? value[key] : undefined)

interface ModelResult {
  sets?: Map<string, string>
  invalidSets?: string[]
  ack?: string[]
  setErrs?: Map<string, SetErr>
  conflicts?: string[]
  numbers: Record<string, number>
  flags: Record<string, boolean>
}

type ModelOutcome = {accept: true; result: ModelResult} | {accept: false; codes: ErrorCode[]}

function modelParse(kind: Kind, input: string | Uint8Array, limits: CommunicationLimits): ModelOutcome {
  const spec = KINDS[kind]
  const invalidCode: ErrorCode = spec.request ? 'ERR_MESSAGE_INVALID' : 'ERR_PEER_PROTOCOL'
  const tooLargeCode: ErrorCode = spec.request ? 'ERR_LIMIT_EXCEEDED' : 'ERR_RESPONSE_TOO_LARGE'
  const json = expectedJson(input, limits.maxBytes, limits.maxDepth)
  if (!json.accept) return {accept: false, codes: json.codes.map((code) => (code === 'ERR_LIMIT_EXCEEDED' ? tooLargeCode : invalidCode))}
  const top = json.value
  if (!isObject(top)) return {accept: false, codes: [invalidCode]}

  const codes = new Set<ErrorCode>()
  const result: ModelResult = {flags: {}, numbers: {}}
  for (const name of spec.integers) {
    const value = own(top, name)
    if (value === undefined) continue
    if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 0) codes.add(invalidCode)
    else result.numbers[name] = value
  }

  for (const name of spec.booleans) {
    const value = own(top, name)
    if (value === undefined) continue
    if (typeof value === 'boolean') result.flags[name] = value
    else codes.add(invalidCode)
  }

  if (spec.report !== undefined) {
    const acked: string[] = []
    const ack = own(top, 'ack')
    const acks = own(top, 'acks')
    if (spec.report === 'ackRequired' && ack === undefined && acks === undefined) codes.add(invalidCode)
    for (const list of [ack, acks]) {
      if (list === undefined) continue
      if (!Array.isArray(list) || list.some((item) => typeof item !== 'string')) codes.add(invalidCode)
      else for (const item of list as string[]) if (!acked.includes(item)) acked.push(item)
    }

    const setErrs = new Map<string, SetErr>()
    const rawErrs = own(top, 'setErrs')
    if (rawErrs !== undefined) {
      if (isObject(rawErrs)) {
        for (const jti of Object.keys(rawErrs)) {
          const entry = rawErrs[jti]
          const err = isObject(entry) ? own(entry, 'err') : undefined
          const description = isObject(entry) ? own(entry, 'description') : undefined
          setErrs.set(jti, {
            description: typeof description === 'string' ? sanitizeText(description, limits.maxDescriptionLength) : '',
            err: typeof err === 'string' && err !== '' ? sanitizeText(err, 64) : MISSING_ERR,
          })
        }
      } else {
        codes.add(invalidCode)
      }
    }

    result.conflicts = [...setErrs.keys()].filter((jti) => acked.includes(jti))
    result.ack = acked.filter((jti) => !setErrs.has(jti))
    result.setErrs = setErrs
  }

  if (spec.sets !== undefined) {
    const raw = own(top, 'sets')
    if (raw === undefined) {
      if (spec.sets === 'required') codes.add(invalidCode)
      result.sets = new Map()
      result.invalidSets = []
    } else if (isObject(raw)) {
      const keys = Object.keys(raw)
      // The SET count limit is ERR_LIMIT_EXCEEDED for requests and responses alike.
      if (keys.length > limits.maxSets) codes.add('ERR_LIMIT_EXCEEDED')
      result.sets = new Map()
      result.invalidSets = []
      for (const key of keys) {
        const value = raw[key]
        if (typeof value === 'string' && Buffer.byteLength(value) <= limits.maxSetBytes) result.sets.set(key, value)
        else result.invalidSets.push(key)
      }
    } else {
      codes.add(invalidCode)
    }
  }

  return codes.size > 0 ? {accept: false, codes: [...codes]} : {accept: true, result}
}

/** Compare a parser's result with the model's. */
function compare(kind: Kind, actual: Record<string, unknown>, expected: ModelResult): void {
  const spec = KINDS[kind]
  if (spec.sets !== undefined) {
    assert.deepEqual([...(actual.sets as Map<string, string>).entries()], [...(expected.sets ?? new Map()).entries()], 'sets')
    const invalidSets = actual.invalidSets as Map<string, SetErr>
    assert.deepEqual([...invalidSets.keys()], expected.invalidSets, 'invalidSets keys')
    for (const value of invalidSets.values()) assert.equal(value.err, 'invalid_request')
  }

  if (spec.report !== undefined) {
    assert.deepEqual(actual.ack, expected.ack, 'ack')
    assert.deepEqual([...(actual.setErrs as Map<string, SetErr>).entries()], [...(expected.setErrs ?? new Map()).entries()], 'setErrs')
    assert.deepEqual(actual.conflicts, expected.conflicts, 'conflicts')
  }

  for (const name of spec.integers) assert.equal(actual[name], expected.numbers[name], name)
  if (kind === 'pollRequest') assert.equal(actual.returnImmediately, expected.flags.returnImmediately ?? false)
  if (kind === 'pollResponse') assert.equal(actual.moreAvailable, expected.flags.moreAvailable ?? false)
}

// ---------------------------------------------------------------------------------------------
// Near-valid bodies: a valid object of every member, then one member replaced or the text mutated

const setsText = fc
  .array(fc.tuple(jtiArb, fc.oneof({arbitrary: tokenLikeString.map((t) => JSON.stringify(t)), weight: 4}, jsonScalarText, pollutionText)), {maxLength: 5})
  .map(objectText)

const ackText = fc.array(fc.oneof({arbitrary: jtiArb.map((j) => JSON.stringify(j)), weight: 5}, jsonScalarText), {maxLength: 5}).map((items) => `[${items.join(',')}]`)

const setErrEntryText = fc.oneof(
  fc.record({description: peerString(80), err: fc.oneof(fc.constantFrom('invalid_request', 'invalid_key', '', 'x'.repeat(100)), peerString())}).map((e) => JSON.stringify(e)),
  fc.array(fc.tuple(fc.constantFrom('err', 'description', '__proto__', 'x'), jsonScalarText), {maxLength: 3}).map(objectText),
  jsonScalarText,
  pollutionText,
)

const setErrsText = fc.array(fc.tuple(jtiArb, setErrEntryText), {maxLength: 4}).map(objectText)

/** One member's value: usually right for the member, sometimes any JSON. */
const memberValue = (name: string): fc.Arbitrary<string> => {
  const right: Record<string, fc.Arbitrary<string>> = {
    ack: ackText,
    acks: ackText,
    maxEvents: fc.oneof(fc.nat(50).map(String), jsonScalarText),
    maxResponseEvents: fc.oneof(fc.nat(50).map(String), jsonScalarText),
    moreAvailable: fc.oneof(fc.boolean().map(String), jsonScalarText),
    returnImmediately: fc.oneof(fc.boolean().map(String), jsonScalarText),
    setErrs: setErrsText,
    sets: setsText,
  }
  return fc.oneof({arbitrary: right[name] ?? hostileJsonText, weight: 6}, {arbitrary: hostileJsonText, weight: 1}, {arbitrary: pollutionText, weight: 1})
}

const MEMBERS = ['sets', 'ack', 'acks', 'setErrs', 'maxResponseEvents', 'maxEvents', 'returnImmediately', 'moreAvailable'] as const

export const nearValidBody: fc.Arbitrary<string> = fc
  .tuple(
    fc.subarray([...MEMBERS]),
    fc.array(fc.tuple(peerKey, hostileJsonText), {maxLength: 2}),
    fc.option(textMutation, {freq: 4, nil: undefined}),
  )
  .chain(([names, extra, mutate]) =>
    fc.tuple(...names.map((name) => memberValue(name).map((value) => [name, value] as const))).map((entries) => {
      const text = objectText([...entries, ...extra])
      return mutate === undefined ? text : mutate(text)
    }),
  )

const bodyInput: fc.Arbitrary<string | Uint8Array> = fc.oneof(
  {arbitrary: nearValidBody, weight: 8},
  {arbitrary: hostileJsonText, weight: 1},
  {arbitrary: deepJsonText(5), weight: 1},
  {arbitrary: frameBytes, weight: 1},
  {arbitrary: nearValidBody.map((text) => new TextEncoder().encode(text)), weight: 1},
)

const smallLimits: fc.Arbitrary<CommunicationLimits> = fc.record({
  maxBytes: fc.integer({max: 2048, min: 32}),
  maxDepth: fc.integer({max: 6, min: 1}),
  maxDescriptionLength: fc.integer({max: 40, min: 1}),
  maxSetBytes: fc.integer({max: 64, min: 1}),
  maxSets: fc.integer({max: 6, min: 0}),
})

const limitsArb = fc.oneof(smallLimits, fc.constant({...DEFAULT_LIMITS}))

function codesFor(kind: Kind): ErrorCode[] {
  return KINDS[kind].request ? ['ERR_MESSAGE_INVALID', 'ERR_LIMIT_EXCEEDED'] : ['ERR_PEER_PROTOCOL', 'ERR_RESPONSE_TOO_LARGE', 'ERR_LIMIT_EXCEEDED']
}

function parserProperty(kind: Kind): FuzzProperty {
  const spec = KINDS[kind]
  return fuzzProperty(
    `communication: ${spec.what} parser agrees with the strict reference model`,
    300,
    fc.property(bodyInput, limitsArb, (input, limits) => {
      const result = outcome(`parse ${spec.what}`, codesFor(kind), () => spec.parse(input, limits))
      const expected = modelParse(kind, input, limits)
      if (!expected.accept) {
        assert.ok(!result.ok, `accepted a body the strict model refuses (${expected.codes.join('|')})`)
        assert.ok(expected.codes.includes(result.error.code), `code ${result.error.code}, model says ${expected.codes.join('|')}: ${result.error.message}`)
        assert.ok(result.error.message.startsWith(`${spec.what}: `) || result.error.message.startsWith('JSON ') || result.error.message.startsWith('body is not valid JSON'), result.error.message)
        if (spec.request) assert.equal(result.error.details.status, result.error.code === 'ERR_MESSAGE_INVALID' ? 400 : 413)
        return
      }

      assert.ok(result.ok, `refused a body the strict model accepts: ${result.ok ? '' : `${result.error.code} ${result.error.message}`}`)
      compare(kind, result.value as Record<string, unknown>, expected.result)
    }),
  )
}

// ---------------------------------------------------------------------------------------------
// Round trips: build -> parse -> equal

const nonEmptyJti = fc.oneof(fc.uuid(), fc.constantFrom('__proto__', 'constructor', 'toString'), fc.string({maxLength: 12, minLength: 1, unit: 'binary'}))

const reportModel = fc
  .uniqueArray(nonEmptyJti, {maxLength: 8})
  .chain((jtis) =>
    fc.tuple(
      fc.constant(jtis),
      fc.array(fc.boolean(), {maxLength: jtis.length, minLength: jtis.length}),
      fc.array(fc.record({description: peerString(60), err: fc.oneof(fc.constantFrom('invalid_request', 'invalid_key', 'access_denied'), peerString(10))}), {
        maxLength: jtis.length,
        minLength: jtis.length,
      }),
    ),
  )
  .map(([jtis, isAck, errs]) => ({
    ack: jtis.filter((_, i) => isAck[i]),
    setErrs: jtis.flatMap((jti, i) => (isAck[i] ? [] : [[jti, errs[i] as SetErr] as const])),
  }))

const setsModel = fc.uniqueArray(fc.tuple(nonEmptyJti, tokenLikeString), {maxLength: 8, selector: ([jti]) => jti})

function expectedSetErrs(entries: ReadonlyArray<readonly [string, SetErr]>): Array<[string, SetErr]> {
  return entries.map(([jti, {err, description}]) => [jti, {description: sanitizeText(description, DEFAULT_LIMITS.maxDescriptionLength), err: err === '' ? MISSING_ERR : sanitizeText(err, 64)}])
}

const roundTrips: FuzzProperty[] = [
  fuzzProperty(
    'communication: Communication Object round trip (build -> parse -> equal), hostile jtis included',
    200,
    fc.property(setsModel, reportModel, fc.option(fc.nat(1000), {nil: undefined}), (sets, report, maxResponseEvents) => {
      const text = buildCommunicationObject({ack: report.ack, maxResponseEvents, setErrs: report.setErrs, sets})
      const parsed = outcome('parseCommunicationObject', [], () => parseCommunicationObject(text))
      assert.ok(parsed.ok)
      assert.deepEqual([...parsed.value.sets.entries()], sets)
      assert.equal(parsed.value.invalidSets.size, 0)
      assert.deepEqual(parsed.value.ack, report.ack)
      assert.deepEqual([...parsed.value.setErrs.entries()], expectedSetErrs(report.setErrs))
      assert.deepEqual(parsed.value.conflicts, [])
      assert.equal(parsed.value.maxResponseEvents, maxResponseEvents)
    }),
  ),
  fuzzProperty(
    'communication: poll request and response round trip',
    150,
    fc.property(setsModel, reportModel, fc.option(fc.nat(100), {nil: undefined}), fc.option(fc.boolean(), {nil: undefined}), (sets, report, maxEvents, flag) => {
      const request = outcome('parsePollRequest', [], () => parsePollRequest(buildPollRequest({ack: report.ack, maxEvents, returnImmediately: flag, setErrs: report.setErrs})))
      assert.ok(request.ok)
      assert.deepEqual(request.value.ack, report.ack)
      assert.deepEqual([...request.value.setErrs.entries()], expectedSetErrs(report.setErrs))
      assert.equal(request.value.maxEvents, maxEvents)
      assert.equal(request.value.returnImmediately, flag ?? false)
      const response = outcome('parsePollResponse', [], () => parsePollResponse(buildPollResponse({moreAvailable: flag, sets})))
      assert.ok(response.ok)
      assert.deepEqual([...response.value.sets.entries()], sets)
      assert.equal(response.value.moreAvailable, flag ?? false)
    }),
  ),
  fuzzProperty(
    'communication: multi-SET push request and response round trip',
    150,
    fc.property(setsModel, reportModel, (sets, report) => {
      const request = outcome('parseMultiPushRequest', [], () => parseMultiPushRequest(buildMultiPushRequest({sets})))
      assert.ok(request.ok)
      assert.deepEqual([...request.value.sets.entries()], sets)
      const response = outcome('parseMultiPushResponse', [], () => parseMultiPushResponse(buildMultiPushResponse({ack: report.ack, setErrs: report.setErrs})))
      assert.ok(response.ok)
      assert.deepEqual(response.value.ack, report.ack)
      assert.deepEqual([...response.value.setErrs.entries()], expectedSetErrs(report.setErrs))
    }),
  ),
  fuzzProperty(
    'communication: parsed peer text is safe to display (no control or bidi characters, length capped)',
    200,
    fc.property(setErrsText, fc.integer({max: 50, min: 1}), (setErrs, maxDescriptionLength) => {
      const parsed = outcome('parseCommunicationObject', codesFor('communication'), () => parseCommunicationObject(`{"setErrs":${setErrs}}`, {maxDescriptionLength}))
      if (!parsed.ok) return
      for (const {err, description} of parsed.value.setErrs.values()) {
        for (const text of [err, description]) {
          // eslint-disable-next-line no-control-regex
          assert.ok(!/[\u0000-\u0008\u000B-\u001F\u007F-\u009F\u200E\u200F\u202A-\u202E\u2066-\u2069]/.test(text), `unsafe text ${JSON.stringify(text)}`)
        }

        assert.ok(description.length <= maxDescriptionLength + 1)
        assert.ok(err.length <= 65)
      }
    }),
  ),
]

export const communicationProperties: FuzzProperty[] = [
  ...jsonProperties,
  ...(Object.keys(KINDS) as Kind[]).map((kind) => parserProperty(kind)),
  ...roundTrips,
]
