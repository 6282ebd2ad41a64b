/**
 * SSF 1.0 profile lint for a decoded SET: findings as data, never prints, never throws.
 *
 * Profile `ssf` (default): header `typ` present and `secevent+jwt`; no `sub`; no `exp`; a valid
 * top-level `sub_id`; exactly one event; a known event type whose payload fits it; legacy subject
 * placements noted. Profile `caep-interop` adds: `alg` RS256, and a key of at least 2048 bits when
 * the caller knows the key size (`keyBits`).
 *
 * Codes (stable): typ-missing, typ-wrong, sub-present, exp-present, sub-id-missing,
 * subject-invalid, legacy-subject, events-missing, events-count, event-payload, event-unknown,
 * event-deprecated, member-missing, member-type, member-value, member-unknown,
 * verification-subject, alg-not-rs256, key-too-small.
 */
import {checkEventPayload, findEventType} from './events.js'
import {errorFinding, type Finding, quote, warningFinding} from './findings.js'
import {validateSubject} from './subject.js'
import {sanitizeText} from './text.js'

export type LintProfile = 'ssf' | 'caep-interop'

export const LINT_PROFILES: readonly LintProfile[] = ['ssf', 'caep-interop']

export interface LintOptions {
  /** Which profile to apply; default `ssf`. */
  profile?: LintProfile
  /** Size in bits of the key that signed the SET, when known; checked by `caep-interop`. */
  keyBits?: number
}

/** Minimum RSA key size the CAEP interoperability profile accepts. */
export const CAEP_INTEROP_MIN_KEY_BITS = 2048

const SET_TYP = new Set(['secevent+jwt', 'application/secevent+jwt'])

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value)
}

function hasOwn(object: object, key: string): boolean {
  return Object.prototype.hasOwnProperty.call(object, key)
}

function lintHeader(header: Record<string, unknown>): Finding[] {
  if (!hasOwn(header, 'typ')) {
    return [errorFinding('typ-missing', 'header.typ', 'header "typ" is missing; a SET must say "secevent+jwt"')]
  }

  const typ = header.typ
  if (typeof typ !== 'string' || !SET_TYP.has(typ.toLowerCase())) {
    // A non-string typ is peer JSON too: its text is sanitised like any other peer text.
    const shown = typeof typ === 'string' ? quote(typ) : sanitizeText(JSON.stringify(typ) ?? String(typ), 80)
    return [errorFinding('typ-wrong', 'header.typ', `header "typ" is ${shown}; a SET must say "secevent+jwt"`)]
  }

  return []
}

function lintSubject(claims: Record<string, unknown>, events: Record<string, unknown> | undefined): Finding[] {
  const findings: Finding[] = []
  if (hasOwn(claims, 'sub_id')) {
    findings.push(...validateSubject(claims.sub_id, 'claims.sub_id'))
  } else {
    findings.push(errorFinding('sub-id-missing', 'claims.sub_id', 'top-level "sub_id" is missing; SSF puts the subject identifier there'))
  }

  for (const [uri, payload] of Object.entries(events ?? {})) {
    if (!isRecord(payload)) continue
    const where = `claims.events.${uri}`
    if (hasOwn(payload, 'subject')) {
      findings.push(
        warningFinding('legacy-subject', `${where}.subject`, 'subject inside the event is a pre-SSF 1.0 placement; put it in top-level "sub_id"'),
      )
      for (const finding of validateSubject(payload.subject, `${where}.subject`)) {
        // The old placement is only noted: its own problems are warnings, not errors.
        findings.push(finding.severity === 'error' ? {...finding, severity: 'warning'} : finding)
      }
    }

    if (hasOwn(payload, 'subject_type')) {
      findings.push(warningFinding('legacy-subject', `${where}.subject_type`, 'legacy "subject_type" inside the event; SSF uses "sub_id" with "format"'))
    }
  }

  return findings
}

function lintEvents(claims: Record<string, unknown>): {findings: Finding[]; events: Record<string, unknown> | undefined} {
  if (!hasOwn(claims, 'events') || !isRecord(claims.events)) {
    return {events: undefined, findings: [errorFinding('events-missing', 'claims.events', '"events" is missing or not a JSON object')]}
  }

  const events = claims.events
  const uris = Object.keys(events)
  const findings: Finding[] = []
  if (uris.length !== 1) {
    findings.push(errorFinding('events-count', 'claims.events', `SSF requires exactly one event per SET, found ${uris.length}`))
  }

  for (const uri of uris) findings.push(...checkEventPayload(uri, events[uri], `claims.events.${uri}`))

  const verification = findEventType('ssf.verification')
  if (verification !== undefined && hasOwn(events, verification.uri) && isRecord(claims.sub_id) && claims.sub_id.format !== 'opaque') {
    findings.push(
      warningFinding('verification-subject', 'claims.sub_id.format', 'a verification event identifies the stream: "sub_id" should be {"format": "opaque", "id": <stream id>}'),
    )
  }

  return {events, findings}
}

function lintCaepInterop(header: Record<string, unknown>, keyBits: number | undefined): Finding[] {
  const findings: Finding[] = []
  if (header.alg !== 'RS256') {
    const shown = typeof header.alg === 'string' ? quote(header.alg) : 'missing'
    findings.push(errorFinding('alg-not-rs256', 'header.alg', `the CAEP interoperability profile requires RS256, header "alg" is ${shown}`))
  }

  if (keyBits !== undefined && keyBits < CAEP_INTEROP_MIN_KEY_BITS) {
    findings.push(
      errorFinding('key-too-small', 'header.kid', `the CAEP interoperability profile requires an RSA key of at least ${CAEP_INTEROP_MIN_KEY_BITS} bits, this one has ${keyBits}`),
    )
  }

  return findings
}

/**
 * Lint a decoded SET (header and claims as plain objects) against a profile. Returns findings in
 * a stable order: header, claims, subject, events, profile extras. Never throws.
 */
export function lintSet(set: {header: Record<string, unknown>; claims: Record<string, unknown>}, options: LintOptions = {}): Finding[] {
  const profile = options.profile ?? 'ssf'
  const header = isRecord(set.header) ? set.header : {}
  const claims = isRecord(set.claims) ? set.claims : {}
  const findings: Finding[] = [...lintHeader(header)]

  if (hasOwn(claims, 'sub')) {
    findings.push(errorFinding('sub-present', 'claims.sub', 'SETs must not carry "sub"; use "sub_id" for the subject'))
  }

  if (hasOwn(claims, 'exp')) {
    findings.push(errorFinding('exp-present', 'claims.exp', 'SETs must not carry "exp": an event does not expire'))
  }

  const {events, findings: eventFindings} = lintEvents(claims)
  findings.push(...lintSubject(claims, events), ...eventFindings)
  if (profile === 'caep-interop') findings.push(...lintCaepInterop(header, options.keyBits))
  return findings
}
