/**
 * Bounded JSON parsing for peer input.
 *
 * Order of checks: size (bytes, before anything is decoded), UTF-8 validity, nesting depth (a
 * linear scan of the text that never recurses, so a 1 MiB run of `[` costs one pass and no stack),
 * then `JSON.parse`. `JSON.parse` turns a `"__proto__"` key into an ordinary own property, so the
 * result never changes a prototype by itself; code that copies peer objects must still not use
 * `Object.assign` or spread onto plain objects. The Communication Object parsers copy peer maps
 * into `Map`s for that reason.
 */
import {PushpullError, type ErrorCode} from './errors.js'
import {sanitizeText} from './text.js'

export const DEFAULT_MAX_DEPTH = 32

export interface JsonBounds {
  /** Largest accepted input in bytes (UTF-8). Required: there is no safe universal default. */
  maxBytes: number
  /** Deepest accepted nesting of arrays and objects; the top-level value is depth 1. Default 32. */
  maxDepth?: number
}

/** Error codes and details the caller wants for each failure class (request vs response parsing). */
export interface JsonErrorProfile {
  invalid: ErrorCode
  invalidDetails?: Readonly<Record<string, unknown>>
  tooLarge: ErrorCode
  tooLargeDetails?: Readonly<Record<string, unknown>>
}

const DEFAULT_PROFILE: JsonErrorProfile = {invalid: 'ERR_MESSAGE_INVALID', tooLarge: 'ERR_LIMIT_EXCEEDED'}

const decoder = new TextDecoder('utf-8', {fatal: true})

/** Byte length of `input` as UTF-8. */
export function byteLengthOf(input: string | Uint8Array): number {
  return typeof input === 'string' ? Buffer.byteLength(input, 'utf8') : input.byteLength
}

/**
 * Parse `input` as JSON within `bounds`.
 * Throws ERR_LIMIT_EXCEEDED over `maxBytes`, ERR_MESSAGE_INVALID for invalid UTF-8, nesting deeper
 * than `maxDepth`, or text that is not JSON (codes can be changed with `profile`).
 */
export function parseJsonBounded(input: string | Uint8Array, bounds: JsonBounds, profile: JsonErrorProfile = DEFAULT_PROFILE): unknown {
  const maxDepth = bounds.maxDepth ?? DEFAULT_MAX_DEPTH
  checkLimit('maxBytes', bounds.maxBytes)
  checkLimit('maxDepth', maxDepth)
  const size = byteLengthOf(input)
  if (size > bounds.maxBytes) {
    throw new PushpullError(profile.tooLarge, `JSON body is ${size} bytes, over the ${bounds.maxBytes}-byte limit`, {
      details: {...profile.tooLargeDetails, size, limit: bounds.maxBytes},
    })
  }

  let text: string
  if (typeof input === 'string') {
    text = input
  } else {
    try {
      text = decoder.decode(input)
    } catch (error) {
      throw new PushpullError(profile.invalid, 'JSON body is not valid UTF-8', {cause: error, details: {...profile.invalidDetails}})
    }
  }

  const depth = fewBrackets(text, maxDepth) ? 0 : maxNestingDepth(text, maxDepth)
  if (depth > maxDepth) {
    throw new PushpullError(profile.invalid, `JSON nesting is deeper than the limit of ${maxDepth}`, {
      details: {...profile.invalidDetails, limit: maxDepth},
    })
  }

  try {
    return JSON.parse(text) as unknown
  } catch (error) {
    const reason = error instanceof Error ? error.message : String(error)
    // V8 quotes the text around the error, which is peer text: strip control characters.
    throw new PushpullError(profile.invalid, `body is not valid JSON: ${sanitizeText(reason, 200)}`, {cause: error, details: {...profile.invalidDetails}})
  }
}

/**
 * True when `text` holds at most `limit` opening brackets in all (inside strings or not), so it
 * cannot nest deeper than `limit`. Counted with `indexOf`, which is much cheaper than the
 * character scan of `maxNestingDepth`: a Communication Object of compact SETs has three or four.
 */
function fewBrackets(text: string, limit: number): boolean {
  let count = 0
  for (let at = text.indexOf('{'); at >= 0; at = text.indexOf('{', at + 1)) if (++count > limit) return false
  for (let at = text.indexOf('['); at >= 0; at = text.indexOf('[', at + 1)) if (++count > limit) return false
  return true
}

/**
 * The deepest nesting of `[`/`{` outside strings, scanning once; stops early (returning a value
 * over `stopAbove`) as soon as the limit is crossed. Malformed text is left for JSON.parse.
 */
export function maxNestingDepth(text: string, stopAbove = Number.POSITIVE_INFINITY): number {
  let depth = 0
  let deepest = 0
  let inString = false
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i)
    if (inString) {
      if (c === 0x5c) i++ // backslash: skip the escaped character
      else if (c === 0x22) inString = false
      continue
    }

    if (c === 0x22) {
      inString = true
    } else if (c === 0x5b || c === 0x7b) {
      depth++
      if (depth > deepest) {
        deepest = depth
        if (deepest > stopAbove) return deepest
      }
    } else if (c === 0x5d || c === 0x7d) {
      depth--
    }
  }

  return deepest
}

/** True for a JSON object (not null, not an array). */
export function isJsonObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value)
}

/** Own enumerable entries of a parsed JSON object, safe for any key including `__proto__`. */
export function jsonEntries(value: Record<string, unknown>): Array<[string, unknown]> {
  return Object.keys(value).map((key) => [key, value[key]])
}

/** Own-property read that never walks the prototype chain. */
export function ownMember(value: Record<string, unknown>, key: string): unknown {
  return Object.hasOwn(value, key) ? value[key] : undefined
}

function checkLimit(name: string, value: number): void {
  if (!Number.isSafeInteger(value) || value < 1) {
    throw new PushpullError('ERR_CONFIG', `${name} must be a positive integer, got ${String(value)}`)
  }
}
