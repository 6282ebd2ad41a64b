/**
 * Where SETs to mint or send come from, shared by `mint` and `send`:
 * - event files: a full claims object (with `events`), or `{"event", "subject", "payload"}`
 *   (optionally with `iss`, `aud`, `txn`, `toe`, `jti`), or ready-made compact tokens;
 *   a file may hold several (NDJSON or concatenated JSON), `-` is stdin;
 * - NDJSON on stdin (one such object or token per line; pretty-printed objects work too), read
 *   lazily so a pipeline can feed `send`/`stream` for hours;
 * - flags: `--event`, `--subject`, `--set key=value`, `--count N`.
 *
 * `readSetInputs` yields items one by one; `completeTemplate` adds the --iss/--aud/--txn defaults.
 */
import {Readable} from 'node:stream'

import {Flags} from '@oclif/core'

import {PushpullError} from '../lib/errors.js'
import {buildEventPayload} from '../lib/events.js'
import {DEFAULT_FILE_MAX_BYTES, readFileBounded} from '../lib/keys.js'
import type {SetTemplate} from '../lib/mint.js'
import {parseJsonSafely} from '../lib/set.js'
import {parseSubject, validateSubject} from '../lib/subject.js'
import {inputStream, readLines} from './stdin.js'

const group = 'INPUT'

export const setInputFlags = {
  count: Flags.integer({
    default: 1,
    description: 'Make N distinct SETs (distinct jti) from each template.',
    helpGroup: group,
    min: 1,
  }),
  event: Flags.string({
    description: 'Event type: a short name (caep.session-revoked, risc.account-disabled, ssf.verification) or a full URI.',
    helpGroup: group,
  }),
  set: Flags.string({
    description: 'Event payload member as key=value (repeat). Values parse as JSON when they can; dotted keys nest (reason_admin.en=Hi).',
    helpGroup: group,
    helpValue: 'KEY=VALUE',
    multiple: true,
  }),
  subject: Flags.string({
    description: 'Subject ("sub_id"): email:ana@example.com, iss_sub:ISS|SUB, opaque:ID, phone_number:+1555..., or a JSON object.',
    helpGroup: group,
  }),
}

/** A template whose `iss` may still come from --iss. */
export type PartialSetTemplate = Omit<SetTemplate, 'iss'> & {iss?: string}

export type SetInputItem =
  | {kind: 'template'; source: string; template: PartialSetTemplate}
  | {kind: 'token'; source: string; token: string}

export interface SetInputOptions {
  /** Event files; `-` means stdin. */
  files?: readonly string[]
  event?: string
  subject?: string
  assignments?: readonly string[]
  /** Copies of each template (distinct jti). Default 1. */
  count?: number
  /** Stdin stream (default the command's stdin). Read only when a file is `-`, or when no file and no --event is given. */
  stdin?: Readable
  /** Largest single JSON document or line, in bytes. Default 1 MiB. */
  maxItemBytes?: number
  /** Largest event file, read whole, in bytes (stdin is read lazily and has no total bound). Default 16 MiB. */
  maxFileBytes?: number
}

const COMPACT = /^[\w-]*\.[\w-]*\.[\w-]*(\.[\w-]*\.[\w-]*)?$/

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value)
}

function usage(message: string): PushpullError {
  return new PushpullError('ERR_USAGE', message)
}

function subjectOf(value: unknown, source: string): Record<string, unknown> {
  if (typeof value === 'string') return parseSubject(value)
  const errors = validateSubject(value, 'subject').filter((f) => f.severity === 'error')
  if (errors.length > 0) {
    throw new PushpullError('ERR_SUBJECT_INVALID', `${source}: invalid subject: ${errors.map((f) => `${f.where}: ${f.message}`).join('; ')}`)
  }

  return value as Record<string, unknown>
}

const ENVELOPE = ['iss', 'aud', 'jti', 'iat', 'txn', 'toe'] as const

function envelopeOf(value: Record<string, unknown>, source: string): Partial<SetTemplate> {
  const out: Record<string, unknown> = {}
  for (const name of ENVELOPE) {
    const member = value[name]
    if (member === undefined) continue
    const ok =
      name === 'iat' || name === 'toe'
        ? typeof member === 'number'
        : name === 'aud'
          ? typeof member === 'string' || (Array.isArray(member) && member.every((a) => typeof a === 'string'))
          : typeof member === 'string'
    if (!ok) throw usage(`${source}: "${name}" has the wrong type`)
    out[name] = member
  }

  return out as Partial<SetTemplate>
}

/** Turn one parsed input object into a template. Exported for tests and for `send`. */
export function templateFromObject(value: unknown, source: string, options: Pick<SetInputOptions, 'assignments' | 'subject'> = {}): PartialSetTemplate {
  if (!isRecord(value)) throw usage(`${source}: expected a JSON object, a claims object or a compact SET`)
  const assignments = [...(options.assignments ?? [])]
  if (value.events !== undefined) {
    if (!isRecord(value.events)) throw usage(`${source}: "events" must be a JSON object`)
    if (assignments.length > 0) throw usage(`${source}: --set applies to {"event": ...} inputs, not to full claims objects`)
    const {events, sub_id: subId, ...rest} = value
    const extra: Record<string, unknown> = {}
    for (const [name, member] of Object.entries(rest)) if (!(ENVELOPE as readonly string[]).includes(name)) extra[name] = member
    const subject = options.subject === undefined ? (subId === undefined ? undefined : subjectOf(subId, source)) : parseSubject(options.subject)
    return {
      ...envelopeOf(value, source),
      events: events as Record<string, Record<string, unknown>>,
      ...(Object.keys(extra).length > 0 ? {extra} : {}),
      ...(subject === undefined ? {} : {sub_id: subject}),
    }
  }

  if (typeof value.event !== 'string') {
    throw usage(`${source}: an input object needs "events" (a full claims object) or "event" (a short name or URI)`)
  }

  for (const name of Object.keys(value)) {
    if (!['event', 'subject', 'payload', ...ENVELOPE].includes(name)) throw usage(`${source}: unknown member "${name}" (expected event, subject, payload, ${ENVELOPE.join(', ')})`)
  }

  if (value.payload !== undefined && !isRecord(value.payload)) throw usage(`${source}: "payload" must be a JSON object`)
  const {uri, payload} = buildEventPayload(value.event, assignments, (value.payload as Record<string, unknown> | undefined) ?? {})
  const subjectInput = options.subject ?? value.subject
  return {
    ...envelopeOf(value, source),
    events: {[uri]: payload},
    ...(subjectInput === undefined ? {} : {sub_id: subjectOf(subjectInput, source)}),
  }
}

/**
 * Tracks where a JSON text spread over lines stands: bracket depth outside strings. Each line is
 * scanned once, so gathering a document is linear in its size and it is parsed once, when its
 * brackets close (was: re-parsed after every line, quadratic).
 */
class JsonBoundary {
  depth = 0
  /** A line ended inside a string (JSON strings cannot hold a raw newline) or closed more than it opened. */
  broken = false

  /** Scan one line; true when the text so far is structurally complete (time to parse it). */
  feed(line: string): boolean {
    let inString = false
    let escaped = false
    for (let i = 0; i < line.length; i++) {
      const c = line.charCodeAt(i)
      if (inString) {
        if (escaped) escaped = false
        else if (c === 0x5c) escaped = true // backslash
        else if (c === 0x22) inString = false // "
      } else if (c === 0x22) {
        inString = true
      } else if (c === 0x7b || c === 0x5b) {
        this.depth++ // { [
      } else if ((c === 0x7d || c === 0x5d) && --this.depth < 0) {
        this.broken = true // } ]
      }
    }

    if (inString) this.broken = true
    return this.depth === 0
  }
}

/**
 * Parse a stream of lines into tokens and JSON values. NDJSON is the common case; a JSON value
 * spread over several lines (a pretty-printed event file) is gathered until its brackets close,
 * then parsed once.
 */
async function* parseDocuments(lines: AsyncIterable<string>, source: string, maxItemBytes: number): AsyncGenerator<{value: unknown; where: string} | {token: string; where: string}> {
  const chunks: string[] = []
  let pendingBytes = 0
  let boundary = new JsonBoundary()
  let startLine = 0
  let line = 0
  const invalid = () => usage(`${source} line ${startLine}: not valid JSON and not a compact SET`)
  for await (const text of lines) {
    line++
    if (chunks.length === 0 && COMPACT.test(text)) {
      yield {token: text, where: `${source} line ${line}`}
      continue
    }

    if (chunks.length === 0) startLine = line
    chunks.push(text)
    pendingBytes += Buffer.byteLength(text) + 1
    if (pendingBytes > maxItemBytes) throw usage(`${source} line ${startLine}: a JSON document over ${maxItemBytes} bytes`)
    const complete = boundary.feed(text)
    if (boundary.broken) throw invalid()
    if (!complete) continue
    let value: unknown
    try {
      value = parseJsonSafely(chunks.join('\n'))
    } catch {
      // Brackets balanced outside strings and still not JSON: no later line can repair it.
      throw invalid()
    }

    chunks.length = 0
    pendingBytes = 0
    boundary = new JsonBoundary()
    const where = `${source} line ${startLine}`
    if (Array.isArray(value)) {
      for (const [index, item] of value.entries()) yield {value: item, where: `${where} item ${index + 1}`}
    } else {
      yield {value, where}
    }
  }

  if (chunks.length > 0) throw invalid()
}

async function* linesOfText(text: string): AsyncGenerator<string> {
  for (const raw of text.split(/\r?\n/)) {
    const line = raw.trim()
    if (line !== '') yield line
  }
}

/** Yield every SET input, lazily. Templates are repeated `count` times (each gets its own jti later). */
export async function* readSetInputs(options: SetInputOptions): AsyncGenerator<SetInputItem> {
  const files = options.files ?? []
  const count = options.count ?? 1
  const maxItemBytes = options.maxItemBytes ?? 1024 * 1024
  if (!Number.isInteger(count) || count < 1) throw usage('--count must be a positive integer')
  const flagOptions = {assignments: options.assignments, subject: options.subject}

  function* repeat(template: PartialSetTemplate, source: string): Generator<SetInputItem> {
    if (count > 1 && template.jti !== undefined) throw usage(`${source}: --count ${count} needs distinct jti values, but the input fixes "jti"`)
    for (let i = 0; i < count; i++) yield {kind: 'template', source, template}
  }

  if (options.event !== undefined) {
    if (files.length > 0) throw usage('give either --event or input files, not both')
    yield* repeat(templateFromObject({event: options.event}, '--event', flagOptions), '--event')
    return
  }

  const sources = files.length > 0 ? files : ['-']
  for (const file of sources) {
    const source = file === '-' ? 'stdin' : file
    let lines: AsyncIterable<string>
    if (file === '-') {
      lines = readLines(options.stdin ?? inputStream(), maxItemBytes)
    } else {
      const text = await readFileBounded(file, {
        fail: (failure, cause) =>
          new PushpullError('ERR_USAGE', `${file}: ${failure.text}${failure.reason === 'too-large' ? '; feed a longer event stream on stdin (-) instead' : ''}`, {cause}),
        maxBytes: options.maxFileBytes ?? DEFAULT_FILE_MAX_BYTES,
      })
      lines = linesOfText(text.toString('utf8'))
    }

    for await (const document of parseDocuments(lines, source, maxItemBytes)) {
      if ('token' in document) {
        yield {kind: 'token', source: document.where, token: document.token}
      } else {
        yield* repeat(templateFromObject(document.value, document.where, flagOptions), document.where)
      }
    }
  }
}

export interface TemplateDefaults {
  iss?: string
  aud?: readonly string[]
  txn?: string
}

/** Fill in --iss, --aud and --txn (a flag given on the command line wins over the input's value). */
export function completeTemplate(template: PartialSetTemplate, defaults: TemplateDefaults, source: string): SetTemplate {
  const iss = defaults.iss ?? template.iss
  if (iss === undefined || iss === '') throw usage(`${source}: no issuer; pass --iss or put "iss" in the input`)
  const aud = defaults.aud !== undefined && defaults.aud.length > 0 ? defaults.aud : template.aud
  const txn = defaults.txn ?? template.txn
  return {...template, iss, ...(aud === undefined ? {} : {aud}), ...(txn === undefined ? {} : {txn})}
}

/** Stdin as a stream from a string (tests). */
export function streamOf(text: string): Readable {
  return Readable.from([Buffer.from(text)])
}
