/** Human rendering of decoded SETs for `decode` (and later `poll`, `listen`). Data only: no I/O. */
import type {ChalkInstance} from 'chalk'

import {shortNameOf} from '../lib/events.js'
import type {Finding} from '../lib/findings.js'
import {describeSubject} from '../lib/subject.js'
import {sanitizeText} from '../lib/text.js'
import type {VerifiedSet} from '../lib/verify.js'

const MAX_LINE = 2000

function clean(text: string): string {
  return sanitizeText(text, MAX_LINE)
}

function timeOf(seconds: unknown): string {
  if (typeof seconds !== 'number' || !Number.isFinite(seconds)) return clean(JSON.stringify(seconds) ?? String(seconds))
  const date = new Date(seconds * 1000)
  return Number.isNaN(date.getTime()) ? String(seconds) : `${seconds} (${date.toISOString()})`
}

function valueOf(value: unknown): string {
  return typeof value === 'string' ? clean(value) : clean(JSON.stringify(value) ?? String(value))
}

function indentJson(value: unknown, indent: string): string {
  return (JSON.stringify(value, null, 2) ?? String(value))
    .split('\n')
    .map((line) => `${indent}${clean(line)}`)
    .join('\n')
}

const TIME_CLAIMS = new Set(['iat', 'exp', 'nbf', 'toe'])
const CLAIM_ORDER = ['iss', 'jti', 'iat', 'aud', 'txn', 'toe', 'exp', 'nbf', 'sub']

export interface RenderContext {
  /** 'SET 2 of 3' style heading; omitted for a single SET. */
  title?: string
  /** The `sets` map key the token came under. */
  key?: string
}

/** The VERIFIED / UNVERIFIED label line. UNVERIFIED is loud and says why. */
export function verificationLabel(set: VerifiedSet, c: ChalkInstance): string {
  if (set.verified) {
    const key = set.key
    const kid = key?.kid === undefined ? '' : ` kid ${clean(key.kid)}`
    return `${c.green.bold('VERIFIED')} ${set.header.alg}${kid}${key ? ` (key from ${clean(key.source)})` : ''}`
  }

  const why = set.unverifiedReason ?? 'signature not checked'
  const hint = set.unsigned ? '' : ': pass --jwks, --verify-key or --secret to check the signature'
  return `${c.red.bold('UNVERIFIED')} ${c.red(`${why}${hint}`)}`
}

/** Render one SET: label, header, claims with readable times, subject, events, findings. */
export function renderSet(set: VerifiedSet, findings: readonly Finding[], c: ChalkInstance, context: RenderContext = {}): string {
  const lines: string[] = []
  if (context.title !== undefined) lines.push(c.bold(context.title) + (context.key === undefined ? '' : c.dim(` (sets key ${clean(context.key)})`)))
  lines.push(verificationLabel(set, c), '', c.bold('header'))
  for (const [name, value] of Object.entries(set.header)) lines.push(`  ${c.cyan(clean(name).padEnd(6))} ${valueOf(value)}`)
  lines.push('', c.bold('claims'))
  const claims = set.claims as Record<string, unknown>
  const names = [...CLAIM_ORDER.filter((n) => n in claims), ...Object.keys(claims).filter((n) => !CLAIM_ORDER.includes(n) && n !== 'events' && n !== 'sub_id')]
  for (const name of names) {
    const value = claims[name]
    lines.push(`  ${c.cyan(clean(name).padEnd(6))} ${TIME_CLAIMS.has(name) ? timeOf(value) : valueOf(value)}`)
  }

  if (claims.sub_id !== undefined) lines.push(`  ${c.cyan('sub_id'.padEnd(6))} ${clean(describeSubject(claims.sub_id))}`)
  lines.push('', c.bold('events'))
  for (const [uri, payload] of Object.entries(set.claims.events)) {
    const short = shortNameOf(uri)
    lines.push(`  ${c.magenta.bold(short ?? clean(uri))}${short === undefined ? c.dim(' (not in the catalog)') : c.dim(` ${clean(uri)}`)}`)
    const subject = (payload as Record<string, unknown>).subject
    if (subject !== undefined) lines.push(`    subject: ${clean(describeSubject(subject))}`)
    lines.push(indentJson(payload, '    '))
  }

  if (findings.length > 0) {
    lines.push('', c.bold('findings'))
    for (const finding of findings) {
      const severity = finding.severity === 'error' ? c.red.bold('error  ') : c.yellow('warning')
      lines.push(`  ${severity} ${finding.code} at ${clean(finding.where)}: ${clean(finding.message)}`)
    }
  }

  return lines.join('\n')
}
