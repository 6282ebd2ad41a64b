import type {ErrorCode} from '../lib/errors.js'

/** The process exit codes pushpull documents (README, "Exit codes"). */
export const ExitCode = {
  OK: 0,
  BUG: 1,
  USAGE: 2,
  CONFIG: 3,
  TRANSPORT: 4,
  PEER: 5,
  SET_INVALID: 6,
  INTERRUPTED: 130,
} as const

export type ExitCodeValue = (typeof ExitCode)[keyof typeof ExitCode]

/** The one table from library error codes to exit codes. `Record` keeps it total. */
export const EXIT_CODE_OF: Readonly<Record<ErrorCode, ExitCodeValue>> = {
  ERR_USAGE: ExitCode.USAGE,
  ERR_CONFIG: ExitCode.CONFIG,
  ERR_KEY_INVALID: ExitCode.CONFIG,
  ERR_CREDENTIALS: ExitCode.CONFIG,
  ERR_STATE_CORRUPT: ExitCode.CONFIG,
  ERR_STATE_LOCKED: ExitCode.CONFIG,
  ERR_STATE_IO: ExitCode.CONFIG,

  ERR_CONNECT: ExitCode.TRANSPORT,
  ERR_TIMEOUT: ExitCode.TRANSPORT,
  ERR_TLS: ExitCode.TRANSPORT,
  ERR_RESPONSE_TOO_LARGE: ExitCode.TRANSPORT,
  ERR_WS_HANDSHAKE: ExitCode.TRANSPORT,
  ERR_WS_CLOSED: ExitCode.TRANSPORT,
  ERR_JWKS_FETCH: ExitCode.TRANSPORT,

  ERR_PEER_STATUS: ExitCode.PEER,
  ERR_PEER_REJECTED: ExitCode.PEER,
  ERR_PEER_PROTOCOL: ExitCode.PEER,
  ERR_MESSAGE_INVALID: ExitCode.PEER,
  ERR_LIMIT_EXCEEDED: ExitCode.PEER,
  ERR_RETRIES_EXHAUSTED: ExitCode.PEER,

  ERR_SET_MALFORMED: ExitCode.SET_INVALID,
  ERR_SET_TOO_LARGE: ExitCode.SET_INVALID,
  ERR_SET_ENCRYPTED: ExitCode.SET_INVALID,
  ERR_SET_UNSIGNED: ExitCode.SET_INVALID,
  ERR_SET_ALG_NOT_ALLOWED: ExitCode.SET_INVALID,
  ERR_SET_KID_UNKNOWN: ExitCode.SET_INVALID,
  ERR_SET_SIGNATURE: ExitCode.SET_INVALID,
  ERR_SET_TYP: ExitCode.SET_INVALID,
  ERR_SET_CRIT: ExitCode.SET_INVALID,
  ERR_SET_CLAIMS: ExitCode.SET_INVALID,
  ERR_SET_ISSUER: ExitCode.SET_INVALID,
  ERR_SET_AUDIENCE: ExitCode.SET_INVALID,
  ERR_SET_EXPIRED: ExitCode.SET_INVALID,
  ERR_SET_NOT_YET_VALID: ExitCode.SET_INVALID,
  ERR_SET_CONFLICT: ExitCode.SET_INVALID,
  ERR_SET_LINT: ExitCode.SET_INVALID,
  ERR_EVENT_INVALID: ExitCode.USAGE,
  ERR_SUBJECT_INVALID: ExitCode.USAGE,

  ERR_ABORTED: ExitCode.INTERRUPTED,
  ERR_INTERNAL: ExitCode.BUG,
}
