import {createInterface} from 'node:readline'
import type {Readable} from 'node:stream'

import {PushpullError} from '../lib/errors.js'

export const DEFAULT_STDIN_LIMIT = 16 * 1024 * 1024

let inputOverride: Readable | undefined

/** The stream commands read as standard input. Tests substitute it with `setInputStream`. */
export function inputStream(): Readable {
  return inputOverride ?? process.stdin
}

/** For in-process command tests only: feed a command's stdin. `undefined` restores process.stdin. */
export function setInputStream(stream: Readable | undefined): void {
  inputOverride = stream
}

/** True when stdin is a terminal (and so holds no piped input). */
export function stdinIsTty(): boolean {
  return inputOverride === undefined && Boolean(process.stdin.isTTY)
}

/** Read all of stdin (or another stream) as UTF-8, refusing more than `maxBytes`. */
export async function readAllText(stream: Readable = inputStream(), maxBytes = DEFAULT_STDIN_LIMIT): Promise<string> {
  const chunks: Buffer[] = []
  let size = 0
  for await (const chunk of stream) {
    const buffer = typeof chunk === 'string' ? Buffer.from(chunk) : (chunk as Buffer)
    size += buffer.length
    if (size > maxBytes) {
      stream.destroy()
      throw new PushpullError('ERR_LIMIT_EXCEEDED', `standard input is larger than ${maxBytes} bytes`, {
        details: {limit: maxBytes},
      })
    }

    chunks.push(buffer)
  }

  return Buffer.concat(chunks).toString('utf8')
}

/**
 * Lines of a stream as they arrive (a pipeline can feed a session for hours). Blank lines are
 * skipped; a line longer than `maxLineBytes` is an error naming its number.
 */
export async function* readLines(stream: Readable = inputStream(), maxLineBytes = 1024 * 1024): AsyncGenerator<string> {
  const rl = createInterface({crlfDelay: Number.POSITIVE_INFINITY, input: stream})
  let number = 0
  try {
    for await (const line of rl) {
      number++
      if (Buffer.byteLength(line) > maxLineBytes) {
        throw new PushpullError('ERR_LIMIT_EXCEEDED', `input line ${number} is longer than ${maxLineBytes} bytes`)
      }

      const trimmed = line.trim()
      if (trimmed !== '') yield trimmed
    }
  } finally {
    rl.close()
  }
}
