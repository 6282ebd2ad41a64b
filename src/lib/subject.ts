/**
 * Subject identifiers: RFC 9493 formats plus the ones SSF 1.0 adds.
 *
 * `parseSubject` turns command-line text into a subject (shorthand `FORMAT:VALUE` or a JSON
 * object) and throws ERR_SUBJECT_INVALID when the result does not validate. `validateSubject`
 * checks any value (for example a peer's `sub_id`) and returns findings, never throws.
 */
import {isIP} from 'node:net'

import {PushpullError} from './errors.js'
import {errorFinding, type Finding, joinWhere, quote, warningFinding} from './findings.js'
import {didYouMean} from './suggest.js'
import {sanitizeText} from './text.js'

export type SubjectIdentifier = {format: string} & Record<string, unknown>

interface FormatSpec {
  /** Required string members (all of them are required). */
  strings?: readonly string[]
  /** A member holding an array. */
  array?: string
  /** Members that each hold a nested subject (complex); at least one must be present. */
  nested?: readonly string[]
  description: string
}

/** Every subject format pushpull knows, with the members it defines. */
export const SUBJECT_FORMATS: Readonly<Record<string, FormatSpec>> = Object.freeze({
  account: {description: 'an acct: URI (RFC 7565)', strings: ['uri']},
  email: {description: 'an email address', strings: ['email']},
  iss_sub: {description: 'an issuer and a subject, as in an ID token', strings: ['iss', 'sub']},
  opaque: {description: 'an opaque string, e.g. a stream id or session id', strings: ['id']},
  phone_number: {description: 'an E.164 telephone number', strings: ['phone_number']},
  did: {description: 'a decentralized identifier URL', strings: ['url']},
  uri: {description: 'an absolute URI', strings: ['uri']},
  aliases: {array: 'identifiers', description: 'several identifiers of the same subject (not nested)'},
  jwt_id: {description: 'a JWT by issuer and jti', strings: ['iss', 'jti']},
  saml_assertion_id: {description: 'a SAML assertion by issuer and assertion id', strings: ['issuer', 'assertion_id']},
  'ip-addresses': {array: 'ip-addresses', description: 'one or more IPv4/IPv6 addresses'},
  complex: {
    description: 'a combination of simple subjects (user, device, session, ...)',
    nested: ['user', 'device', 'session', 'application', 'tenant', 'org_unit', 'group'],
  },
})

export const SUBJECT_FORMAT_NAMES: readonly string[] = Object.freeze(Object.keys(SUBJECT_FORMATS))

const FORBIDDEN_KEYS = new Set(['__proto__', 'constructor', 'prototype'])
const EMAIL = /^[^\s@]+@[^\s@]+\.[^\s@]+$/
const PHONE = /^\+[0-9]{2,15}$/
const URI_SCHEME = /^[A-Za-z][A-Za-z0-9+.-]*:\S+$/

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value)
}

function hasOwn(object: object, key: string): boolean {
  return Object.prototype.hasOwnProperty.call(object, key)
}

function describe(value: unknown): string {
  if (value === null) return 'null'
  if (Array.isArray(value)) return 'an array'
  return typeof value === 'object' ? 'an object' : `a ${typeof value}`
}

/** Extra checks on the value of a string member, by format. */
function checkStringValue(format: string, member: string, value: string, where: string): Finding[] {
  switch (`${format}.${member}`) {
    case 'account.uri': {
      return /^acct:[^\s@]+@[^\s@]+$/.test(value)
        ? []
        : [errorFinding('subject-invalid', where, `account uri must be an acct: URI such as acct:ana@example.com, got ${quote(value)}`)]
    }

    case 'email.email': {
      return EMAIL.test(value) ? [] : [errorFinding('subject-invalid', where, `${quote(value)} does not look like an email address`)]
    }

    case 'phone_number.phone_number': {
      return PHONE.test(value)
        ? []
        : [errorFinding('subject-invalid', where, `phone_number must be E.164: "+" then 2 to 15 digits, got ${quote(value)}`)]
    }

    case 'did.url': {
      return /^did:[a-z0-9]+:\S+$/.test(value)
        ? []
        : [errorFinding('subject-invalid', where, `did url must start with did:<method>:, got ${quote(value)}`)]
    }

    case 'uri.uri': {
      return URI_SCHEME.test(value) ? [] : [errorFinding('subject-invalid', where, `${quote(value)} is not an absolute URI`)]
    }

    default: {
      return []
    }
  }
}

interface Context {
  /** Inside `aliases.identifiers`: another `aliases` is not allowed. */
  inAliases: boolean
  /** Inside a `complex` member: another `complex` is not allowed. */
  inComplex: boolean
}

function validateAt(value: unknown, where: string, context: Context): Finding[] {
  if (!isRecord(value)) {
    return [errorFinding('subject-invalid', where, `a subject identifier must be a JSON object, got ${describe(value)}`)]
  }

  const findings: Finding[] = []
  let formatKey = 'format'
  if (!hasOwn(value, 'format')) {
    if (hasOwn(value, 'subject_type')) {
      formatKey = 'subject_type'
      findings.push(
        warningFinding('legacy-subject', joinWhere(where, 'subject_type'), 'legacy "subject_type" used instead of "format" (deprecated; use "format")'),
      )
    } else {
      findings.push(errorFinding('subject-invalid', joinWhere(where, 'format'), 'the subject identifier has no "format" member'))
      return findings
    }
  } else if (hasOwn(value, 'subject_type')) {
    findings.push(warningFinding('legacy-subject', joinWhere(where, 'subject_type'), 'legacy "subject_type" present next to "format"; drop it'))
  }

  const format = value[formatKey]
  if (typeof format !== 'string') {
    findings.push(errorFinding('subject-invalid', joinWhere(where, formatKey), `"${formatKey}" must be a string, got ${describe(format)}`))
    return findings
  }

  const spec = hasOwn(SUBJECT_FORMATS, format) ? SUBJECT_FORMATS[format] : undefined
  if (spec === undefined) {
    findings.push(
      errorFinding('subject-invalid', joinWhere(where, formatKey), `unknown subject format ${quote(format)}${didYouMean(format, SUBJECT_FORMAT_NAMES)}`),
    )
    return findings
  }

  if (format === 'aliases' && context.inAliases) {
    findings.push(errorFinding('subject-invalid', joinWhere(where, formatKey), 'aliases must not be nested inside aliases'))
    return findings
  }

  if (format === 'complex' && (context.inComplex || context.inAliases)) {
    findings.push(errorFinding('subject-invalid', joinWhere(where, formatKey), 'a complex subject cannot be nested inside another subject'))
    return findings
  }

  const allowed = new Set<string>(['format', 'subject_type', ...(spec.strings ?? []), ...(spec.nested ?? [])])
  if (spec.array !== undefined) allowed.add(spec.array)
  for (const key of Object.keys(value)) {
    if (allowed.has(key) && !FORBIDDEN_KEYS.has(key)) continue
    findings.push(errorFinding('subject-invalid', joinWhere(where, key), `member ${quote(key)} is not defined for format "${format}"`))
  }

  for (const member of spec.strings ?? []) {
    const memberWhere = joinWhere(where, member)
    const memberValue = value[member]
    if (!hasOwn(value, member)) {
      findings.push(errorFinding('subject-invalid', memberWhere, `format "${format}" requires the member "${member}"`))
    } else if (typeof memberValue !== 'string' || memberValue === '') {
      findings.push(errorFinding('subject-invalid', memberWhere, `"${member}" must be a non-empty string, got ${describe(memberValue)}`))
    } else {
      findings.push(...checkStringValue(format, member, memberValue, memberWhere))
    }
  }

  if (spec.array !== undefined) findings.push(...validateArray(format, spec.array, value, where, context))

  if (spec.nested !== undefined) {
    const present = spec.nested.filter((member) => hasOwn(value, member))
    if (present.length === 0) {
      findings.push(
        errorFinding('subject-invalid', where, `a complex subject needs at least one of: ${spec.nested.join(', ')}`),
      )
    }

    for (const member of present) {
      findings.push(...validateAt(value[member], joinWhere(where, member), {...context, inComplex: true}))
    }
  }

  return findings
}

function validateArray(format: string, member: string, value: Record<string, unknown>, where: string, context: Context): Finding[] {
  const memberWhere = joinWhere(where, member)
  const items = value[member]
  if (!hasOwn(value, member)) {
    return [errorFinding('subject-invalid', memberWhere, `format "${format}" requires the member "${member}"`)]
  }

  if (!Array.isArray(items) || items.length === 0) {
    return [errorFinding('subject-invalid', memberWhere, `"${member}" must be a non-empty array, got ${describe(items)}`)]
  }

  const findings: Finding[] = []
  for (const [index, item] of items.entries()) {
    const itemWhere = joinWhere(memberWhere, index)
    if (format === 'aliases') {
      findings.push(...validateAt(item, itemWhere, {...context, inAliases: true}))
    } else if (typeof item !== 'string' || isIP(item) === 0) {
      findings.push(errorFinding('subject-invalid', itemWhere, `${typeof item === 'string' ? quote(item) : describe(item)} is not an IPv4 or IPv6 address`))
    }
  }

  return findings
}

/**
 * Validate a subject identifier (top-level `sub_id`, a complex member, an alias).
 * Codes: `subject-invalid` (error) and `legacy-subject` (warning, `subject_type` instead of `format`).
 */
export function validateSubject(value: unknown, where = 'sub_id'): Finding[] {
  return validateAt(value, where, {inAliases: false, inComplex: false})
}

function invalid(message: string): PushpullError {
  return new PushpullError('ERR_SUBJECT_INVALID', message)
}

function splitPair(format: string, rest: string, names: [string, string]): SubjectIdentifier {
  const bar = rest.indexOf('|')
  const first = bar === -1 ? '' : rest.slice(0, bar)
  const second = bar === -1 ? '' : rest.slice(bar + 1)
  if (first === '' || second === '') {
    throw invalid(`subject "${format}:${rest}" must be ${format}:${names[0].toUpperCase()}|${names[1].toUpperCase()}`)
  }

  return {format, [names[0]]: first, [names[1]]: second}
}

function parseJsonSubject(text: string): unknown {
  try {
    return JSON.parse(text) as unknown
  } catch (error) {
    throw new PushpullError('ERR_SUBJECT_INVALID', `subject JSON does not parse: ${(error as Error).message}`, {cause: error})
  }
}

function parseShorthand(text: string): SubjectIdentifier {
  // A DID is its own shorthand: did:example:123 (or did:did:example:123).
  if (text.startsWith('did:')) {
    const rest = text.slice('did:'.length)
    return {format: 'did', url: rest.startsWith('did:') ? rest : text}
  }

  const colon = text.indexOf(':')
  if (colon <= 0) {
    throw invalid(`subject "${text}" is neither FORMAT:VALUE (e.g. email:ana@example.com) nor a JSON object`)
  }

  const format = text.slice(0, colon)
  const rest = text.slice(colon + 1)
  if (rest === '') throw invalid(`subject "${text}" has no value after "${format}:"`)
  switch (format) {
    case 'email': {
      return {email: rest, format}
    }

    case 'opaque': {
      return {format, id: rest}
    }

    case 'phone_number':
    case 'phone': {
      return {format: 'phone_number', phone_number: rest}
    }

    case 'account': {
      return {format, uri: rest.startsWith('acct:') ? rest : `acct:${rest}`}
    }

    case 'uri': {
      return {format, uri: rest}
    }

    case 'iss_sub': {
      return splitPair(format, rest, ['iss', 'sub'])
    }

    case 'jwt_id': {
      return splitPair(format, rest, ['iss', 'jti'])
    }

    case 'saml_assertion_id': {
      return splitPair(format, rest, ['issuer', 'assertion_id'])
    }

    case 'ip-addresses': {
      return {format, 'ip-addresses': rest.split(',').map((part) => part.trim())}
    }

    case 'aliases':
    case 'complex': {
      throw invalid(`subject format "${format}" has no shorthand; give it as a JSON object`)
    }

    default: {
      throw invalid(`unknown subject format "${format}"${didYouMean(format, [...SUBJECT_FORMAT_NAMES, 'phone'])}`)
    }
  }
}

/**
 * Parse a subject from the command line. Accepted forms:
 * `email:ana@example.com`, `iss_sub:ISS|SUB`, `opaque:ID`, `phone_number:+15551234567` (or
 * `phone:`), `account:acct:ana@example.com` (the `acct:` is added when missing), `uri:URI`,
 * `did:example:123` (the DID itself; `did:did:example:123` also works), `jwt_id:ISS|JTI`,
 * `saml_assertion_id:ISSUER|ID`, `ip-addresses:1.2.3.4,::1`, or a JSON object (required for
 * `aliases` and `complex`). The `|` splits at its first occurrence.
 * Throws ERR_SUBJECT_INVALID naming the problem when the text or the result is not valid.
 */
export function parseSubject(input: string): SubjectIdentifier {
  const text = input.trim()
  if (text === '') throw invalid('subject is empty; give FORMAT:VALUE (e.g. email:ana@example.com) or a JSON object')
  const value = text.startsWith('{') || text.startsWith('[') ? parseJsonSubject(text) : parseShorthand(text)
  const errors = validateSubject(value, 'subject').filter((finding) => finding.severity === 'error')
  if (errors.length > 0) {
    const message = errors.map((finding) => `${finding.where}: ${finding.message}`).join('; ')
    throw new PushpullError('ERR_SUBJECT_INVALID', `invalid subject: ${message}`, {details: {findings: errors}})
  }

  return value as SubjectIdentifier
}

/** Deepest nesting `describeSubject` spells out (complex -> aliases -> simple needs 3). */
const DESCRIBE_MAX_DEPTH = 4

/**
 * One-line human form of a subject, sanitised for display (peer text may hold terminal control
 * characters). Simple subjects are shown in the shorthand `parseSubject` reads back
 * (`email:ana@example.com`, `iss_sub:https://idp|1234`, `did:example:123`, `ip-addresses:1.2.3.4,::1`);
 * aliases and complex subjects as `aliases(email:a@example.com, opaque:u1)` and
 * `complex(user=email:a@example.com, session=opaque:s1)`. Anything else (unknown format, extra or
 * non-string members, legacy `subject_type`) falls back to `format key=value ...`. Objects nested
 * deeper than a valid subject can be are shown as `…`, so a hostile `sub_id` cannot exhaust the
 * stack or cost quadratic time.
 */
export function describeSubject(subject: unknown): string {
  return sanitizeText(describeAt(subject, 0))
}

/** The members a simple format's shorthand carries, in order, and how they are joined. */
const SHORTHAND: Readonly<Record<string, {members: readonly string[]}>> = {
  account: {members: ['uri']},
  did: {members: ['url']},
  email: {members: ['email']},
  iss_sub: {members: ['iss', 'sub']},
  jwt_id: {members: ['iss', 'jti']},
  opaque: {members: ['id']},
  phone_number: {members: ['phone_number']},
  saml_assertion_id: {members: ['issuer', 'assertion_id']},
  uri: {members: ['uri']},
}

/** The shorthand `parseSubject` turns back into exactly this subject, or undefined when there is none. */
function shorthandOf(subject: Record<string, unknown>, format: string): string | undefined {
  const keys = Object.keys(subject).filter((key) => key !== 'format')
  if (format === 'ip-addresses') {
    const list = subject['ip-addresses']
    if (keys.length !== 1 || !Array.isArray(list) || list.length === 0) return undefined
    const ok = list.every((item) => typeof item === 'string' && item !== '' && item.trim() === item && !item.includes(','))
    return ok ? `ip-addresses:${list.join(',')}` : undefined
  }

  const spec = hasOwn(SHORTHAND, format) ? SHORTHAND[format] : undefined
  if (spec === undefined || keys.length !== spec.members.length) return undefined
  const values: string[] = []
  for (const member of spec.members) {
    const value = hasOwn(subject, member) ? subject[member] : undefined
    if (typeof value !== 'string' || value === '') return undefined
    values.push(value)
  }

  // A pair splits at its first "|", so the first part must not hold one.
  if (values.length === 2 && values[0]!.includes('|')) return undefined
  const [first = ''] = values
  let text: string
  if (format === 'did') {
    if (!first.startsWith('did:')) return undefined
    text = first.startsWith('did:did:') ? `did:${first}` : first
  } else if (format === 'account') {
    if (!first.startsWith('acct:')) return undefined
    text = `account:${first}`
  } else {
    text = `${format}:${values.join('|')}`
  }

  // parseSubject trims the whole text.
  return text.trim() === text ? text : undefined
}

function describeAt(subject: unknown, depth: number): string {
  if (!isRecord(subject)) return Array.isArray(subject) ? '[…]' : String(subject)
  if (depth >= DESCRIBE_MAX_DEPTH) return '…'
  const format = typeof subject.format === 'string' ? subject.format : undefined
  const nested = (value: unknown): string => {
    if (!isRecord(value)) return Array.isArray(value) ? '[…]' : String(value)
    const text = describeAt(value, depth + 1)
    return text.includes(' ') && !/^\w[\w-]*\(/.test(text) ? `(${text})` : text
  }

  if (format !== undefined) {
    const shorthand = shorthandOf(subject, format)
    if (shorthand !== undefined) return shorthand
    const members = Object.entries(subject).filter(([key]) => key !== 'format')
    if (format === 'aliases' && members.length === 1 && Array.isArray(subject.identifiers) && subject.identifiers.every((item) => isRecord(item))) {
      return `aliases(${subject.identifiers.map((item) => nested(item)).join(', ')})`
    }

    if (format === 'complex' && members.length > 0 && members.every(([, value]) => isRecord(value))) {
      return `complex(${members.map(([key, value]) => `${key}=${nested(value)}`).join(', ')})`
    }
  }

  const label = format ?? (typeof subject.subject_type === 'string' ? subject.subject_type : '?')
  const show = (value: unknown): string => (isRecord(value) ? `(${describeAt(value, depth + 1)})` : Array.isArray(value) ? '[…]' : String(value))
  const parts = Object.entries(subject)
    .filter(([key]) => key !== 'format' && key !== 'subject_type')
    .map(([key, value]) => `${key}=${Array.isArray(value) ? value.map((item) => show(item)).join(',') : show(value)}`)
  return `${label} ${parts.join(' ')}`.trim()
}
