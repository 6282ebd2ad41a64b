/**
 * The shared verification flags (decode, poll, listen, stream) and the verifier they build.
 * Spread `verifyFlags` into a command's flags and call `buildVerifier(this.flags)`.
 */
import {Flags} from '@oclif/core'
import type {Dispatcher} from 'undici'

import {PushpullError} from '../lib/errors.js'
import {
  DEFAULT_JWKS_COOLDOWN_MS,
  DEFAULT_JWKS_MAX_BYTES,
  DEFAULT_JWKS_MAX_KEYS,
  DEFAULT_JWKS_TIMEOUT_MS,
  JwksUrlKeySource,
  type KeySource,
  readVerificationKeys,
  secretVerificationKey,
  SIGNING_ALGORITHMS,
  StaticKeySource,
} from '../lib/keys.js'
import {DEFAULT_MAX_SET_BYTES} from '../lib/set.js'
import type {VerifyPool} from '../lib/verify-pool.js'
import {createVerifier, DEFAULT_CLOCK_TOLERANCE_SEC, type SetVerifier, type SignatureOffload} from '../lib/verify.js'

const group = 'VERIFICATION'

export const verifyFlags = {
  'allow-unsigned': Flags.boolean({
    default: false,
    description: 'Accept unsigned SETs (alg "none"); they are reported UNVERIFIED. Off by default: unsigned SETs are refused.',
    helpGroup: group,
  }),
  alg: Flags.string({
    description: `Allowed signature algorithm (repeat for several). Default: ${SIGNING_ALGORITHMS.filter((a) => a !== 'HS256').join(', ')}, plus HS256 when --secret is given.`,
    helpGroup: group,
    multiple: true,
    options: [...SIGNING_ALGORITHMS],
  }),
  'clock-tolerance': Flags.integer({
    default: DEFAULT_CLOCK_TOLERANCE_SEC,
    description: 'Seconds of clock skew allowed when checking exp, iat and nbf.',
    helpGroup: group,
    min: 0,
  }),
  'expect-aud': Flags.string({
    description: 'Expected audience (repeat for several); the SET "aud" must contain one of them.',
    helpGroup: group,
    multiple: true,
  }),
  'expect-iss': Flags.string({
    description: 'Expected issuer (repeat for several); the SET "iss" must be one of them.',
    helpGroup: group,
    multiple: true,
  }),
  jwks: Flags.string({
    description: 'JWKS to verify with: an http(s) URL (fetched on first use, refetched on an unknown kid at most once per --jwks-cooldown) or a JWK/JWKS file.',
    helpGroup: group,
    helpValue: 'URL|FILE',
  }),
  'jwks-cooldown': Flags.integer({
    default: DEFAULT_JWKS_COOLDOWN_MS,
    description: 'Fetch a --jwks URL at most once per this many milliseconds (a SET with an unknown kid triggers a refetch).',
    helpGroup: group,
    min: 0,
  }),
  'jwks-max-bytes': Flags.integer({
    default: DEFAULT_JWKS_MAX_BYTES,
    description: 'Largest JWKS body accepted from a --jwks URL, in bytes.',
    helpGroup: group,
    min: 1,
  }),
  'jwks-max-keys': Flags.integer({
    default: DEFAULT_JWKS_MAX_KEYS,
    description: 'Most keys accepted in a --jwks URL or JWKS file (--jwks, --verify-key); a larger set is refused.',
    helpGroup: group,
    min: 1,
  }),
  'jwks-timeout': Flags.integer({
    default: DEFAULT_JWKS_TIMEOUT_MS,
    description: 'Timeout for fetching a --jwks URL, in milliseconds.',
    helpGroup: group,
    min: 1,
  }),
  'max-set-bytes': Flags.integer({
    default: DEFAULT_MAX_SET_BYTES,
    description: 'Largest SET accepted, in bytes; larger ones are refused before any parsing or crypto.',
    helpGroup: group,
    min: 1,
  }),
  secret: Flags.string({
    description: 'HMAC secret for HS256 SETs (prefer the PUSHPULL_SECRET environment variable: command lines are visible to other users).',
    env: 'PUSHPULL_SECRET',
    helpGroup: group,
  }),
  'verify-key': Flags.string({
    description: 'Public key file to verify with: PEM (SPKI public key, X.509 certificate or private key), JWK or JWKS. Repeat for several.',
    helpGroup: group,
    helpValue: 'FILE',
    multiple: true,
  }),
}

/** `--verify-workers` (listen, stream): signature checks in worker threads. */
export const verifyWorkersFlag = Flags.integer({
  default: 0,
  description:
    'Check SET signatures in this many worker threads (0: in the main thread). Spreads verification over the cores when one core cannot keep up (about 20,000 ES256 SETs/s per core).',
  helpGroup: group,
  max: 64,
  min: 0,
})

/** A worker pool for `--verify-workers N` (undefined for 0); close it when done. */
export async function verifyPoolFor(workers: number | undefined): Promise<VerifyPool | undefined> {
  if (workers === undefined || workers === 0) return undefined
  const {createVerifyPool} = await import('../lib/verify-pool.js')
  return createVerifyPool({workers})
}

export interface VerifyFlagValues {
  'allow-unsigned'?: boolean
  alg?: string[]
  'clock-tolerance'?: number
  'expect-aud'?: string[]
  'expect-iss'?: string[]
  jwks?: string
  'jwks-cooldown'?: number
  'jwks-max-bytes'?: number
  'jwks-max-keys'?: number
  'jwks-timeout'?: number
  'max-set-bytes'?: number
  secret?: string
  'verify-key'?: string[]
}

export interface BuildVerifierOptions {
  /** undici dispatcher for a --jwks URL (tests inject one). */
  dispatcher?: Dispatcher
  now?: () => number
  /** Where signature checks run (a worker pool for --verify-workers); default this thread. */
  signatures?: SignatureOffload
}

/** Build the verifier the flags describe. Reads key files and checks them now, not per SET. */
export async function buildVerifier(flags: VerifyFlagValues, options: BuildVerifierOptions = {}): Promise<SetVerifier> {
  const sources: KeySource[] = []
  if (flags.jwks !== undefined) {
    if (/^https?:\/\//i.test(flags.jwks)) {
      sources.push(
        new JwksUrlKeySource(flags.jwks, {
          cooldownMs: flags['jwks-cooldown'],
          dispatcher: options.dispatcher,
          maxBytes: flags['jwks-max-bytes'],
          maxKeys: flags['jwks-max-keys'],
          now: options.now,
          timeoutMs: flags['jwks-timeout'],
        }),
      )
    } else {
      sources.push(new StaticKeySource(await readVerificationKeys(flags.jwks, {maxKeys: flags['jwks-max-keys']})))
    }
  }

  for (const path of flags['verify-key'] ?? []) sources.push(new StaticKeySource(await readVerificationKeys(path, {maxKeys: flags['jwks-max-keys']})))
  if (flags.secret !== undefined) {
    if (flags.secret === '') throw new PushpullError('ERR_KEY_INVALID', 'the HMAC secret (--secret / PUSHPULL_SECRET) is empty')
    sources.push(new StaticKeySource([secretVerificationKey(flags.secret, 'the HMAC secret')]))
  }

  return createVerifier({
    algorithms: flags.alg !== undefined && flags.alg.length > 0 ? flags.alg : undefined,
    allowUnsigned: flags['allow-unsigned'] ?? false,
    audience: flags['expect-aud'],
    clockToleranceSec: flags['clock-tolerance'],
    issuer: flags['expect-iss'],
    keys: sources,
    maxBytes: flags['max-set-bytes'],
    now: options.now,
    signatures: options.signatures,
  })
}
