/**
 * The event catalog: every CAEP 1.0, RISC 1.0 and SSF 1.0 event type, with its members and the
 * values they allow (summarised in our own words from the OpenID specifications), plus building an
 * event payload from `key=value` assignments and checking a payload against its type.
 *
 * Names. `findEventType` accepts, in this order:
 *   1. the full event-type URI (`https://schemas.openid.net/secevent/caep/event-type/session-revoked`);
 *   2. the short name `<family>.<name>` (`caep.session-revoked`, `risc.account-disabled`,
 *      `ssf.verification`), case-insensitive;
 *   3. the bare name (`session-revoked`) when exactly one family defines it.
 * `buildEventPayload` also accepts any other absolute URI as a custom event type; an unknown short
 * or bare name is ERR_EVENT_INVALID with a did-you-mean suggestion.
 */
import {PushpullError} from './errors.js'
import {errorFinding, type Finding, joinWhere, quote, warningFinding} from './findings.js'
import {closestMatch} from './suggest.js'

export type EventFamily = 'caep' | 'risc' | 'ssf'
export type EventMemberType = 'string' | 'number' | 'boolean' | 'object' | 'array'

export interface EventMember {
  name: string
  required: boolean
  type: EventMemberType
  /** Allowed values of a string member. With `open`, the well-known values (others are agreed between peers). */
  values?: readonly string[]
  description: string
  /** `values` lists well-known values; any other string is allowed (checked as a warning). */
  open?: boolean
  /** Finer shape: `localized` = object of language tag -> text; `strings` = array of strings; `seconds` = NumericDate. */
  shape?: 'localized' | 'strings' | 'seconds'
  /** One of the CAEP optional members every CAEP event may carry. */
  common?: boolean
}

export interface EventType {
  uri: string
  shortName: string
  family: EventFamily
  description: string
  members: EventMember[]
  deprecated?: boolean
}

export const EVENT_URI_BASES: Readonly<Record<EventFamily, string>> = Object.freeze({
  caep: 'https://schemas.openid.net/secevent/caep/event-type/',
  risc: 'https://schemas.openid.net/secevent/risc/event-type/',
  ssf: 'https://schemas.openid.net/secevent/ssf/event-type/',
})

/** Credential types named by CAEP credential-change (RISC credential-compromise reuses them). */
export const CREDENTIAL_TYPES = [
  'password',
  'pin',
  'x509',
  'fido2-platform',
  'fido2-roaming',
  'fido-u2f',
  'verifiable-credential',
  'phone-voice',
  'phone-sms',
  'app',
] as const

const RISK_LEVELS = ['LOW', 'MEDIUM', 'HIGH'] as const

function member(
  name: string,
  type: EventMemberType,
  required: boolean,
  description: string,
  extra: Partial<Pick<EventMember, 'open' | 'shape' | 'values' | 'common'>> = {},
): EventMember {
  return {description, name, required, type, ...extra}
}

const eventTimestamp = (what: string, common = true): EventMember =>
  member('event_timestamp', 'number', false, `When ${what}, in seconds since the epoch (NumericDate).`, {common, shape: 'seconds'})

const reasonAdmin = (common = true): EventMember =>
  member('reason_admin', 'object', false, 'Message for administrators and logs, keyed by language tag: {"en": "..."}.', {common, shape: 'localized'})

const reasonUser = (common = true): EventMember =>
  member('reason_user', 'object', false, 'Message fit to show the end user, keyed by language tag: {"en": "..."}.', {common, shape: 'localized'})

/** The optional members every CAEP event may carry. */
function caepCommon(what: string): EventMember[] {
  return [
    eventTimestamp(what),
    member('initiating_entity', 'string', false, 'Who or what caused the event.', {common: true, values: ['admin', 'user', 'policy', 'system']}),
    reasonAdmin(),
    reasonUser(),
  ]
}

function caep(name: string, description: string, what: string, members: EventMember[] = []): EventType {
  return {description, family: 'caep', members: [...members, ...caepCommon(what)], shortName: `caep.${name}`, uri: `${EVENT_URI_BASES.caep}${name}`}
}

function risc(name: string, description: string, members: EventMember[] = [], deprecated = false): EventType {
  const type: EventType = {description, family: 'risc', members, shortName: `risc.${name}`, uri: `${EVENT_URI_BASES.risc}${name}`}
  if (deprecated) type.deprecated = true
  return type
}

function ssf(name: string, description: string, members: EventMember[] = []): EventType {
  return {description, family: 'ssf', members, shortName: `ssf.${name}`, uri: `${EVENT_URI_BASES.ssf}${name}`}
}

const CATALOG: EventType[] = [
  caep('session-revoked', 'The session named by the subject was revoked; a complex subject revokes every session matching it.', 'the session was revoked'),
  caep('token-claims-change', 'One or more claims of a token named by the subject have new values.', 'the claims changed', [
    member('claims', 'object', true, 'The changed claims with their new values, e.g. {"role": "ro-admin"}.'),
  ]),
  caep('credential-change', 'A credential of the subject was created, changed, revoked or deleted (password, PIN, certificate, FIDO, OTP ...).', 'the credential changed', [
    member('credential_type', 'string', true, 'Kind of credential; the listed values or any type both peers agree on.', {open: true, values: CREDENTIAL_TYPES}),
    member('change_type', 'string', true, 'What happened to the credential.', {values: ['create', 'revoke', 'update', 'delete']}),
    member('friendly_name', 'string', false, 'A human name for the credential.'),
    member('x509_issuer', 'string', false, 'Issuer of the X.509 certificate (RFC 5280).'),
    member('x509_serial', 'string', false, 'Serial number of the X.509 certificate (RFC 5280).'),
    member('fido2_aaguid', 'string', false, 'FIDO2 authenticator attestation GUID (WebAuthn).'),
  ]),
  caep('assurance-level-change', 'The authentication assurance of the subject went up or down since login.', 'the assurance level changed', [
    member('namespace', 'string', true, 'Where the level values come from; the listed namespaces or a custom one both peers agree on.', {
      open: true,
      values: ['RFC8176', 'RFC6711', 'ISO-IEC-29115', 'NIST-IAL', 'NIST-AAL', 'NIST-FAL'],
    }),
    member('current_level', 'string', true, 'The assurance level now, in the namespace.'),
    member('previous_level', 'string', false, 'The assurance level before; absent means unknown to the transmitter.'),
    member('change_direction', 'string', false, 'Whether the level went up or down (should be given with previous_level).', {values: ['increase', 'decrease']}),
  ]),
  caep('device-compliance-change', "The device's compliance status changed.", 'the compliance status changed', [
    member('previous_status', 'string', true, 'Status before the change.', {values: ['compliant', 'not-compliant']}),
    member('current_status', 'string', true, 'Status after the change.', {values: ['compliant', 'not-compliant']}),
  ]),
  caep('session-established', 'The transmitter established a new session for the subject.', 'the session was established', [
    member('fp_ua', 'string', false, 'Fingerprint of the user agent (describes the session, does not identify it).'),
    member('acr', 'string', false, 'Authentication context class reference, as in an OpenID Connect ID token.'),
    member('amr', 'array', false, 'Authentication methods references (array of strings), as in an ID token.', {shape: 'strings'}),
    member('ext_id', 'string', false, 'External session identifier, e.g. of a federated SAML session.'),
  ]),
  caep('session-presented', 'The transmitter saw the session of the subject in use.', 'the session was seen', [
    member('fp_ua', 'string', false, 'Fingerprint of the user agent (describes the session, does not identify it).'),
    member('ext_id', 'string', false, 'External session identifier, e.g. of a federated SAML session.'),
  ]),
  caep('risk-level-change', 'The risk level the transmitter assesses for the subject changed.', 'the risk level changed', [
    member('principal', 'string', true, 'The kind of entity the risk is about; the listed values or another SSF entity.', {
      open: true,
      values: ['USER', 'DEVICE', 'SESSION', 'TENANT', 'ORG_UNIT', 'GROUP'],
    }),
    member('current_level', 'string', true, 'Risk level now.', {values: RISK_LEVELS}),
    member('previous_level', 'string', false, 'Risk level before; absent means unknown.', {values: RISK_LEVELS}),
    member('risk_reason', 'string', false, 'Why the risk changed (recommended), e.g. PASSWORD_FOUND_IN_DATA_BREACH.'),
  ]),

  risc('account-credential-change-required', 'The account must change its credential, e.g. after a suspected compromise.'),
  risc('account-purged', 'The account was permanently deleted.'),
  risc('account-disabled', 'The account was disabled; it may be enabled again later.', [
    member('reason', 'string', false, 'Why the account was disabled.', {values: ['hijacking', 'bulk-account']}),
  ]),
  risc('account-enabled', 'The account was enabled.'),
  risc('identifier-changed', 'The identifier in the subject (an email or phone, old value) changed; sent by the authority over it.', [
    member('new-value', 'string', false, 'The new value of the identifier.'),
  ]),
  risc('identifier-recycled', 'The identifier in the subject (email or phone) now belongs to someone else.'),
  risc('credential-compromise', 'A credential of the subject was found to be compromised.', [
    member('credential_type', 'string', true, 'Kind of credential compromised (same values as CAEP credential-change).', {
      open: true,
      values: CREDENTIAL_TYPES,
    }),
    eventTimestamp('the transmitter discovered the compromise', false),
    reasonAdmin(false),
    reasonUser(false),
  ]),
  risc('opt-in', 'The account opted in to RISC event exchange.'),
  risc('opt-out-initiated', 'The account asked to opt out of RISC; events still flow for a grace period.'),
  risc('opt-out-cancelled', 'The account cancelled its opt-out; it is opted in again.'),
  risc('opt-out-effective', 'The account is now opted out of RISC event exchange.'),
  risc('recovery-activated', 'The account started a recovery flow.'),
  risc('recovery-information-changed', 'The recovery information of the account changed (e.g. a recovery email was added or removed).'),
  risc('sessions-revoked', 'All sessions of the account were revoked. Deprecated: use caep.session-revoked.', [], true),

  ssf('verification', 'Asks the transmitter to prove the stream works; the subject is the stream id (opaque format).', [
    member('state', 'string', false, 'An opaque value the receiver supplied, echoed back so it can match the request.'),
  ]),
  ssf('stream-updated', 'The transmitter changed the status of the stream.', [
    member('status', 'string', true, 'The new status of the stream.', {values: ['enabled', 'paused', 'disabled']}),
    member('reason', 'string', false, 'Why the status changed.'),
  ]),
]

function deepFreeze<T>(value: T): T {
  if (typeof value === 'object' && value !== null) {
    for (const inner of Object.values(value)) deepFreeze(inner)
    Object.freeze(value)
  }

  return value
}

/** Every known event type, CAEP first, then RISC, then SSF. Frozen. */
export const EVENT_TYPES: readonly EventType[] = deepFreeze(CATALOG)

const BY_URI = new Map(EVENT_TYPES.map((type) => [type.uri, type]))
const BY_SHORT = new Map(EVENT_TYPES.map((type) => [type.shortName, type]))

function bareName(type: EventType): string {
  return type.shortName.slice(type.family.length + 1)
}

/** Types whose bare name (`session-revoked`) is `name`; more than one means ambiguous. */
function byBareName(name: string): EventType[] {
  return EVENT_TYPES.filter((type) => bareName(type) === name)
}

const ABSOLUTE_URI = /^[A-Za-z][A-Za-z0-9+.-]*:\S+$/

/**
 * The catalog entry for a full URI, a short name (`caep.session-revoked`) or a bare name
 * (`session-revoked`, only when one family defines it). Undefined when unknown or ambiguous.
 */
export function findEventType(nameOrUri: string): EventType | undefined {
  const text = nameOrUri.trim()
  const exact = BY_URI.get(text)
  if (exact !== undefined) return exact
  const lower = text.toLowerCase()
  const short = BY_SHORT.get(lower)
  if (short !== undefined) return short
  const bare = byBareName(lower)
  return bare.length === 1 ? bare[0] : undefined
}

/** `caep.session-revoked` for a catalog URI; undefined for anything else. */
export function shortNameOf(uri: string): string | undefined {
  return BY_URI.get(uri)?.shortName
}

/** Event types of one family (all when `family` is undefined). */
export function eventTypesOf(family?: EventFamily): EventType[] {
  return EVENT_TYPES.filter((type) => family === undefined || type.family === family)
}

/** The ERR_EVENT_INVALID for a name that is not in the catalog, with a did-you-mean. */
export function unknownEventTypeError(name: string): PushpullError {
  const text = name.trim()
  const ambiguous = byBareName(text.toLowerCase())
  if (ambiguous.length > 1) {
    return new PushpullError(
      'ERR_EVENT_INVALID',
      `event type "${text}" is ambiguous: use one of ${ambiguous.map((type) => type.shortName).join(', ')}`,
      {details: {candidates: ambiguous.map((type) => type.shortName)}},
    )
  }

  const candidates = EVENT_TYPES.flatMap((type) => [type.shortName, bareName(type)])
  const guess = closestMatch(text, candidates)
  const suggestion = guess === undefined ? undefined : (findEventType(guess)?.shortName ?? guess)
  const hint = suggestion === undefined ? '' : ` (did you mean "${suggestion}"?)`
  return new PushpullError(
    'ERR_EVENT_INVALID',
    `unknown event type "${text}"${hint}; run "pushpull events" for the list, or give a full URI for a custom event`,
    {details: suggestion === undefined ? {} : {suggestion}},
  )
}

/**
 * The event-type URI for a name: a catalog entry by any of its names, or any other absolute URI
 * (a custom event). Throws ERR_EVENT_INVALID for unknown or ambiguous names.
 */
export function resolveEventUri(nameOrUri: string): string {
  const known = findEventType(nameOrUri)
  if (known !== undefined) return known.uri
  const text = nameOrUri.trim()
  if (text === '') throw new PushpullError('ERR_EVENT_INVALID', 'event type is empty; give a short name such as caep.session-revoked or a URI')
  if (ABSOLUTE_URI.test(text) && !/^(caep|risc|ssf)[.:]/i.test(text)) return text
  throw unknownEventTypeError(text)
}

const FORBIDDEN_KEYS = new Set(['__proto__', 'constructor', 'prototype'])
const MAX_DEPTH = 64

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value)
}

/** A JSON-only copy that refuses prototype-reaching keys and anything JSON cannot hold. */
function cloneJson(value: unknown, where: string, depth = 0): unknown {
  if (depth > MAX_DEPTH) throw new PushpullError('ERR_EVENT_INVALID', `${where} is nested deeper than ${MAX_DEPTH} levels`)
  if (value === null || typeof value === 'string' || typeof value === 'boolean') return value
  if (typeof value === 'number') {
    if (!Number.isFinite(value)) throw new PushpullError('ERR_EVENT_INVALID', `${where} is not a finite number`)
    return value
  }

  if (Array.isArray(value)) return value.map((item, index) => cloneJson(item, `${where}[${index}]`, depth + 1))
  if (isRecord(value)) {
    const out: Record<string, unknown> = {}
    for (const [key, inner] of Object.entries(value)) {
      if (FORBIDDEN_KEYS.has(key)) throw new PushpullError('ERR_EVENT_INVALID', `${where} uses the forbidden key "${key}"`)
      out[key] = cloneJson(inner, joinWhere(where, key), depth + 1)
    }

    return out
  }

  throw new PushpullError('ERR_EVENT_INVALID', `${where} holds a ${typeof value}, which JSON cannot carry`)
}

/** `true`, `12`, `{"a":1}`, `"quoted"` parse as JSON; anything else is the literal string. */
function parseAssignedValue(text: string, where: string): unknown {
  let parsed: unknown
  try {
    parsed = JSON.parse(text) as unknown
  } catch {
    return text
  }

  return cloneJson(parsed, where)
}

function applyAssignment(payload: Record<string, unknown>, assignment: string): void {
  const equals = assignment.indexOf('=')
  if (equals === -1) {
    throw new PushpullError('ERR_EVENT_INVALID', `assignment "${assignment}" has no "="; write key=value (e.g. change_type=update)`)
  }

  const key = assignment.slice(0, equals).trim()
  const segments = key.split('.')
  if (key === '' || segments.some((segment) => segment === '')) {
    throw new PushpullError('ERR_EVENT_INVALID', `assignment "${assignment}" has an empty key or key segment`)
  }

  const forbidden = segments.find((segment) => FORBIDDEN_KEYS.has(segment))
  if (forbidden !== undefined) {
    throw new PushpullError('ERR_EVENT_INVALID', `assignment "${assignment}" uses the forbidden key "${forbidden}"`)
  }

  const value = parseAssignedValue(assignment.slice(equals + 1), key)
  let target = payload
  for (const [index, segment] of segments.entries()) {
    if (index === segments.length - 1) {
      target[segment] = value
      break
    }

    const next = Object.prototype.hasOwnProperty.call(target, segment) ? target[segment] : undefined
    if (next === undefined) {
      const created: Record<string, unknown> = {}
      target[segment] = created
      target = created
    } else if (isRecord(next)) {
      target = next
    } else {
      const path = segments.slice(0, index + 1).join('.')
      throw new PushpullError('ERR_EVENT_INVALID', `assignment "${assignment}" cannot nest under "${path}", which is already ${JSON.stringify(next)}`)
    }
  }
}

/**
 * Build `{uri, payload}` for an event: resolve the name (catalog name or custom URI), copy `base`,
 * then apply each `key=value` in order. Values parse as JSON when they can (`true`, `12`,
 * `{"a":1}`, `"12"` for a string that looks like a number), else they are the literal string.
 * Dotted keys nest (`reason_admin.en=Hi`). Keys `__proto__`, `constructor`, `prototype` are
 * refused. Required members are NOT filled in: `checkEventPayload` reports what is missing.
 * Throws ERR_EVENT_INVALID.
 */
export function buildEventPayload(
  nameOrUri: string,
  assignments: string[] = [],
  base: Record<string, unknown> = {},
): {uri: string; payload: Record<string, unknown>} {
  const uri = resolveEventUri(nameOrUri)
  if (!isRecord(base)) throw new PushpullError('ERR_EVENT_INVALID', 'the base event payload must be a JSON object')
  const payload = cloneJson(base, 'payload') as Record<string, unknown>
  for (const assignment of assignments) applyAssignment(payload, assignment)
  return {payload, uri}
}

function describeValue(value: unknown): string {
  if (value === null) return 'null'
  if (Array.isArray(value)) return 'an array'
  return typeof value === 'object' ? 'an object' : `a ${typeof value}`
}

function hasType(value: unknown, type: EventMemberType): boolean {
  switch (type) {
    case 'array': {
      return Array.isArray(value)
    }

    case 'object': {
      return isRecord(value)
    }

    case 'number': {
      return typeof value === 'number' && Number.isFinite(value)
    }

    default: {
      return typeof value === type
    }
  }
}

function checkMember(spec: EventMember, value: unknown, where: string): Finding[] {
  if (!hasType(value, spec.type)) {
    const hint = spec.type === 'string' && (typeof value === 'number' || typeof value === 'boolean') ? ` (on the command line quote it: ${spec.name}='"${String(value)}"')` : ''
    return [errorFinding('member-type', where, `"${spec.name}" must be ${spec.type === 'array' || spec.type === 'object' ? `an ${spec.type}` : `a ${spec.type}`}, got ${describeValue(value)}${hint}`)]
  }

  if (spec.values !== undefined && typeof value === 'string' && !spec.values.includes(value)) {
    const allowed = spec.values.join(', ')
    const close = closestMatch(value, spec.values)
    const hint = close === undefined ? '' : ` (did you mean "${close}"?)`
    return spec.open === true
      ? [warningFinding('member-value', where, `"${spec.name}" value ${quote(value)} is not a well-known value (${allowed})${hint}; fine only if both peers agree on it`)]
      : [errorFinding('member-value', where, `"${spec.name}" must be one of ${allowed}, got ${quote(value)}${hint}`)]
  }

  switch (spec.shape) {
    case 'localized': {
      const entries = Object.entries(value as Record<string, unknown>)
      if (entries.length === 0) return [errorFinding('member-value', where, `"${spec.name}" must hold at least one language tag, e.g. {"en": "..."}`)]
      const bad = entries.find(([, text]) => typeof text !== 'string')
      return bad === undefined ? [] : [errorFinding('member-value', joinWhere(where, bad[0]), `"${spec.name}".${quote(bad[0])} must be a string, got ${describeValue(bad[1])}`)]
    }

    case 'strings': {
      const index = (value as unknown[]).findIndex((item) => typeof item !== 'string')
      return index === -1 ? [] : [errorFinding('member-type', joinWhere(where, index), `"${spec.name}" must hold only strings`)]
    }

    case 'seconds': {
      return (value as number) >= 0 ? [] : [errorFinding('member-value', where, `"${spec.name}" must be a non-negative NumericDate (seconds), got ${String(value)}`)]
    }

    default: {
      return []
    }
  }
}

/** Members the event must not be checked against (legacy subject placement; lint reports those). */
const LEGACY_MEMBERS = new Set(['subject', 'subject_type'])

/**
 * Check one event payload against its type. Codes: `event-payload` (not an object),
 * `event-unknown` (warning: URI not in the catalog), `event-deprecated` (warning),
 * `member-missing`, `member-type`, `member-value` (warning for open value lists), and
 * `member-unknown` (warning, only for a name close to a defined member: a likely typo).
 * Unknown members are otherwise allowed: event types are extensible.
 */
export function checkEventPayload(uri: string, payload: unknown, where = `claims.events.${uri}`): Finding[] {
  const findings: Finding[] = []
  if (!isRecord(payload)) {
    findings.push(errorFinding('event-payload', where, `the event payload must be a JSON object, got ${describeValue(payload)}`))
    return findings
  }

  const type = BY_URI.get(uri)
  if (type === undefined) {
    const near = closestMatch(uri, [...BY_URI.keys()], 3)
    findings.push(warningFinding('event-unknown', where, `event type ${quote(uri, 200)} is not in the CAEP/RISC/SSF catalog${near === undefined ? '' : ` (did you mean ${near}?)`}`))
    return findings
  }

  if (type.deprecated === true) {
    findings.push(warningFinding('event-deprecated', where, `${type.shortName} is deprecated: ${type.description}`))
  }

  const names = type.members.map((spec) => spec.name)
  for (const spec of type.members) {
    const memberWhere = joinWhere(where, spec.name)
    if (!Object.prototype.hasOwnProperty.call(payload, spec.name)) {
      if (spec.required) findings.push(errorFinding('member-missing', memberWhere, `${type.shortName} requires the member "${spec.name}" (${spec.description})`))
      continue
    }

    findings.push(...checkMember(spec, payload[spec.name], memberWhere))
  }

  for (const key of Object.keys(payload)) {
    if (names.includes(key) || LEGACY_MEMBERS.has(key)) continue
    const near = closestMatch(key, names, 2)
    if (near !== undefined) {
      findings.push(warningFinding('member-unknown', joinWhere(where, key), `${quote(key)} is not a member of ${type.shortName} (did you mean "${near}"?)`))
    }
  }

  return findings
}

