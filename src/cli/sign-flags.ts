/** The shared signing flags (mint, send) and the signer they build. */
import {Flags} from '@oclif/core'

import {PushpullError} from '../lib/errors.js'
import {readSigningKey, secretSigner, type Signer, SIGNING_ALGORITHMS, unsignedSigner} from '../lib/keys.js'
import {warnIfOthersCanRead} from './transport-flags.js'

const group = 'SIGNING'

export const signFlags = {
  alg: Flags.string({
    description: 'Signature algorithm. Default: the JWK "alg", else the key\'s usual one (RSA RS256, P-256 ES256, P-384 ES384, Ed25519 EdDSA; HS256 with --secret).',
    helpGroup: group,
    options: [...SIGNING_ALGORITHMS],
  }),
  aud: Flags.string({description: 'Audience of the SETs (repeat for several).', helpGroup: group, multiple: true}),
  iss: Flags.string({description: 'Issuer of the SETs (required unless every input carries "iss").', helpGroup: group}),
  kid: Flags.string({description: 'Header "kid". Default: the JWK "kid", else the RFC 7638 thumbprint of the key.', helpGroup: group}),
  secret: Flags.string({
    description: 'HMAC secret to sign with (HS256). Prefer the PUSHPULL_SECRET environment variable. --signing-key takes precedence.',
    env: 'PUSHPULL_SECRET',
    helpGroup: group,
  }),
  'signing-key': Flags.string({
    description: 'Private key file to sign with: PEM (PKCS#8, PKCS#1 or SEC1) or a private JWK (as written by "keys generate").',
    helpGroup: group,
    helpValue: 'FILE',
  }),
  txn: Flags.string({description: 'Transaction identifier ("txn" claim) for every SET.', helpGroup: group}),
  unsigned: Flags.boolean({
    default: false,
    description: 'Mint unsigned SETs (alg "none"). Only for tests: receivers refuse them unless told otherwise.',
    helpGroup: group,
  }),
}

export interface SignFlagValues {
  alg?: string
  kid?: string
  secret?: string
  'signing-key'?: string
  unsigned?: boolean
}

/**
 * Build the signer the flags describe: --signing-key, else --secret, else --unsigned; one is
 * required. `warn` is told when the private key file is readable by other users.
 */
export async function buildSigner(flags: SignFlagValues, warn?: (message: string) => void): Promise<Signer> {
  const key = flags['signing-key']
  if (flags.unsigned) {
    if (key !== undefined) throw new PushpullError('ERR_USAGE', '--unsigned and --signing-key contradict each other; pick one')
    if (flags.alg !== undefined) throw new PushpullError('ERR_USAGE', '--unsigned mints alg "none"; drop --alg')
    return unsignedSigner(flags.kid)
  }

  if (key !== undefined) {
    if (warn !== undefined) await warnIfOthersCanRead(key, 'private key file', warn)
    return readSigningKey(key, {alg: flags.alg, kid: flags.kid})
  }

  if (flags.secret !== undefined) {
    if (flags.secret === '') throw new PushpullError('ERR_KEY_INVALID', 'the HMAC secret (--secret / PUSHPULL_SECRET) is empty')
    return secretSigner(flags.secret, {alg: flags.alg, kid: flags.kid})
  }

  throw new PushpullError(
    'ERR_USAGE',
    'no signing key: pass --signing-key FILE or --secret (or PUSHPULL_SECRET); --unsigned mints unsigned SETs for tests',
  )
}
