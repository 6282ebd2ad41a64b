import {PushpullError} from '../lib/errors.js'

/** Prompts only when stdin and stderr are TTYs and --json is off. */
export function canPrompt(jsonEnabled: boolean): boolean {
  return !jsonEnabled && Boolean(process.stdin.isTTY) && Boolean(process.stderr.isTTY)
}

/** Fail with a message naming the non-interactive flag when a prompt cannot be shown. */
export function assertCanPrompt(jsonEnabled: boolean, what: string, alternative: string): void {
  if (canPrompt(jsonEnabled)) return
  const why = jsonEnabled ? '--json is on' : 'stdin and stderr must both be terminals'
  throw new PushpullError('ERR_USAGE', `${what} needs an interactive terminal (${why}); use ${alternative} instead`)
}
