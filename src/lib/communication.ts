/**
 * Parsing and building the JSON bodies SETs travel in:
 *
 * - the pushpull Communication Object `{sets?, ack?, setErrs?, maxResponseEvents?}`
 *   (draft-tulshibagwale-saag-pushpull-delivery; HTTP bodies and WebSocket messages);
 * - the RFC 8936 poll request `{maxEvents?, returnImmediately?, ack?, setErrs?}` and response
 *   `{sets, moreAvailable?}`;
 * - the multi-SET push request `{sets}` and response `{ack, setErrs?}`
 *   (draft-deshpande-secevent-http-multi-set-push).
 *
 * Parsers are strict about the shape of members and lenient about their content: a `sets` value
 * that is not a string (or is over the per-SET limit) is reported per key in `invalidSets` (the
 * receiver answers it with setErr `invalid_request`) instead of failing the whole body; a setErr
 * entry without `err`/`description` still counts as a rejection. Peer maps become `Map`s, so peer
 * keys never touch a prototype. Unknown members are ignored.
 *
 * Request parsers (what a peer sends us to process) throw ERR_MESSAGE_INVALID with details
 * `{status: 400, err: 'invalid_request', closeCode: 1007}` and ERR_LIMIT_EXCEEDED with details
 * `{status: 413, closeCode: 1009}`. Response parsers (what a peer answers to our request) throw
 * ERR_PEER_PROTOCOL and ERR_RESPONSE_TOO_LARGE. A limit failure is raised before anything is
 * returned, so nothing is partly processed.
 *
 * Builders always send `ack` (never `acks`), leave out empty optional members (so `{}` is what an
 * empty Communication Object looks like) and always include the members a binding requires
 * (`sets` in a poll response and a multi-SET push request, `ack` in a multi-SET push response).
 */
import {PushpullError, type ErrorCode} from './errors.js'
import {byteLengthOf, DEFAULT_MAX_DEPTH, isJsonObject, type JsonErrorProfile, ownMember, parseJsonBounded} from './json.js'
import {sanitizeText} from './text.js'

export interface CommunicationLimits {
  /** Largest body or message in bytes. Default 1 MiB. */
  maxBytes: number
  /** Most SETs in one object. Default 1000. */
  maxSets: number
  /** Largest single SET (compact token) in bytes. Default 64 KiB. */
  maxSetBytes: number
  /** Deepest JSON nesting. Default 32 (a Communication Object needs 3). */
  maxDepth: number
  /** Longest setErr description kept (after sanitising). Default 500 characters. */
  maxDescriptionLength: number
}

export const DEFAULT_LIMITS: Readonly<CommunicationLimits> = Object.freeze({
  maxBytes: 1024 * 1024,
  maxSets: 1000,
  maxSetBytes: 64 * 1024,
  maxDepth: DEFAULT_MAX_DEPTH,
  maxDescriptionLength: 500,
})

/** An error report for one SET: `err` is a protocol error code (any string from peers). */
export interface SetErr {
  err: string
  description: string
}

/** `err` recorded when a peer's setErr entry has no usable `err` member. */
export const MISSING_ERR = 'unspecified'

/** Sets keyed by the map key (normally the jti), and the keys whose value could not be taken. */
export interface ParsedSets {
  /** Compact tokens keyed by their map key, in body order. */
  sets: Map<string, string>
  /** Keys whose value is not a string or is over `maxSetBytes`: answer each with this setErr. */
  invalidSets: Map<string, SetErr>
}

/** Acks and setErrs a peer reported to us. */
export interface ParsedReport {
  /** jtis acknowledged (deduplicated, body order; `acks` merged in; conflicts removed). */
  ack: string[]
  /** jtis rejected, with the peer's (sanitised) err and description. */
  setErrs: Map<string, SetErr>
  /** jtis named in both `ack` and `setErrs`: treated as rejected (they stay in `setErrs`). */
  conflicts: string[]
}

export interface CommunicationObject extends ParsedSets, ParsedReport {
  /** Requests over HTTP may limit the SETs in the response. */
  maxResponseEvents?: number
}

export interface PollRequest extends ParsedReport {
  maxEvents?: number
  /** Default false (long poll). */
  returnImmediately: boolean
}

export interface PollResponse extends ParsedSets {
  /** Default false. */
  moreAvailable: boolean
}

export type MultiPushRequest = ParsedSets

export type MultiPushResponse = ParsedReport

type SetsInput = ReadonlyMap<string, string> | Iterable<readonly [string, string]> | Readonly<Record<string, string>>
type SetErrsInput = ReadonlyMap<string, SetErr> | Iterable<readonly [string, SetErr]> | Readonly<Record<string, SetErr>>

export interface CommunicationObjectInput {
  sets?: SetsInput
  ack?: Iterable<string>
  setErrs?: SetErrsInput
  maxResponseEvents?: number
}

export interface PollRequestInput {
  maxEvents?: number
  returnImmediately?: boolean
  ack?: Iterable<string>
  setErrs?: SetErrsInput
}

export interface PollResponseInput {
  sets: SetsInput
  moreAvailable?: boolean
}

export interface MultiPushResponseInput {
  ack: Iterable<string>
  setErrs?: SetErrsInput
}

type Input = string | Uint8Array

// ---------------------------------------------------------------------------------------------
// Error profiles

interface Profile extends JsonErrorProfile {
  what: string
}

const REQUEST_INVALID = Object.freeze({status: 400, err: 'invalid_request', closeCode: 1007})
const REQUEST_TOO_LARGE = Object.freeze({status: 413, closeCode: 1009})

function requestProfile(what: string): Profile {
  return {what, invalid: 'ERR_MESSAGE_INVALID', invalidDetails: REQUEST_INVALID, tooLarge: 'ERR_LIMIT_EXCEEDED', tooLargeDetails: REQUEST_TOO_LARGE}
}

function responseProfile(what: string): Profile {
  return {what, invalid: 'ERR_PEER_PROTOCOL', tooLarge: 'ERR_RESPONSE_TOO_LARGE'}
}

function invalid(profile: Profile, message: string): PushpullError {
  return new PushpullError(profile.invalid, `${profile.what}: ${message}`, {details: {...profile.invalidDetails}})
}

function tooLarge(profile: Profile, code: ErrorCode, message: string, details: Record<string, unknown>): PushpullError {
  return new PushpullError(code, `${profile.what}: ${message}`, {details: {...profile.tooLargeDetails, ...details}})
}

// ---------------------------------------------------------------------------------------------
// Parsers

function resolveLimits(limits: Partial<CommunicationLimits> | undefined): CommunicationLimits {
  const merged = {...DEFAULT_LIMITS, ...limits}
  for (const name of ['maxBytes', 'maxSets', 'maxSetBytes', 'maxDepth', 'maxDescriptionLength'] as const) {
    const value = merged[name]
    if (!Number.isSafeInteger(value) || value < (name === 'maxSets' ? 0 : 1)) {
      const kind = name === 'maxSets' ? 'a non-negative' : 'a positive'
      throw new PushpullError('ERR_CONFIG', `${name} must be ${kind} integer, got ${String(value)}`)
    }
  }

  return merged
}

function parseTop(input: Input, limits: CommunicationLimits, profile: Profile): Record<string, unknown> {
  const value = parseJsonBounded(input, {maxBytes: limits.maxBytes, maxDepth: limits.maxDepth}, profile)
  if (!isJsonObject(value)) {
    throw invalid(profile, `expected a JSON object, got ${describe(value)}`)
  }

  return value
}

function readSets(top: Record<string, unknown>, limits: CommunicationLimits, profile: Profile, required: boolean): ParsedSets {
  const raw = ownMember(top, 'sets')
  const sets = new Map<string, string>()
  const invalidSets = new Map<string, SetErr>()
  if (raw === undefined) {
    if (required) throw invalid(profile, '"sets" is required')
    return {sets, invalidSets}
  }

  if (!isJsonObject(raw)) throw invalid(profile, `"sets" must be an object of jti to SET, got ${describe(raw)}`)
  const keys = Object.keys(raw)
  if (keys.length > limits.maxSets) {
    throw tooLarge(profile, 'ERR_LIMIT_EXCEEDED', `${keys.length} SETs, over the limit of ${limits.maxSets}`, {
      count: keys.length,
      limit: limits.maxSets,
    })
  }

  for (const key of keys) {
    const value = raw[key]
    if (typeof value !== 'string') {
      invalidSets.set(key, {err: 'invalid_request', description: `the value for this jti is ${describe(value)}, not a compact SET string`})
    } else if (byteLengthOf(value) > limits.maxSetBytes) {
      invalidSets.set(key, {err: 'invalid_request', description: `SET is ${byteLengthOf(value)} bytes, over the ${limits.maxSetBytes}-byte limit`})
    } else {
      sets.set(key, value)
    }
  }

  return {sets, invalidSets}
}

function readAckList(value: unknown, name: string, profile: Profile, into: Set<string>): void {
  if (value === undefined) return
  if (!Array.isArray(value)) throw invalid(profile, `"${name}" must be an array of jti strings, got ${describe(value)}`)
  for (const [index, item] of value.entries()) {
    if (typeof item !== 'string') throw invalid(profile, `"${name}"[${index}] must be a string, got ${describe(item)}`)
    into.add(item)
  }
}

function readReport(top: Record<string, unknown>, limits: CommunicationLimits, profile: Profile, ackRequired: boolean): ParsedReport {
  const acked = new Set<string>()
  const ackRaw = ownMember(top, 'ack')
  const acksRaw = ownMember(top, 'acks')
  if (ackRequired && ackRaw === undefined && acksRaw === undefined) throw invalid(profile, '"ack" is required')
  readAckList(ackRaw, 'ack', profile, acked)
  readAckList(acksRaw, 'acks', profile, acked)

  const setErrs = new Map<string, SetErr>()
  const rawErrs = ownMember(top, 'setErrs')
  if (rawErrs !== undefined) {
    if (!isJsonObject(rawErrs)) throw invalid(profile, `"setErrs" must be an object of jti to {err, description}, got ${describe(rawErrs)}`)
    for (const jti of Object.keys(rawErrs)) {
      setErrs.set(jti, readSetErr(rawErrs[jti], limits))
    }
  }

  const conflicts: string[] = []
  for (const jti of setErrs.keys()) {
    if (acked.delete(jti)) conflicts.push(jti)
  }

  return {ack: [...acked], setErrs, conflicts}
}

function readSetErr(value: unknown, limits: CommunicationLimits): SetErr {
  const entry = isJsonObject(value) ? value : undefined
  const err = entry === undefined ? undefined : ownMember(entry, 'err')
  const description = entry === undefined ? undefined : ownMember(entry, 'description')
  return {
    err: typeof err === 'string' && err.length > 0 ? sanitizeText(err, 64) : MISSING_ERR,
    description: typeof description === 'string' ? sanitizeText(description, limits.maxDescriptionLength) : '',
  }
}

function readNonNegativeInteger(top: Record<string, unknown>, name: string, profile: Profile): number | undefined {
  const value = ownMember(top, name)
  if (value === undefined) return undefined
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 0) {
    throw invalid(profile, `"${name}" must be a non-negative integer, got ${describe(value)}`)
  }

  return value
}

function readBoolean(top: Record<string, unknown>, name: string, profile: Profile): boolean | undefined {
  const value = ownMember(top, name)
  if (value === undefined) return undefined
  if (typeof value !== 'boolean') throw invalid(profile, `"${name}" must be a boolean, got ${describe(value)}`)
  return value
}

/** Parse a Communication Object (pushpull HTTP request or response body, WebSocket message). */
export function parseCommunicationObject(input: Input, limits?: Partial<CommunicationLimits>): CommunicationObject {
  const resolved = resolveLimits(limits)
  const profile = requestProfile('Communication Object')
  const top = parseTop(input, resolved, profile)
  const maxResponseEvents = readNonNegativeInteger(top, 'maxResponseEvents', profile)
  const report = readReport(top, resolved, profile, false)
  const sets = readSets(top, resolved, profile, false)
  const result: CommunicationObject = {...sets, ...report}
  if (maxResponseEvents !== undefined) result.maxResponseEvents = maxResponseEvents
  return result
}

/** Parse an RFC 8936 poll request (what a transmitter receives). */
export function parsePollRequest(input: Input, limits?: Partial<CommunicationLimits>): PollRequest {
  const resolved = resolveLimits(limits)
  const profile = requestProfile('poll request')
  const top = parseTop(input, resolved, profile)
  const maxEvents = readNonNegativeInteger(top, 'maxEvents', profile)
  const returnImmediately = readBoolean(top, 'returnImmediately', profile) ?? false
  const report = readReport(top, resolved, profile, false)
  const result: PollRequest = {...report, returnImmediately}
  if (maxEvents !== undefined) result.maxEvents = maxEvents
  return result
}

/** Parse an RFC 8936 poll response (what a poller receives): `sets` is required. */
export function parsePollResponse(input: Input, limits?: Partial<CommunicationLimits>): PollResponse {
  const resolved = resolveLimits(limits)
  const profile = responseProfile('poll response')
  const top = parseTop(input, resolved, profile)
  const moreAvailable = readBoolean(top, 'moreAvailable', profile) ?? false
  return {...readSets(top, resolved, profile, true), moreAvailable}
}

/** Parse a multi-SET push request body (what a receiver gets); `{}` is a request for late acks. */
export function parseMultiPushRequest(input: Input, limits?: Partial<CommunicationLimits>): MultiPushRequest {
  const resolved = resolveLimits(limits)
  const profile = requestProfile('multi-SET push request')
  const top = parseTop(input, resolved, profile)
  return readSets(top, resolved, profile, false)
}

/** Parse a multi-SET push response (what a sender gets with its 202): `ack` is required. */
export function parseMultiPushResponse(input: Input, limits?: Partial<CommunicationLimits>): MultiPushResponse {
  const resolved = resolveLimits(limits)
  const profile = responseProfile('multi-SET push response')
  const top = parseTop(input, resolved, profile)
  return readReport(top, resolved, profile, true)
}

// ---------------------------------------------------------------------------------------------
// Builders

function entriesOf<V>(input: ReadonlyMap<string, V> | Iterable<readonly [string, V]> | Readonly<Record<string, V>>): Array<readonly [string, V]> {
  if (input instanceof Map) return [...(input as ReadonlyMap<string, V>).entries()]
  if (typeof (input as Iterable<unknown>)[Symbol.iterator] === 'function') return [...(input as Iterable<readonly [string, V]>)]
  const record = input as Readonly<Record<string, V>>
  return Object.keys(record).map((key) => [key, record[key] as V] as const)
}

function buildSetsObject(input: SetsInput): Record<string, string> {
  const out = Object.create(null) as Record<string, string>
  for (const [jti, token] of entriesOf(input)) {
    if (typeof jti !== 'string' || jti.length === 0) throw new PushpullError('ERR_USAGE', 'every SET needs a non-empty jti key')
    if (typeof token !== 'string') throw new PushpullError('ERR_USAGE', `the SET for jti ${jti} must be a compact token string`)
    out[jti] = token
  }

  return out
}

function buildSetErrsObject(input: SetErrsInput): Record<string, SetErr> {
  const out = Object.create(null) as Record<string, SetErr>
  for (const [jti, value] of entriesOf(input)) {
    if (typeof jti !== 'string' || jti.length === 0) throw new PushpullError('ERR_USAGE', 'every setErr needs a non-empty jti key')
    out[jti] = {err: value.err, description: value.description}
  }

  return out
}

function buildAckList(input: Iterable<string>): string[] {
  const list = [...new Set(input)]
  for (const jti of list) {
    if (typeof jti !== 'string' || jti.length === 0) throw new PushpullError('ERR_USAGE', 'every ack must be a non-empty jti string')
  }

  return list
}

function checkCount(name: string, value: number | undefined): void {
  if (value !== undefined && (!Number.isSafeInteger(value) || value < 0)) {
    throw new PushpullError('ERR_USAGE', `${name} must be a non-negative integer, got ${String(value)}`)
  }
}

function countOf(object: Record<string, unknown>): number {
  let n = 0
  for (const _ in object) n++
  return n
}

/** The JSON text of a Communication Object; empty members are left out (`{}` when all are empty). */
export function buildCommunicationObject(input: CommunicationObjectInput = {}): string {
  checkCount('maxResponseEvents', input.maxResponseEvents)
  const out = Object.create(null) as Record<string, unknown>
  if (input.sets !== undefined) {
    const sets = buildSetsObject(input.sets)
    if (countOf(sets) > 0) out.sets = sets
  }

  if (input.ack !== undefined) {
    const ack = buildAckList(input.ack)
    if (ack.length > 0) out.ack = ack
  }

  if (input.setErrs !== undefined) {
    const setErrs = buildSetErrsObject(input.setErrs)
    if (countOf(setErrs) > 0) out.setErrs = setErrs
  }

  if (input.maxResponseEvents !== undefined) out.maxResponseEvents = input.maxResponseEvents
  return JSON.stringify(out)
}

/** The JSON text of an RFC 8936 poll request; `{}` is a plain poll. */
export function buildPollRequest(input: PollRequestInput = {}): string {
  checkCount('maxEvents', input.maxEvents)
  const out = Object.create(null) as Record<string, unknown>
  if (input.maxEvents !== undefined) out.maxEvents = input.maxEvents
  if (input.returnImmediately !== undefined) out.returnImmediately = input.returnImmediately
  if (input.ack !== undefined) {
    const ack = buildAckList(input.ack)
    if (ack.length > 0) out.ack = ack
  }

  if (input.setErrs !== undefined) {
    const setErrs = buildSetErrsObject(input.setErrs)
    if (countOf(setErrs) > 0) out.setErrs = setErrs
  }

  return JSON.stringify(out)
}

/** The JSON text of an RFC 8936 poll response: `sets` always present; `moreAvailable` when given. */
export function buildPollResponse(input: PollResponseInput): string {
  const out = Object.create(null) as Record<string, unknown>
  out.sets = buildSetsObject(input.sets)
  if (input.moreAvailable !== undefined) out.moreAvailable = input.moreAvailable
  return JSON.stringify(out)
}

/** The JSON text of a multi-SET push request: `{"sets": {...}}` (empty asks for late acks). */
export function buildMultiPushRequest(input: {sets: SetsInput}): string {
  const out = Object.create(null) as Record<string, unknown>
  out.sets = buildSetsObject(input.sets)
  return JSON.stringify(out)
}

/** The JSON text of a multi-SET push response: `ack` always present, `setErrs` when not empty. */
export function buildMultiPushResponse(input: MultiPushResponseInput): string {
  const out = Object.create(null) as Record<string, unknown>
  out.ack = buildAckList(input.ack)
  if (input.setErrs !== undefined) {
    const setErrs = buildSetErrsObject(input.setErrs)
    if (countOf(setErrs) > 0) out.setErrs = setErrs
  }

  return JSON.stringify(out)
}

function describe(value: unknown): string {
  if (value === null) return 'null'
  if (Array.isArray(value)) return 'an array'
  if (typeof value === 'string') return 'a string'
  if (typeof value === 'number') return Number.isInteger(value) ? `the number ${value}` : `the non-integer ${value}`
  if (typeof value === 'object') return 'an object'
  return `a ${typeof value}`
}
