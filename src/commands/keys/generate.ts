import {access, chmod, mkdir, writeFile} from 'node:fs/promises'
import {join, resolve} from 'node:path'

import {Flags} from '@oclif/core'

import {BaseCommand} from '../../cli/base-command.js'
import {PushpullError} from '../../lib/errors.js'
import {ASYMMETRIC_ALGORITHMS, generateKeyPair} from '../../lib/keys.js'

export interface GeneratedKeysResult {
  alg: string
  kid: string
  privateJwk: string
  privatePem: string
  jwks: string
}

export const PRIVATE_JWK_FILE = 'private.jwk.json'
export const PRIVATE_PEM_FILE = 'private.pem'
export const JWKS_FILE = 'jwks.json'

export default class KeysGenerate extends BaseCommand<typeof KeysGenerate> {
  static override description = `Generate a signing key pair for minting SETs.

Writes the private key as a JWK (${PRIVATE_JWK_FILE}) and as PKCS#8 PEM (${PRIVATE_PEM_FILE}), both
mode 0600, and the public key as a JWKS (${JWKS_FILE}) to publish or pass to "decode --jwks".
RSA keys are 2048 bits. The kid defaults to the key's RFC 7638 thumbprint. Existing files are
never overwritten unless --force is given.`

  static override examples = [
    {command: '<%= config.bin %> keys generate --out keys', description: 'An ES256 key pair in ./keys'},
    {command: '<%= config.bin %> keys generate --alg RS256 --kid tx-2025 --out keys --force --json', description: 'An RS256 key pair with a chosen kid, replacing old files'},
  ]

  static override flags = {
    alg: Flags.string({default: 'ES256', description: 'Algorithm the key pair is for.', options: [...ASYMMETRIC_ALGORITHMS]}),
    force: Flags.boolean({default: false, description: 'Overwrite existing key files.'}),
    kid: Flags.string({description: 'Key ID. Default: the RFC 7638 thumbprint of the public key.'}),
    out: Flags.string({default: '.', description: 'Directory to write the key files to (created when missing).', helpValue: 'DIR'}),
  }

  public async run(): Promise<GeneratedKeysResult> {
    const dir = resolve(this.flags.out)
    const paths = {jwks: join(dir, JWKS_FILE), privateJwk: join(dir, PRIVATE_JWK_FILE), privatePem: join(dir, PRIVATE_PEM_FILE)}
    if (!this.flags.force) {
      for (const path of Object.values(paths)) {
        const exists = await access(path).then(
          () => true,
          () => false,
        )
        if (exists) throw new PushpullError('ERR_USAGE', `${path} already exists; pass --force to overwrite it`)
      }
    }

    const pair = await generateKeyPair(this.flags.alg, this.flags.kid)
    try {
      await mkdir(dir, {recursive: true})
      const flag = this.flags.force ? 'w' : 'wx'
      await writeFile(paths.privateJwk, `${JSON.stringify(pair.privateJwk, null, 2)}\n`, {flag, mode: 0o600})
      await writeFile(paths.privatePem, pair.privatePem, {flag, mode: 0o600})
      await writeFile(paths.jwks, `${JSON.stringify(pair.publicJwks, null, 2)}\n`, {flag, mode: 0o644})
      // `mode` applies only when a file is created; --force may have replaced an older one.
      await chmod(paths.privateJwk, 0o600)
      await chmod(paths.privatePem, 0o600)
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code
      throw new PushpullError('ERR_CONFIG', `cannot write the key files to ${dir} (${code ?? (error as Error).message})`, {cause: error})
    }

    if (!this.jsonEnabled()) {
      process.stdout.write(`${paths.privateJwk}\n${paths.privatePem}\n${paths.jwks}\n`)
      this.note(`${pair.alg} key pair, kid ${pair.kid}; keep the private files secret, publish ${JWKS_FILE}`)
    }

    return {alg: pair.alg, kid: pair.kid, ...paths}
  }
}
