/**
 * Shape checks for the JSON members shared by RFC 8936 poll requests and pushpull Communication
 * Objects: `ack` (array of jti strings), `setErrs` ({jti: {err, description}}), `sets` ({jti: SET}).
 * Each returns the parsed value or a description of what is wrong.
 */
import type {SetErr} from './http-util.js'
import {isPlainObject} from './set-token.js'

export type Checked<T> = {ok: true; value: T} | {ok: false; description: string}

export function checkAck(value: unknown): Checked<string[]> {
  if (value === undefined) return {ok: true, value: []}
  if (!Array.isArray(value) || !value.every((v) => typeof v === 'string')) return {description: '"ack" must be an array of jti strings.', ok: false}
  return {ok: true, value: value as string[]}
}

export function checkSetErrs(value: unknown): Checked<Record<string, SetErr>> {
  const out = Object.create(null) as Record<string, SetErr>
  if (value === undefined) return {ok: true, value: out}
  if (!isPlainObject(value)) return {description: '"setErrs" must be an object keyed by jti.', ok: false}
  for (const [jti, entry] of Object.entries(value)) {
    if (!isPlainObject(entry)) return {description: `"setErrs" entry for ${JSON.stringify(jti)} must be an object.`, ok: false}
    out[jti] = {
      description: typeof entry.description === 'string' ? entry.description : '',
      err: typeof entry.err === 'string' ? entry.err : '',
    }
  }

  return {ok: true, value: out}
}

/** `sets` as an object; values are checked per SET by the caller (a non-string is a setErr). */
export function checkSets(value: unknown): Checked<Record<string, unknown>> {
  if (value === undefined) return {ok: true, value: Object.create(null) as Record<string, unknown>}
  if (!isPlainObject(value)) return {description: '"sets" must be an object keyed by jti.', ok: false}
  return {ok: true, value}
}

export function checkNonNegativeInteger(value: unknown, name: string): Checked<number | undefined> {
  if (value === undefined) return {ok: true, value: undefined}
  if (typeof value !== 'number' || !Number.isInteger(value) || value < 0) return {description: `"${name}" must be a non-negative integer.`, ok: false}
  return {ok: true, value}
}
