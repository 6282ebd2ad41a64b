/**
 * The client transport flags every command that talks HTTP shares (`send`, `poll`, `ack`,
 * `listen --forward-to` ...), and the one function that turns them into HttpClient options.
 *
 *   static override flags = {...transportFlags, ...}
 *   const options = await httpClientOptionsFrom(this.flags, {userAgent: `pushpull/${this.config.version}`, warn: (m) => this.warnLoud(m)})
 *   const client = createHttpClient(options)   // close() it in finally
 *
 * Token values are never echoed: not in errors, warnings, --json output or --dry-run output.
 */
import {stat} from 'node:fs/promises'

import {Flags} from '@oclif/core'

import {PushpullError} from '../lib/errors.js'
import {DEFAULT_FILE_MAX_BYTES, readFileBounded} from '../lib/keys.js'
import {
  DEFAULT_BODY_TIMEOUT_MS,
  DEFAULT_CONNECT_TIMEOUT_MS,
  DEFAULT_HEADERS_TIMEOUT_MS,
  DEFAULT_MAX_RESPONSE_BYTES,
  type HttpClientOptions,
} from '../lib/transport/http.js'

const HELP_GROUP = 'TRANSPORT'
const DURATION = /^(\d+(?:\.\d+)?)\s*(ms|s|m)?$/i
/** Longest duration a timeout flag accepts: one day. */
const MAX_DURATION_MS = 86_400_000

/**
 * Parse a duration: `500ms`, `10s`, `1.5s`, `2m`, or a bare number of seconds (as curl does).
 * Returns whole milliseconds, at least 1.
 */
export function parseDuration(input: string, flag: string): number {
  const match = DURATION.exec(input.trim())
  if (match === null) {
    throw new PushpullError('ERR_USAGE', `--${flag} must be a duration such as 500ms, 10s or 2m (a bare number means seconds), got ${JSON.stringify(input)}`)
  }

  const amount = Number(match[1])
  const unit = (match[2] ?? 's').toLowerCase()
  const ms = Math.round(amount * (unit === 'ms' ? 1 : unit === 's' ? 1000 : 60_000))
  if (ms < 1 || ms > MAX_DURATION_MS) {
    throw new PushpullError('ERR_USAGE', `--${flag} must be between 1ms and 24h, got ${JSON.stringify(input)}`)
  }

  return ms
}

/** Parse a byte size: `1048576`, `512k`, `4MiB`, `1m` (k/m/g are powers of 1024). */
export function parseByteSize(input: string, flag: string): number {
  const match = /^(\d+)\s*(b|k|kb|kib|m|mb|mib|g|gb|gib)?$/i.exec(input.trim())
  const unit = (match?.[2] ?? 'b').toLowerCase()[0] ?? 'b'
  const factor = {b: 1, g: 1024 ** 3, k: 1024, m: 1024 ** 2}[unit as 'b' | 'g' | 'k' | 'm']
  const bytes = match === null ? Number.NaN : Number(match[1]) * factor
  if (!Number.isSafeInteger(bytes) || bytes < 1) {
    throw new PushpullError('ERR_USAGE', `--${flag} must be a positive size such as 1048576, 512KiB or 4MiB, got ${JSON.stringify(input)}`)
  }

  return bytes
}

const durationFlag = Flags.custom<number>({
  async parse(input, _context, options) {
    return parseDuration(input, options.name)
  },
})

const byteSizeFlag = Flags.custom<number>({
  async parse(input, _context, options) {
    return parseByteSize(input, options.name)
  },
})

export const transportFlags = {
  cacert: Flags.string({
    description: 'PEM file of extra CA certificates to trust for https:// peers (added to the default CAs; read once).',
    helpGroup: HELP_GROUP,
  }),
  'connect-timeout': durationFlag({
    description: `Give up connecting (TCP and TLS handshake) after this long: 500ms, 10s, 2m; a bare number is seconds. [default: ${DEFAULT_CONNECT_TIMEOUT_MS / 1000}s]`,
    helpGroup: HELP_GROUP,
  }),
  header: Flags.string({
    description: "Extra request header 'Name: value' (repeatable). Authorization is refused here: use --token.",
    helpGroup: HELP_GROUP,
    multiple: true,
  }),
  insecure: Flags.boolean({
    default: false,
    description: 'Do not verify the peer TLS certificate (testing only; a warning is printed on every run).',
    helpGroup: HELP_GROUP,
  }),
  'max-response-bytes': byteSizeFlag({
    description: `Largest response body read (1048576, 512KiB, 4MiB); more fails with ERR_RESPONSE_TOO_LARGE. [default: ${DEFAULT_MAX_RESPONSE_BYTES} (1 MiB)]`,
    helpGroup: HELP_GROUP,
  }),
  timeout: durationFlag({
    description: `Wait this long for the response headers, and at most this long between response body chunks. [default: ${DEFAULT_HEADERS_TIMEOUT_MS / 1000}s for headers, ${DEFAULT_BODY_TIMEOUT_MS / 1000}s for the body]`,
    helpGroup: HELP_GROUP,
  }),
  token: Flags.string({
    description: 'Bearer token sent as "Authorization: Bearer ..." (prefer --token-file or PUSHPULL_TOKEN: command lines are visible to other users).',
    env: 'PUSHPULL_TOKEN',
    exclusive: ['token-file'],
    helpGroup: HELP_GROUP,
  }),
  'token-file': Flags.string({
    description: 'Read the bearer token from this file (first line; warns when others can read the file).',
    exclusive: ['token'],
    helpGroup: HELP_GROUP,
  }),
}

export interface TransportFlagValues {
  cacert?: string
  'connect-timeout'?: number
  header?: string[]
  insecure?: boolean
  'max-response-bytes'?: number
  timeout?: number
  token?: string
  'token-file'?: string
}

export interface TransportContext {
  /** Loud warning on stderr (BaseCommand.warnLoud). */
  warn: (message: string) => void
  /** `pushpull/<version>`. */
  userAgent?: string
}

/** Parse repeated `--header 'Name: value'` flags. */
export function parseHeaderFlags(values: readonly string[] = []): Record<string, string> {
  const headers = Object.create(null) as Record<string, string>
  for (const value of values) {
    const colon = value.indexOf(':')
    const name = colon === -1 ? '' : value.slice(0, colon).trim()
    if (name === '' || !/^[!#$%&'*+\-.^\w`|~]+$/.test(name)) {
      throw new PushpullError('ERR_USAGE', `--header must look like 'Name: value', got ${JSON.stringify(value.slice(0, 60))}`)
    }

    if (name.toLowerCase() === 'authorization') {
      // Do not echo the value: it is probably a credential.
      throw new PushpullError('ERR_USAGE', '--header cannot set Authorization; use --token or --token-file (or PUSHPULL_TOKEN)')
    }

    headers[name] = value.slice(colon + 1).trim()
  }

  return headers
}

/**
 * Warn when group or others can read a file holding a secret (token file, private key, TLS key).
 * Says nothing when the file cannot be examined: reading it reports that.
 */
export async function warnIfOthersCanRead(path: string, what: string, warn: (message: string) => void): Promise<void> {
  if (process.platform === 'win32') return
  try {
    const info = await stat(path)
    if (info.isFile() && (info.mode & 0o077) !== 0) {
      warn(`the ${what} ${path} is readable by other users (mode ${(info.mode & 0o777).toString(8)}); run: chmod 600 ${path}`)
    }
  } catch {
    // The read that follows names the problem.
  }
}

/** Largest token file read (--token-file, --push-token-file; listen's holds one token a line): 1 MiB. */
export const DEFAULT_TOKEN_FILE_MAX_BYTES = 1024 * 1024
/** Largest TLS file read (--cacert, --tls-cert, --tls-key): 16 MiB (a system CA bundle is about 0.2 MiB). */
export const DEFAULT_TLS_FILE_MAX_BYTES = DEFAULT_FILE_MAX_BYTES

/**
 * Read a file a flag names, whole but at most `maxBytes` (a FIFO works; `/dev/zero` or a huge file
 * is refused). Errors name the flag, the file and the limit, never the content:
 * "cannot read --tls-key PATH: ENOENT", "--tls-key PATH is larger than 16777216 bytes".
 */
export async function readFlagFile(
  path: string,
  flag: string,
  options: {code?: 'ERR_CONFIG' | 'ERR_USAGE'; maxBytes?: number} = {},
): Promise<Buffer> {
  const code = options.code ?? 'ERR_USAGE'
  return readFileBounded(path, {
    fail(failure, cause) {
      if (failure.reason === 'too-large') return new PushpullError(code, `${flag} ${path} ${failure.text}`)
      return new PushpullError(code, `cannot read ${flag} ${path}: ${(cause as NodeJS.ErrnoException | undefined)?.code ?? failure.text}`, {cause})
    },
    maxBytes: options.maxBytes ?? DEFAULT_TLS_FILE_MAX_BYTES,
  })
}

/** Read a --cacert file (bounded) and check that it holds a PEM certificate. ERR_CONFIG otherwise. */
export async function readCaFile(path: string, maxBytes = DEFAULT_TLS_FILE_MAX_BYTES): Promise<string> {
  const text = (await readFlagFile(path, '--cacert', {code: 'ERR_CONFIG', maxBytes})).toString('utf8')
  if (!text.includes('-----BEGIN CERTIFICATE-----')) throw new PushpullError('ERR_CONFIG', `the CA file ${path} holds no PEM certificate`)
  return text
}

/** Read a token file: first line, trimmed; warn when group or others can read it. */
export async function readTokenFile(path: string, warn: (message: string) => void): Promise<string> {
  let text: string
  try {
    const info = await stat(path)
    if (!info.isFile()) throw new PushpullError('ERR_USAGE', `--token-file ${path} is not a regular file`)
    if (process.platform !== 'win32' && (info.mode & 0o077) !== 0) {
      warn(`the token file ${path} is readable by other users (mode ${(info.mode & 0o777).toString(8)}); run: chmod 600 ${path}`)
    }

    text = (await readFlagFile(path, '--token-file', {maxBytes: DEFAULT_TOKEN_FILE_MAX_BYTES})).toString('utf8')
  } catch (error) {
    if (error instanceof PushpullError) throw error
    throw new PushpullError('ERR_USAGE', `cannot read --token-file ${path}: ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}`, {cause: error})
  }

  const token = (text.split(/\r?\n/, 1)[0] ?? '').trim()
  if (token === '') throw new PushpullError('ERR_USAGE', `--token-file ${path} is empty`)
  return token
}

/**
 * Turn the transport flags into HttpClient options. Warns (every run) for --insecure and for a
 * token file others can read. Throws ERR_USAGE for malformed values, never echoing a token.
 */
export async function httpClientOptionsFrom(flags: TransportFlagValues, context: TransportContext): Promise<HttpClientOptions> {
  const options: HttpClientOptions = {headers: parseHeaderFlags(flags.header)}
  if (flags['token-file'] !== undefined) {
    options.token = await readTokenFile(flags['token-file'], context.warn)
  } else if (flags.token !== undefined) {
    const token = flags.token.trim()
    if (token === '') throw new PushpullError('ERR_USAGE', '--token (or PUSHPULL_TOKEN) is empty')
    options.token = token
  }

  if (options.token !== undefined && !/^[\u0021-\u007E]+$/.test(options.token)) {
    throw new PushpullError('ERR_USAGE', 'the bearer token contains spaces, control or non-ASCII characters')
  }

  if (flags.cacert !== undefined) {
    // Read here, bounded and once; the client and the WebSocket deliverer use `ca` before `caFile`.
    options.caFile = flags.cacert
    options.ca = await readCaFile(flags.cacert)
  }
  if (flags.insecure === true) {
    options.insecure = true
    context.warn('--insecure: TLS certificates are NOT verified; anyone on the path can read and change this traffic, bearer token included')
  }

  if (flags['connect-timeout'] !== undefined) options.connectTimeoutMs = flags['connect-timeout']
  if (flags.timeout !== undefined) {
    options.headersTimeoutMs = flags.timeout
    options.bodyTimeoutMs = flags.timeout
  }

  if (flags['max-response-bytes'] !== undefined) options.maxResponseBytes = flags['max-response-bytes']
  if (context.userAgent !== undefined) options.userAgent = context.userAgent
  return options
}
