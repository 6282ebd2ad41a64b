/**
 * The fuzz harness shared by the suite (test/unit/fuzz-*.test.ts, fixed seed, a few hundred runs
 * per property) and the long run (scripts/fuzz-long.ts, configurable runs and seed).
 *
 * Properties are plain fast-check properties whose predicates throw (node:assert) on a violation,
 * so they run the same under vitest and under tsx. Every call into the library under test goes
 * through `outcome`/`outcomeAsync`, which enforce the three properties every parser shares:
 *   - it throws nothing but a PushpullError, and only with one of the codes the caller allows;
 *   - it returns within CALL_BUDGET_MS (a hang guard, far above normal cost, not a speed test);
 *   - afterwards no peer key has reached Object.prototype or Array.prototype (`checkNoPollution`).
 */
import {strict as assert} from 'node:assert'
import {performance} from 'node:perf_hooks'

import type * as fc from 'fast-check'

import {type ErrorCode, PushpullError} from '../../src/lib/errors.js'

/** The fixed seed of the suite. */
export const FUZZ_SEED = 424_242

/** Longest a single parser call may take before it counts as a hang. Generous on purpose. */
export const CALL_BUDGET_MS = 2000

export interface FuzzProperty {
  /** `area: what is checked`. */
  name: string
  /** Runs in the suite (the long run multiplies this). */
  runs: number
  property: fc.IRawProperty<never>
}

/** Declare a property; keeps the element types of fast-check out of the registry. */
export function fuzzProperty<Ts>(name: string, runs: number, property: fc.IRawProperty<Ts>): FuzzProperty {
  return {name, property: property as unknown as fc.IRawProperty<never>, runs}
}

export type Outcome<T> = {ok: true; value: T} | {ok: false; error: PushpullError}

const OBJECT_PROTO_KEYS = Object.getOwnPropertyNames(Object.prototype).sort().join(',')
const ARRAY_PROTO_KEYS = Object.getOwnPropertyNames(Array.prototype).sort().join(',')
const FUNCTION_PROTO_KEYS = Object.getOwnPropertyNames(Function.prototype).sort().join(',')

/** Throws when a property was added to a shared prototype (the classic `__proto__` pollution). */
export function checkNoPollution(): void {
  const probe = {} as Record<string, unknown>
  assert.equal(probe.polluted, undefined, 'Object.prototype.polluted is set')
  assert.equal(Object.getOwnPropertyNames(Object.prototype).sort().join(','), OBJECT_PROTO_KEYS, 'Object.prototype gained a property')
  assert.equal(Object.getOwnPropertyNames(Array.prototype).sort().join(','), ARRAY_PROTO_KEYS, 'Array.prototype gained a property')
  assert.equal(Object.getOwnPropertyNames(Function.prototype).sort().join(','), FUNCTION_PROTO_KEYS, 'Function.prototype gained a property')
}

/** What sanitizeText removes: peer text in a message must have gone through it. */
// eslint-disable-next-line no-control-regex
export const UNSAFE_TEXT = /[\u0000-\u0008\u000B-\u001F\u007F-\u009F\u200E\u200F\u202A-\u202E\u2066-\u2069]/

export interface OutcomeOptions {
  /**
   * The input is the operator's own (command line, event file), not peer text, so the message may
   * echo it unsanitised. Used for parseSubject and buildEventPayload (docs/hardening-audit.md, open).
   */
  operatorText?: boolean
}

function judge(what: string, error: unknown, allowed: readonly ErrorCode[], options: OutcomeOptions = {}): PushpullError {
  if (!(error instanceof PushpullError)) {
    const shown = error instanceof Error ? `${error.name}: ${error.message}` : String(error)
    assert.fail(`${what} threw something other than a PushpullError: ${shown}`)
  }

  assert.ok(allowed.includes(error.code), `${what} threw ${error.code} (${error.message}); allowed: ${allowed.join(', ')}`)
  assert.equal(typeof error.message, 'string')
  assert.ok(error.message.length > 0, `${what} threw ${error.code} with an empty message`)
  assert.ok(options.operatorText === true || !UNSAFE_TEXT.test(error.message), `${what} threw a message with terminal control or bidi characters: ${JSON.stringify(error.message)}`)
  return error
}

function checkTime(what: string, started: number): void {
  const ms = performance.now() - started
  assert.ok(ms <= CALL_BUDGET_MS, `${what} took ${ms.toFixed(0)} ms (budget ${CALL_BUDGET_MS} ms)`)
}

/** Run `fn`; a result or an allowed PushpullError is returned, anything else fails the property. */
export function outcome<T>(what: string, allowed: readonly ErrorCode[], fn: () => T, options: OutcomeOptions = {}): Outcome<T> {
  const started = performance.now()
  let result: Outcome<T>
  try {
    result = {ok: true, value: fn()}
  } catch (error) {
    result = {error: judge(what, error, allowed, options), ok: false}
  }

  checkTime(what, started)
  checkNoPollution()
  return result
}

/** `outcome` for async calls. */
export async function outcomeAsync<T>(what: string, allowed: readonly ErrorCode[], fn: () => Promise<T>): Promise<Outcome<T>> {
  const started = performance.now()
  let result: Outcome<T>
  try {
    result = {ok: true, value: await fn()}
  } catch (error) {
    result = {error: judge(what, error, allowed), ok: false}
  }

  checkTime(what, started)
  checkNoPollution()
  return result
}

/** Run `fn` that must not throw at all (validators that return findings). */
export function total<T>(what: string, fn: () => T): T {
  const result = outcome(what, [], fn)
  assert.ok(result.ok)
  return result.value
}

/** Nesting depth of a parsed JSON value (a scalar is 0, `{}` and `[]` are 1). */
export function depthOf(value: unknown): number {
  if (typeof value !== 'object' || value === null) return 0
  const children = Array.isArray(value) ? value : Object.keys(value).map((key) => (value as Record<string, unknown>)[key])
  let deepest = 0
  for (const child of children) deepest = Math.max(deepest, depthOf(child))
  return deepest + 1
}
