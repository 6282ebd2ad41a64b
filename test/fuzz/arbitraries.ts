/**
 * Arbitraries for fuzzing peer input. JSON is generated as TEXT from entry lists, so objects can
 * carry keys a JS object literal cannot (`__proto__`), duplicate keys, and keys that name members
 * of Object.prototype. `nearValid*` arbitraries start from a valid structure and change one thing,
 * so properties reach the deep code paths and not only the first "not JSON" check.
 */
import * as fc from 'fast-check'

/** Keys a hostile peer would try, plus the member names our parsers look for. */
export const HOSTILE_KEYS = ['__proto__', 'constructor', 'prototype', 'toString', 'hasOwnProperty', 'valueOf', 'polluted', '__defineGetter__'] as const

export const MEMBER_KEYS = [
  'sets', 'ack', 'acks', 'setErrs', 'err', 'description', 'maxResponseEvents', 'maxEvents', 'returnImmediately',
  'moreAvailable', 'format', 'events', 'jti', 'iss', 'iat', 'aud', 'sub_id', 'typ', 'alg', 'crit', 'kid', 'id', 'email',
] as const

/** Strings as a peer may send them: any UTF-16 (lone surrogates, controls, bidi) or plain ASCII. */
export const peerString = (maxLength = 24): fc.Arbitrary<string> =>
  fc.oneof(
    fc.string({maxLength, unit: 'binary'}),
    fc.string({maxLength}),
    fc.constantFrom('', ' ', '\u001b[31mred', '\u202Eevil', 'a.b.c', '{', '[', '"', '\\', '\uD800'),
  )

export const peerKey: fc.Arbitrary<string> = fc.oneof(
  {arbitrary: fc.constantFrom(...HOSTILE_KEYS), weight: 2},
  {arbitrary: fc.constantFrom(...MEMBER_KEYS), weight: 2},
  {arbitrary: peerString(12), weight: 3},
)

/** A JSON scalar as text, including numbers our integer checks must refuse. */
export const jsonScalarText: fc.Arbitrary<string> = fc.oneof(
  fc.constantFrom('null', 'true', 'false', '0', '-1', '1.5', '1e400', '-0', '9007199254740993', '1e2', '""'),
  fc.integer().map(String),
  fc.double({noDefaultInfinity: true, noNaN: true}).map((n) => JSON.stringify(n)),
  peerString().map((s) => JSON.stringify(s)),
)

/** Serialise entries as a JSON object text (keys kept verbatim, duplicates allowed). */
export function objectText(entries: ReadonlyArray<readonly [string, string]>): string {
  return `{${entries.map(([key, value]) => `${JSON.stringify(key)}:${value}`).join(',')}}`
}

export function arrayText(items: readonly string[]): string {
  return `[${items.join(',')}]`
}

/** Any JSON value as text, with hostile keys, bounded in size. */
export const hostileJsonText: fc.Arbitrary<string> = fc.letrec<{value: string; object: string; array: string}>((tie) => ({
  array: fc.array(tie('value'), {maxLength: 4}).map(arrayText),
  object: fc.array(fc.tuple(peerKey, tie('value')), {maxLength: 4}).map(objectText),
  value: fc.oneof({depthSize: 'small', maxDepth: 5}, jsonScalarText, tie('object'), tie('array')),
})).value

/** `{"__proto__": {"polluted": true}}`-style payloads to drop anywhere a value goes. */
export const pollutionText: fc.Arbitrary<string> = fc.constantFrom(
  '{"__proto__":{"polluted":true}}',
  '{"constructor":{"prototype":{"polluted":true}}}',
  '{"__proto__":{"__proto__":{"polluted":true}}}',
  '[{"__proto__":{"polluted":true}}]',
)

/** Nesting right around a limit: `[[[...]]]` or `{"a":{"a":...}}` of the given depth. */
export function nestedText(depth: number, kind: 'array' | 'object', inner = '1'): string {
  return kind === 'array' ? `${'['.repeat(depth)}${inner}${']'.repeat(depth)}` : `${'{"a":'.repeat(depth)}${inner}${'}'.repeat(depth)}`
}

export const deepJsonText = (around: number): fc.Arbitrary<string> =>
  fc.tuple(fc.integer({max: around + 3, min: Math.max(0, around - 3)}), fc.constantFrom('array' as const, 'object' as const)).map(([depth, kind]) => nestedText(depth, kind))

/** Text mutations that usually break JSON or a token (and sometimes keep it valid). */
export const textMutation: fc.Arbitrary<(text: string) => string> = fc.oneof(
  fc.nat().map((at) => (text: string) => text.slice(0, text.length === 0 ? 0 : at % text.length)), // truncate
  fc.tuple(fc.nat(), fc.constantFrom('"', '{', '}', '[', ']', ',', ':', '\\', '\u0000', '.', ' ', '\n', 'x', '\uFEFF', '\uD800')).map(
    ([at, char]) =>
      (text: string) => {
        const i = text.length === 0 ? 0 : at % (text.length + 1)
        return `${text.slice(0, i)}${char}${text.slice(i)}`
      },
  ), // insert
  fc.nat().map((at) => (text: string) => {
    if (text.length === 0) return text
    const i = at % text.length
    return `${text.slice(0, i)}${text.slice(i + 1)}`
  }), // delete
  fc.constant((text: string) => `\uFEFF${text}`), // byte order mark
  fc.constant((text: string) => `${text}${text}`), // doubled
  fc.constant((text: string) => ` \n\t${text}\r\n `), // whitespace around
)

/** A compact-token-like string: mostly base64url and dots. */
export const tokenLikeString: fc.Arbitrary<string> = fc.oneof(
  fc.string({maxLength: 80, unit: fc.constantFrom(...'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.'.split(''))}),
  fc.array(fc.base64String({maxLength: 40}), {maxLength: 6}).map((parts) => parts.join('.')),
  peerString(80),
)

/** A jti as generated by peers: UUID-ish, or any string (including hostile keys). */
export const jtiArb: fc.Arbitrary<string> = fc.oneof(fc.uuid(), fc.constantFrom(...HOSTILE_KEYS), fc.string({maxLength: 16, minLength: 1}))

/** Bytes as a WebSocket binary frame may carry them (often invalid UTF-8). */
export const frameBytes: fc.Arbitrary<Uint8Array> = fc.oneof(
  fc.uint8Array({maxLength: 64}),
  hostileJsonText.map((text) => new TextEncoder().encode(text)),
  fc.tuple(hostileJsonText, fc.uint8Array({maxLength: 3, minLength: 1})).map(([text, junk]) => {
    const bytes = new TextEncoder().encode(text)
    const out = new Uint8Array(bytes.length + junk.length)
    out.set(bytes)
    out.set(junk, bytes.length)
    return out
  }),
)
