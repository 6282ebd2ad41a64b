import {Chalk, type ChalkInstance} from 'chalk'

/**
 * Colour only on a TTY, never with NO_COLOR or --no-color. One instance per stream, because
 * stdout may be piped while stderr is a terminal.
 */
export function colorEnabled(stream: NodeJS.WriteStream, noColorFlag = false): boolean {
  if (noColorFlag) return false
  if (process.env.NO_COLOR !== undefined && process.env.NO_COLOR !== '') return false
  if (process.env.FORCE_COLOR !== undefined && process.env.FORCE_COLOR !== '0') return true
  return Boolean(stream.isTTY)
}

export interface Theme {
  readonly out: ChalkInstance
  readonly err: ChalkInstance
}

export function createTheme(noColorFlag = false): Theme {
  return {
    out: new Chalk({level: colorEnabled(process.stdout, noColorFlag) ? 1 : 0}),
    err: new Chalk({level: colorEnabled(process.stderr, noColorFlag) ? 1 : 0}),
  }
}

export {sanitizeText as sanitizeForTerminal} from '../lib/text.js'
