/**
 * `listen --ssf`: flags, the state it needs and the signing key it serves.
 *
 *   static override flags = {...ssfListenFlags, ...}
 *   const state = openLedgerWithSsfStreams(flags)            // ledger + stream store, one file
 *   const ssf = await ssfSigningKey(flags)                   // --signing-key, or a fresh ES256 key
 *   await listener.listen()
 *   mountSsfTransmitter(listener, {jwks: ssf.jwks, signer: ssf.signer, store: state.streams, ...})
 */
import {createPrivateKey, createPublicKey} from 'node:crypto'
import {homedir} from 'node:os'

import {Flags} from '@oclif/core'

import {PushpullError} from '../lib/errors.js'
import {generateKeyPair, readSigningKey, type Signer} from '../lib/keys.js'
import {Ledger} from '../lib/ledger.js'
import {SqliteSsfStreamStore} from '../lib/ssf/sqlite-store.js'
import {MemorySsfStreamStore, type SsfStreamStore} from '../lib/ssf/store.js'
import {DEFAULT_SSF_AUDIENCE} from '../lib/ssf/transmitter.js'
import {MemoryLedgerStorage, openStore} from '../lib/store.js'
import {type StateFlagValues, statePathFrom} from './state-flags.js'

const GROUP = 'SSF'

export const ssfListenFlags = {
  ssf: Flags.boolean({
    default: false,
    description:
      'Also be an SSF 1.0 transmitter: serve /.well-known/ssf-configuration, the JWKS of the signing key (--signing-key, else a fresh ES256 key) and the stream management API under /ssf/ (streams kept in the state database). Streams are poll streams on this listener\'s /poll.',
    helpGroup: GROUP,
  }),
  'ssf-audience': Flags.string({
    description: `"aud" of the SSF streams created (and of the SETs sent on them). [default: ${DEFAULT_SSF_AUDIENCE}]`,
    helpGroup: GROUP,
    multiple: true,
  }),
  'ssf-min-verification-interval': Flags.integer({
    default: 0,
    description: 'Seconds a receiver must wait between verification requests on one stream (faster ones get HTTP 429); 0 means no limit.',
    helpGroup: GROUP,
    min: 0,
  }),
}

export interface OpenedSsfState {
  ledger: Ledger
  streams: SsfStreamStore
}

/**
 * The ledger and the SSF stream store on the same state database (or both in memory with
 * --memory-state). `ledger.close()` closes both.
 */
export function openLedgerWithSsfStreams(flags: StateFlagValues, options: {env?: Readonly<Record<string, string | undefined>>; homedir?: string} = {}): OpenedSsfState {
  const path = statePathFrom(flags, {env: options.env, homedir: options.homedir ?? homedir()})
  if (path === undefined) return {ledger: new Ledger({storage: new MemoryLedgerStorage()}), streams: new MemorySsfStreamStore()}
  const storage = openStore({path})
  try {
    return {ledger: new Ledger({storage}), streams: new SqliteSsfStreamStore(storage)}
  } catch (error) {
    storage.close()
    throw error
  }
}

export interface SsfSigningKey {
  signer: Signer
  jwks: {keys: Array<Record<string, unknown>>}
  /** True when no --signing-key was given and a key was generated for this run. */
  generated: boolean
}

/**
 * The key the SSF transmitter signs with and the JWKS it publishes: --signing-key (asymmetric
 * only: its public half is published), else a new ES256 key for this run.
 */
export async function ssfSigningKey(flags: {'signing-key'?: string; kid?: string; alg?: string}): Promise<SsfSigningKey> {
  const file = flags['signing-key']
  if (file === undefined) {
    const pair = await generateKeyPair('ES256', flags.kid)
    const signer: Signer = {alg: 'ES256', key: createPrivateKey(pair.privatePem), kid: pair.kid}
    return {generated: true, jwks: pair.publicJwks as unknown as {keys: Array<Record<string, unknown>>}, signer}
  }

  const signer = await readSigningKey(file, {alg: flags.alg, kid: flags.kid})
  if (signer.key === undefined || signer.key.type !== 'private') {
    throw new PushpullError('ERR_USAGE', `--ssf publishes the public half of --signing-key as its JWKS, so it needs an asymmetric private key; ${file} is not one`)
  }

  const jwk = createPublicKey(signer.key).export({format: 'jwk'}) as Record<string, unknown>
  return {generated: false, jwks: {keys: [{...jwk, alg: signer.alg, ...(signer.kid === undefined ? {} : {kid: signer.kid}), use: 'sig'}]}, signer}
}

