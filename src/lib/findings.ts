/**
 * Findings: what a check found, as data. Lint, subject validation and event payload checks all
 * return `Finding[]`; nothing here prints. `code` is stable (documented in the README's lint
 * table); `message` is for people and may change; `where` is a dotted path into the SET, such as
 * `header.typ`, `claims.sub_id.email` or `claims.events.<uri>.change_type`.
 */
import {sanitizeText} from './text.js'

export type FindingSeverity = 'error' | 'warning'

export interface Finding {
  code: string
  severity: FindingSeverity
  message: string
  /** JSON-pointer-ish location: `header.typ`, `claims.events.<uri>.change_type`, `sub_id.identifiers[0]`. */
  where: string
}

export function errorFinding(code: string, where: string, message: string): Finding {
  return {code, message, severity: 'error', where}
}

export function warningFinding(code: string, where: string, message: string): Finding {
  return {code, message, severity: 'warning', where}
}

/** True when any finding is an error (warnings alone never fail a check). */
export function hasErrors(findings: readonly Finding[]): boolean {
  return findings.some((finding) => finding.severity === 'error')
}

/** Only the error findings. */
export function errorsOf(findings: readonly Finding[]): Finding[] {
  return findings.filter((finding) => finding.severity === 'error')
}

/** One line per finding, `error sub-present at claims.sub: ...`; for messages and logs. */
export function formatFinding(finding: Finding): string {
  return `${finding.severity} ${finding.code} at ${finding.where}: ${finding.message}`
}

/** Append a member name to a location: `joinWhere('sub_id', 'email')` is `sub_id.email`. */
export function joinWhere(where: string, member: string | number): string {
  if (typeof member === 'number') return `${where}[${member}]`
  return where === '' ? member : `${where}.${member}`
}

/**
 * Quote peer-supplied text for a finding message: control and bidi characters removed, length
 * capped, then JSON-quoted (`"value"`), so a hostile value cannot drive the terminal.
 */
export function quote(text: string, maxLength = 80): string {
  return JSON.stringify(sanitizeText(text, maxLength))
}
