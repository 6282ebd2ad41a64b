/**
 * `--issuer ISSUER`: take the verification key and expected issuer from SSF discovery.
 *
 * For decode / poll / listen / stream:
 *
 *   static override flags = {...verifyFlags, ...issuerFlags, ...}
 *   const prepared = await prepareVerification(this.flags, {warn: (m) => this.warnLoud(m), signal: this.signal})
 *   try {
 *     const verifier = await buildVerifier(prepared.flags, {dispatcher: prepared.dispatcher})
 *     ...
 *   } finally {
 *     await prepared.close()
 *   }
 *
 * `applyIssuer` fetches `<issuer>/.well-known/ssf-configuration` (path rule of SSF 1.0), checks that
 * the document's `issuer` is identical, and returns its `jwks_uri` and the issuer as the expected
 * `iss`. `prepareVerification` also builds the undici dispatcher a `--jwks` URL (given or
 * discovered) is fetched with, so `--cacert` and `--insecure` apply to the JWKS too. `issuerFlags`
 * carries `--cacert` and `--insecure` (the same definitions as `transportFlags`, so spreading both
 * is harmless). The `ssf` commands share `ssfFlags` (issuer + transport flags) and `connectSsf`.
 */
import {Flags} from '@oclif/core'
import type {Dispatcher} from 'undici'

import {PushpullError} from '../lib/errors.js'
import {SsfClient} from '../lib/ssf/client.js'
import {discoverTransmitter, type TransmitterMetadata} from '../lib/ssf/metadata.js'
import {createHttpAgent, createHttpClient, type HttpClient, type HttpClientOptions} from '../lib/transport/http.js'
import {httpClientOptionsFrom, readCaFile, type TransportContext, type TransportFlagValues, transportFlags} from './transport-flags.js'
import type {VerifyPool} from '../lib/verify-pool.js'
import type {SetVerifier} from '../lib/verify.js'
import {buildVerifier, type VerifyFlagValues, verifyPoolFor} from './verify-flags.js'

const GROUP = 'SSF'

export const issuerFlags = {
  'allow-http': Flags.boolean({
    default: false,
    description: 'Accept http:// in the issuer and the transmitter metadata, for loopback hosts only (local test transmitters). SSF requires https everywhere else.',
    helpGroup: GROUP,
  }),
  issuer: Flags.string({
    description: 'SSF transmitter issuer: discover its metadata (/.well-known/ssf-configuration), verify SETs with its jwks_uri and expect it as "iss".',
    helpGroup: GROUP,
    helpValue: 'URL',
  }),
  'legacy-risc': Flags.boolean({
    default: false,
    description: 'Discover through /.well-known/risc-configuration (old RISC transmitters) instead of ssf-configuration.',
    helpGroup: GROUP,
  }),
  // TLS for the metadata and JWKS fetches; the same definitions as transportFlags.
  cacert: transportFlags.cacert,
  insecure: transportFlags.insecure,
}

export interface IssuerFlagValues {
  'allow-http'?: boolean
  cacert?: string
  insecure?: boolean
  issuer?: string
  'legacy-risc'?: boolean
}

export interface IssuerContext extends TransportContext {
  signal?: AbortSignal
  /** Extra HttpClient options (tests inject a dispatcher here). */
  http?: HttpClientOptions
}

export interface ResolvedIssuer {
  jwksUrl: string
  expectedIss: string
  metadata: TransmitterMetadata
}

async function withClient<T>(flags: TransportFlagValues, context: IssuerContext, use: (client: HttpClient) => Promise<T>): Promise<T> {
  const options = {...(await httpClientOptionsFrom(flags, context)), ...context.http}
  const client = createHttpClient(options)
  try {
    return await use(client)
  } finally {
    await client.close()
  }
}

/** Discover `flags.issuer` and return its JWKS URL and expected `iss`. Throws ERR_USAGE without --issuer. */
export async function applyIssuer(flags: IssuerFlagValues & TransportFlagValues, context: IssuerContext): Promise<ResolvedIssuer> {
  const {issuer} = flags
  if (issuer === undefined) throw new PushpullError('ERR_USAGE', '--issuer is required here')
  // Metadata discovery is public: never send the management bearer token to the well-known URL.
  const metadata = await withClient({...flags, token: undefined, 'token-file': undefined}, context, async (client) =>
    discoverTransmitter(issuer, {allowHttp: flags['allow-http'], client, legacy: flags['legacy-risc'], signal: context.signal}),
  )
  return {expectedIss: metadata.issuer, jwksUrl: metadata.jwks_uri as string, metadata}
}

/**
 * The verification flags with `--issuer` applied: `jwks` and `expect-iss` filled from discovery.
 * Refuses --issuer together with --jwks or --expect-iss (two sources of truth).
 */
export async function applyIssuerToVerifyFlags<F extends VerifyFlagValues & IssuerFlagValues & TransportFlagValues>(flags: F, context: IssuerContext): Promise<F> {
  if (flags.issuer === undefined) return flags
  if (flags.jwks !== undefined) throw new PushpullError('ERR_USAGE', '--issuer and --jwks both name the verification keys; give one of them')
  if (flags['expect-iss'] !== undefined && flags['expect-iss'].length > 0) {
    throw new PushpullError('ERR_USAGE', '--issuer already sets the expected issuer; drop --expect-iss')
  }

  const resolved = await applyIssuer(flags, context)
  return {...flags, 'expect-iss': [resolved.expectedIss], jwks: resolved.jwksUrl}
}

export interface PreparedVerification<F> {
  /** The flags with --issuer applied (`jwks` and `expect-iss` filled in). */
  flags: F
  /**
   * For `buildVerifier(flags, {dispatcher})`: fetches a `--jwks` URL trusting `--cacert` / under
   * `--insecure`. Undefined when neither flag is given (undici's global dispatcher is used).
   */
  dispatcher?: Dispatcher
  /** Close the dispatcher this created (an injected `context.http.dispatcher` is left open). Safe twice. */
  close(): Promise<void>
}

/**
 * `applyIssuerToVerifyFlags`, plus the dispatcher for the JWKS fetch. Warns once (not per fetch)
 * that --insecure turns off certificate checks for the JWKS URL when no discovery already warned.
 */
export async function prepareVerification<F extends VerifyFlagValues & IssuerFlagValues & TransportFlagValues>(
  flags: F,
  context: IssuerContext,
): Promise<PreparedVerification<F>> {
  const seen = new Set<string>()
  const warn = (message: string): void => {
    if (seen.has(message)) return
    seen.add(message)
    context.warn(message)
  }

  const applied = await applyIssuerToVerifyFlags(flags, {...context, warn})
  const jwksUrl = applied.jwks !== undefined && /^https?:\/\//i.test(applied.jwks)
  const injected = context.http?.dispatcher
  if (injected !== undefined) return {async close() {}, dispatcher: injected, flags: applied}
  if (!jwksUrl || (applied.cacert === undefined && applied.insecure !== true)) return {async close() {}, flags: applied}
  if (applied.insecure === true && applied.issuer === undefined) {
    warn('--insecure: the TLS certificate of the --jwks URL is NOT verified; anyone on the path can substitute the keys SETs are verified with')
  }

  const ca = applied.cacert === undefined ? undefined : await readCaFile(applied.cacert)
  const agent = createHttpAgent({ca, caFile: applied.cacert, connectTimeoutMs: applied['connect-timeout'], insecure: applied.insecure})
  let closed = false
  return {
    async close() {
      if (closed) return
      closed = true
      await agent.close()
    },
    dispatcher: agent,
    flags: applied,
  }
}

/** A ready verifier and what to release when the command ends. */
export interface OpenVerification<F> {
  /** The flags with --issuer applied. */
  flags: F
  verifier: SetVerifier
  /** Close the JWKS dispatcher and the verify workers. Safe twice. */
  close(): Promise<void>
}

/**
 * Everything a receiving command needs to verify SETs: --issuer discovery, the JWKS dispatcher
 * (--cacert, --insecure) and, with `workers` > 0, a pool of verify worker threads. On failure
 * nothing is left open.
 */
export async function openVerification<F extends VerifyFlagValues & IssuerFlagValues & TransportFlagValues>(
  flags: F,
  context: IssuerContext & {workers?: number},
): Promise<OpenVerification<F>> {
  const prepared = await prepareVerification(flags, context)
  let pool: VerifyPool | undefined
  try {
    pool = await verifyPoolFor(context.workers)
    const verifier = await buildVerifier(prepared.flags, {dispatcher: prepared.dispatcher, signatures: pool})
    return {
      async close() {
        await prepared.close()
        await pool?.close()
      },
      flags: prepared.flags,
      verifier,
    }
  } catch (error) {
    await prepared.close()
    await pool?.close()
    throw error
  }
}

/** Flags every `pushpull ssf ...` management command shares. */
export const ssfFlags = {
  ...transportFlags,
  'allow-http': issuerFlags['allow-http'],
  issuer: Flags.string({
    description: 'SSF transmitter issuer URL (its metadata is discovered from /.well-known/ssf-configuration).',
    env: 'PUSHPULL_SSF_ISSUER',
    helpGroup: GROUP,
    helpValue: 'URL',
    required: true,
  }),
  'legacy-risc': issuerFlags['legacy-risc'],
}

export interface SsfConnection {
  http: HttpClient
  ssf: SsfClient
  metadata: TransmitterMetadata
  close(): Promise<void>
}

/**
 * Discover the transmitter (without the bearer token) and open a management client that sends
 * the bearer token. `close()` it in `finally`.
 */
export async function connectSsf(
  flags: IssuerFlagValues & TransportFlagValues & {issuer: string},
  context: IssuerContext & {requireJwks?: boolean},
): Promise<SsfConnection> {
  const options = {...(await httpClientOptionsFrom(flags, context)), ...context.http}
  const {token, ...publicOptions} = options
  const discovery = createHttpClient(publicOptions)
  let metadata: TransmitterMetadata
  try {
    metadata = await discoverTransmitter(flags.issuer, {
      allowHttp: flags['allow-http'],
      client: discovery,
      legacy: flags['legacy-risc'],
      requireJwks: context.requireJwks,
      signal: context.signal,
    })
  } finally {
    await discovery.close()
  }

  const http = createHttpClient(token === undefined ? publicOptions : {...publicOptions, token})
  return {
    async close() {
      await http.close()
    },
    http,
    metadata,
    ssf: new SsfClient({client: http, metadata, signal: context.signal}),
  }
}
