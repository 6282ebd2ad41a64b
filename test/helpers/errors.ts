/** Capture the PushpullError a call throws or a promise rejects with, so tests can assert its code and message. */
import {isPushpullError, type PushpullError} from '../../src/lib/errors.js'

export function failure(fn: () => unknown): PushpullError {
  try {
    fn()
  } catch (error) {
    if (isPushpullError(error)) return error
    throw error
  }

  throw new Error('expected a PushpullError, nothing was thrown')
}

export async function rejection(promise: Promise<unknown>): Promise<PushpullError> {
  try {
    await promise
  } catch (error) {
    if (isPushpullError(error)) return error
    throw error
  }

  throw new Error('expected a rejection with a PushpullError')
}
