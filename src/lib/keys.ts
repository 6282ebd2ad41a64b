/**
 * Keys: verification keys (PEM, JWK, JWKS file or URL, HMAC secret), signing keys (PEM or JWK
 * private key, HMAC secret) and key-pair generation. Keys are held as node KeyObjects, which jose
 * accepts and converts once per (key, alg) pair, so a key is never re-imported per token.
 *
 * Messages name the file or URL a key came from, never the key material.
 */
import {
  createPrivateKey,
  createPublicKey,
  createSecretKey,
  generateKeyPair as generateNodeKeyPair,
  type KeyObject,
  X509Certificate,
} from 'node:crypto'
import {type FileHandle, open} from 'node:fs/promises'
import {promisify} from 'node:util'

import type {JWK} from 'jose'
import type {Dispatcher} from 'undici'

import {PushpullError} from './errors.js'
import {parseJsonSafely} from './set.js'

/** Asymmetric algorithms pushpull signs and verifies with. */
export const ASYMMETRIC_ALGORITHMS = ['RS256', 'PS256', 'ES256', 'ES384', 'EdDSA'] as const
/** Every algorithm pushpull signs and verifies with. */
export const SIGNING_ALGORITHMS = [...ASYMMETRIC_ALGORITHMS, 'HS256'] as const
export type AsymmetricAlgorithm = (typeof ASYMMETRIC_ALGORITHMS)[number]
export type SigningAlgorithm = (typeof SIGNING_ALGORITHMS)[number]

export function isSigningAlgorithm(alg: string): alg is SigningAlgorithm {
  return (SIGNING_ALGORITHMS as readonly string[]).includes(alg)
}

/** A key that can check signatures. */
export interface VerificationKey {
  key: KeyObject
  kid?: string
  /** When the JWK names an `alg`, the key is used for that algorithm only. */
  alg?: string
  /** Where the key came from (file path, URL, '--secret'), for messages. */
  source: string
}

/** True when `key` can sign or verify with `alg` (HS256 only with a secret, ES256 only with P-256 ...). */
export function keyFitsAlgorithm(key: KeyObject, alg: string): boolean {
  if (alg === 'HS256') return key.type === 'secret'
  if (key.type === 'secret') return false
  const type = key.asymmetricKeyType
  const curve = key.asymmetricKeyDetails?.namedCurve
  switch (alg) {
    case 'RS256': {
      return type === 'rsa'
    }

    case 'PS256': {
      return type === 'rsa' || type === 'rsa-pss'
    }

    case 'ES256': {
      return type === 'ec' && curve === 'prime256v1'
    }

    case 'ES384': {
      return type === 'ec' && curve === 'secp384r1'
    }

    case 'EdDSA': {
      return type === 'ed25519'
    }

    default: {
      return false
    }
  }
}

/** The algorithm a key is normally used with (RSA -> RS256, P-256 -> ES256, Ed25519 -> EdDSA ...). */
export function defaultAlgorithmFor(key: KeyObject): SigningAlgorithm | undefined {
  return SIGNING_ALGORITHMS.find((alg) => keyFitsAlgorithm(key, alg))
}

/** Bits of an RSA modulus, undefined for other keys (lint uses it for the caep-interop profile). */
export function keyBitsOf(key: KeyObject): number | undefined {
  return key.asymmetricKeyDetails?.modulusLength
}

function keyError(source: string, what: string, cause?: unknown): PushpullError {
  return new PushpullError('ERR_KEY_INVALID', `${source}: ${what}`, {cause})
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value)
}

/** An HMAC secret (UTF-8 bytes of the string) as a verification key. */
export function secretVerificationKey(secret: string | Uint8Array, source = 'the HMAC secret'): VerificationKey {
  const bytes = typeof secret === 'string' ? Buffer.from(secret, 'utf8') : Buffer.from(secret)
  if (bytes.length === 0) throw keyError(source, 'the secret is empty')
  return {alg: 'HS256', key: createSecretKey(bytes), source}
}

function publicKeyFromJwk(jwk: Record<string, unknown>, source: string): VerificationKey | undefined {
  if (jwk.use !== undefined && jwk.use !== 'sig') return undefined
  const kid = typeof jwk.kid === 'string' ? jwk.kid : undefined
  const alg = typeof jwk.alg === 'string' ? jwk.alg : undefined
  if (jwk.kty === 'oct') {
    if (typeof jwk.k !== 'string' || jwk.k === '') throw keyError(source, 'an "oct" JWK has no "k"')
    return {alg: alg ?? 'HS256', key: createSecretKey(Buffer.from(jwk.k, 'base64url')), kid, source}
  }

  try {
    // A private JWK yields its public half.
    const key = createPublicKey({format: 'jwk', key: jwk as never})
    return {alg, key, kid, source}
  } catch (error) {
    throw keyError(source, `a JWK${kid === undefined ? '' : ` (kid "${kid}")`} cannot be used: ${String(jwk.kty ?? 'no kty')} key not understood`, error)
  }
}

/** Most keys accepted in one JWKS (file or URL): keys without a kid are tried on every token. */
export const DEFAULT_JWKS_MAX_KEYS = 100

export interface JwksParseOptions {
  /** Most entries in a JWKS "keys" array; more is refused before any key is imported. Default 100. */
  maxKeys?: number
}

/** Parse JWKS or JWK JSON into verification keys. */
export function verificationKeysFromJson(value: unknown, source: string, options: JwksParseOptions = {}): VerificationKey[] {
  if (!isRecord(value)) throw keyError(source, 'not a JWK or JWKS object')
  if (Array.isArray(value.keys)) {
    const maxKeys = options.maxKeys ?? DEFAULT_JWKS_MAX_KEYS
    if (value.keys.length > maxKeys) throw keyError(source, `the JWKS holds ${value.keys.length} keys, over the limit of ${maxKeys}`)
    const keys: VerificationKey[] = []
    for (const jwk of value.keys) {
      if (!isRecord(jwk)) throw keyError(source, 'a member of "keys" is not a JWK object')
      const key = publicKeyFromJwk(jwk, source)
      if (key) keys.push(key)
    }

    if (keys.length === 0) throw keyError(source, 'the JWKS holds no signature keys')
    return keys
  }

  if (typeof value.kty === 'string') {
    const key = publicKeyFromJwk(value, source)
    if (!key) throw keyError(source, 'the JWK is not a signature key ("use" is not "sig")')
    return [key]
  }

  throw keyError(source, 'neither a JWK (no "kty") nor a JWKS (no "keys" array)')
}

/** Parse PEM text (SPKI public key, X.509 certificate, or a private key whose public half is used). */
export function verificationKeyFromPem(pem: string, source: string): VerificationKey {
  try {
    if (pem.includes('-----BEGIN CERTIFICATE-----')) return {key: new X509Certificate(pem).publicKey, source}
    return {key: createPublicKey(pem), source}
  } catch (error) {
    throw keyError(source, 'not a usable PEM public key, certificate or private key', error)
  }
}

/** Parse a key file's text: PEM, JWK or JWKS. */
export function verificationKeysFromText(text: string, source: string, options: JwksParseOptions = {}): VerificationKey[] {
  const trimmed = text.trim()
  if (trimmed.startsWith('-----BEGIN')) return [verificationKeyFromPem(trimmed, source)]
  let value: unknown
  try {
    value = parseJsonSafely(trimmed)
  } catch (error) {
    throw keyError(source, 'neither PEM nor JSON (JWK or JWKS)', error)
  }

  return verificationKeysFromJson(value, source, options)
}

/** Largest local file read whole (key, event, token and TLS files): 16 MiB, the same as a fetched JWKS. */
export const DEFAULT_FILE_MAX_BYTES = 16 * 1024 * 1024
/** Largest key file read (PEM, JWK or JWKS file). */
export const DEFAULT_KEY_FILE_MAX_BYTES = DEFAULT_FILE_MAX_BYTES

/** Why `readFileBounded` gave up; `text` reads after the file name ("no such file", "is larger than N bytes"). */
export interface FileReadFailure {
  reason: 'missing' | 'unreadable' | 'too-large'
  text: string
}

export interface BoundedReadOptions {
  /** Most bytes read; one more is a failure. Default 16 MiB (DEFAULT_FILE_MAX_BYTES). */
  maxBytes?: number
  /** Build the error to throw (each caller has its own code and wording). */
  fail: (failure: FileReadFailure, cause?: unknown) => PushpullError
}

/**
 * Read a local file whole, at most `maxBytes` (a FIFO such as `<(vault read ...)` works; a huge
 * file or `/dev/zero` is refused instead of filling memory). Every local file pushpull reads whole
 * goes through here: key files, event files, token files, TLS certificates and keys.
 */
export async function readFileBounded(path: string, options: BoundedReadOptions): Promise<Buffer> {
  const maxBytes = options.maxBytes ?? DEFAULT_FILE_MAX_BYTES
  const unreadable = (error: unknown) => options.fail({reason: 'unreadable', text: `cannot be read (${(error as NodeJS.ErrnoException).code ?? 'error'})`}, error)
  let handle: FileHandle
  try {
    handle = await open(path, 'r')
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') throw options.fail({reason: 'missing', text: 'no such file'}, error)
    throw unreadable(error)
  }

  try {
    const chunks: Buffer[] = []
    let size = 0
    for (;;) {
      const buffer = Buffer.alloc(64 * 1024)
      const {bytesRead} = await handle.read(buffer, 0, buffer.length, null)
      if (bytesRead === 0) break
      size += bytesRead
      if (size > maxBytes) throw options.fail({reason: 'too-large', text: `is larger than ${maxBytes} bytes`})
      chunks.push(buffer.subarray(0, bytesRead))
    }

    return Buffer.concat(chunks)
  } catch (error) {
    if (error instanceof PushpullError) throw error
    throw unreadable(error)
  } finally {
    await handle.close()
  }
}

/** Read a key file as UTF-8, at most `maxBytes`. */
async function readKeyFile(path: string, maxBytes = DEFAULT_KEY_FILE_MAX_BYTES): Promise<string> {
  const fail = (failure: FileReadFailure, cause?: unknown) => keyError(path, failure.reason === 'too-large' ? `${failure.text}; not a key file` : failure.text, cause)
  return (await readFileBounded(path, {fail, maxBytes})).toString('utf8')
}

/** Read verification keys from a PEM, JWK or JWKS file (a JWKS holds at most `maxKeys` keys, default 100). */
export async function readVerificationKeys(path: string, options: JwksParseOptions = {}): Promise<VerificationKey[]> {
  return verificationKeysFromText(await readKeyFile(path), path, options)
}

/** Where a verifier finds candidate keys for a token's `kid`. */
export interface KeySource {
  /** Keys whose kid matches (keys without a kid match any token). May fetch. */
  keysFor(kid: string | undefined): Promise<readonly VerificationKey[]>
  /** True when the source holds an HMAC secret (HS256 joins the default allow-list). */
  readonly hasSecret: boolean
  readonly description: string
}

function matching(keys: readonly VerificationKey[], kid: string | undefined): VerificationKey[] {
  return kid === undefined ? [...keys] : keys.filter((k) => k.kid === undefined || k.kid === kid)
}

/** Keys known up front (files and secrets). */
export class StaticKeySource implements KeySource {
  readonly hasSecret: boolean
  constructor(
    private readonly keys: readonly VerificationKey[],
    readonly description = [...new Set(keys.map((k) => k.source))].join(', '),
  ) {
    this.hasSecret = keys.some((k) => k.key.type === 'secret')
  }

  async keysFor(kid: string | undefined): Promise<readonly VerificationKey[]> {
    return matching(this.keys, kid)
  }
}

export interface JwksUrlOptions {
  /** undici dispatcher (Agent, MockAgent, proxy); default the global dispatcher. */
  dispatcher?: Dispatcher
  /** Whole-fetch timeout in ms. Default 10 000. */
  timeoutMs?: number
  /** Largest JWKS body in bytes. Default 16 MiB. */
  maxBytes?: number
  /** Most keys in the JWKS; more is ERR_JWKS_FETCH. Default 100 (DEFAULT_JWKS_MAX_KEYS). */
  maxKeys?: number
  /** Fetch the URL at most once per this many ms (first load, refetch on unknown kid, failures). Default 30 000. */
  cooldownMs?: number
  /** Clock in ms. Default Date.now. */
  now?: () => number
}

export const DEFAULT_JWKS_MAX_BYTES = 16 * 1024 * 1024
export const DEFAULT_JWKS_TIMEOUT_MS = 10_000
export const DEFAULT_JWKS_COOLDOWN_MS = 30_000

/**
 * A JWKS fetched from a URL. Loaded on first use; refetched when a token names a kid the set does
 * not hold, at most once per cooldown. Failures are ERR_JWKS_FETCH (transient: receivers neither
 * ack nor reject the SET).
 */
export class JwksUrlKeySource implements KeySource {
  readonly hasSecret = false
  readonly description: string
  /** How many HTTP fetches were started (for tests and diagnostics). */
  fetchCount = 0
  private keys: VerificationKey[] | undefined
  private lastAttempt: number | undefined
  private lastError: PushpullError | undefined
  private inflight: Promise<void> | undefined
  private readonly options: Required<Omit<JwksUrlOptions, 'dispatcher'>> & {dispatcher?: Dispatcher}

  constructor(
    readonly url: string,
    options: JwksUrlOptions = {},
  ) {
    let parsed: URL
    try {
      parsed = new URL(url)
    } catch (error) {
      throw new PushpullError('ERR_USAGE', `the JWKS URL "${url}" is not a URL`, {cause: error})
    }

    if (parsed.protocol !== 'https:' && parsed.protocol !== 'http:') {
      throw new PushpullError('ERR_USAGE', `the JWKS URL must be http(s), not ${parsed.protocol}`)
    }

    parsed.username = ''
    parsed.password = ''
    this.description = parsed.href
    this.options = {
      cooldownMs: options.cooldownMs ?? DEFAULT_JWKS_COOLDOWN_MS,
      dispatcher: options.dispatcher,
      maxBytes: options.maxBytes ?? DEFAULT_JWKS_MAX_BYTES,
      maxKeys: options.maxKeys ?? DEFAULT_JWKS_MAX_KEYS,
      now: options.now ?? Date.now,
      timeoutMs: options.timeoutMs ?? DEFAULT_JWKS_TIMEOUT_MS,
    }
  }

  async keysFor(kid: string | undefined): Promise<readonly VerificationKey[]> {
    if (this.keys === undefined) await this.refresh()
    let found = matching(this.keys ?? [], kid)
    if (found.length === 0 && kid !== undefined && (this.inflight !== undefined || this.mayFetch())) {
      // Join a refetch already under way (several SETs with the new kid at once) or start one.
      await (this.inflight ?? this.refresh())
      found = matching(this.keys ?? [], kid)
    }

    return found
  }

  private mayFetch(): boolean {
    return this.lastAttempt === undefined || this.options.now() - this.lastAttempt >= this.options.cooldownMs
  }

  private async refresh(): Promise<void> {
    if (this.inflight) return this.inflight
    if (!this.mayFetch()) {
      if (this.keys === undefined && this.lastError) throw this.lastError
      return
    }

    this.lastAttempt = this.options.now()
    this.inflight = this.fetchKeys()
      .then((keys) => {
        this.keys = keys
        this.lastError = undefined
      })
      .catch((error: unknown) => {
        this.lastError = error instanceof PushpullError ? error : new PushpullError('ERR_JWKS_FETCH', `JWKS ${this.description}: ${String(error)}`, {cause: error})
        throw this.lastError
      })
      .finally(() => {
        this.inflight = undefined
      })
    return this.inflight
  }

  private fail(what: string, cause?: unknown): PushpullError {
    return new PushpullError('ERR_JWKS_FETCH', `JWKS ${this.description}: ${what}`, {cause, details: {url: this.description}})
  }

  private async fetchKeys(): Promise<VerificationKey[]> {
    this.fetchCount++
    const {maxBytes, timeoutMs} = this.options
    let response: Dispatcher.ResponseData
    try {
      // Loaded on first use: undici costs start-up time that decoding without a JWKS URL never needs.
      const {request} = await import('undici')
      response = await request(this.url, {
        dispatcher: this.options.dispatcher,
        headers: {accept: 'application/jwk-set+json, application/json'},
        method: 'GET',
        signal: AbortSignal.timeout(timeoutMs),
      })
    } catch (error) {
      const timedOut = (error as Error).name === 'TimeoutError' || (error as Error).name === 'AbortError'
      throw this.fail(timedOut ? `no answer within ${timeoutMs} ms` : `fetch failed (${(error as Error).message})`, error)
    }

    const {body, headers, statusCode} = response
    try {
      if (statusCode !== 200) throw this.fail(`HTTP status ${statusCode}`)
      const length = Number(headers['content-length'])
      if (Number.isFinite(length) && length > maxBytes) throw this.fail(`the body (${length} bytes) is over the ${maxBytes}-byte limit`)
      const contentType = String(headers['content-type'] ?? '')
      if (/text\/html/i.test(contentType)) throw this.fail('the server answered with HTML, not a JWKS')
      const chunks: Buffer[] = []
      let size = 0
      for await (const chunk of body) {
        size += (chunk as Buffer).length
        if (size > maxBytes) throw this.fail(`the body is over the ${maxBytes}-byte limit`)
        chunks.push(chunk as Buffer)
      }

      let value: unknown
      try {
        value = parseJsonSafely(Buffer.concat(chunks).toString('utf8'))
      } catch (error) {
        throw this.fail('the body is not JSON', error)
      }

      try {
        return verificationKeysFromJson(value, this.description, {maxKeys: this.options.maxKeys})
      } catch (error) {
        throw this.fail((error as Error).message, error)
      }
    } catch (error) {
      // Stop reading; the destroy error is expected, so it must not surface as an uncaught event.
      body.on('error', () => undefined)
      body.destroy()
      throw error
    }
  }
}

/** What `mintSet` signs with. `key` is absent only for unsigned SETs (`alg: none`). */
export interface Signer {
  alg: SigningAlgorithm | 'none'
  kid?: string
  key?: KeyObject
}

export interface SignerOptions {
  /** Algorithm; default the JWK's `alg`, else the key's usual one (RSA -> RS256, P-256 -> ES256 ...). */
  alg?: string
  /** Header `kid`; default the JWK's `kid`, else the RFC 7638 thumbprint of the public key. */
  kid?: string
}

function checkSignerAlg(key: KeyObject, alg: string, source: string): SigningAlgorithm {
  if (!isSigningAlgorithm(alg)) {
    throw new PushpullError('ERR_USAGE', `algorithm "${alg}" is not supported; use one of ${SIGNING_ALGORITHMS.join(', ')}`)
  }

  if (!keyFitsAlgorithm(key, alg)) throw keyError(source, `the key cannot sign with ${alg}`)
  return alg
}

/** The RFC 7638 thumbprint of a key's public half (our default `kid`). */
export async function thumbprintOf(key: KeyObject): Promise<string> {
  const publicKey = key.type === 'private' ? createPublicKey(key) : key
  // jose is loaded here, on first use only: nothing else in this module needs it (cold start).
  const {calculateJwkThumbprint} = await import('jose')
  return calculateJwkThumbprint(publicKey.export({format: 'jwk'}) as JWK)
}

/** A signer from a private key file: PEM (PKCS#8, PKCS#1, SEC1) or a private JWK (or a JWKS holding one). */
export async function readSigningKey(path: string, options: SignerOptions = {}): Promise<Signer> {
  const text = (await readKeyFile(path)).trim()
  let key: KeyObject
  let jwk: Record<string, unknown> | undefined
  if (text.startsWith('-----BEGIN')) {
    if (/-----BEGIN (PUBLIC KEY|CERTIFICATE|RSA PUBLIC KEY)-----/.test(text)) {
      throw keyError(path, 'holds a public key or certificate; signing needs a private key')
    }

    try {
      key = createPrivateKey(text)
    } catch (error) {
      throw keyError(path, 'not a usable PEM private key', error)
    }
  } else {
    let value: unknown
    try {
      value = parseJsonSafely(text)
    } catch (error) {
      throw keyError(path, 'neither PEM nor a JSON JWK', error)
    }

    if (isRecord(value) && Array.isArray(value.keys)) {
      const privates = value.keys.filter((k): k is Record<string, unknown> => isRecord(k) && (k.d !== undefined || k.kty === 'oct'))
      if (privates.length !== 1) throw keyError(path, `a JWKS used for signing must hold exactly one private key, found ${privates.length}`)
      value = privates[0]
    }

    if (!isRecord(value) || typeof value.kty !== 'string') throw keyError(path, 'not a JWK (no "kty")')
    jwk = value
    try {
      if (value.kty === 'oct') {
        if (typeof value.k !== 'string' || value.k === '') throw new Error('no k')
        key = createSecretKey(Buffer.from(value.k, 'base64url'))
      } else {
        if (value.d === undefined) throw keyError(path, 'holds a public JWK; signing needs a private key (with "d")')
        key = createPrivateKey({format: 'jwk', key: value as never})
      }
    } catch (error) {
      if (error instanceof PushpullError) throw error
      throw keyError(path, 'the JWK cannot be used as a signing key', error)
    }
  }

  const requested = options.alg ?? (typeof jwk?.alg === 'string' ? jwk.alg : undefined) ?? defaultAlgorithmFor(key)
  if (requested === undefined) throw keyError(path, `a ${key.asymmetricKeyType ?? key.type} key cannot sign SETs`)
  const alg = checkSignerAlg(key, requested, path)
  const kid = options.kid ?? (typeof jwk?.kid === 'string' ? jwk.kid : undefined) ?? (key.type === 'secret' ? undefined : await thumbprintOf(key))
  return {alg, key, kid}
}

/** A signer for an HMAC secret (HS256). */
export function secretSigner(secret: string | Uint8Array, options: SignerOptions = {}): Signer {
  const {key} = secretVerificationKey(secret)
  return {alg: checkSignerAlg(key, options.alg ?? 'HS256', 'the HMAC secret'), key, kid: options.kid}
}

/** A signer for unsigned SETs (`alg: none`). Only on explicit request. */
export function unsignedSigner(kid?: string): Signer {
  return {alg: 'none', kid}
}

export interface GeneratedKeyPair {
  alg: AsymmetricAlgorithm
  kid: string
  /** The private key as a JWK (with kid, alg, use). */
  privateJwk: JWK
  /** The private key as PKCS#8 PEM. */
  privatePem: string
  /** The public key as a JWKS with one key. */
  publicJwks: {keys: JWK[]}
}

const generate = promisify(generateNodeKeyPair)

/** Generate a key pair for an asymmetric algorithm. RSA keys are 2048 bits; `kid` defaults to the RFC 7638 thumbprint. */
export async function generateKeyPair(alg: string, kid?: string, options: {modulusLength?: number} = {}): Promise<GeneratedKeyPair> {
  let pair: {privateKey: KeyObject; publicKey: KeyObject}
  switch (alg) {
    case 'RS256':
    case 'PS256': {
      pair = await generate('rsa', {modulusLength: options.modulusLength ?? 2048})
      break
    }

    case 'ES256':
    case 'ES384': {
      pair = await generate('ec', {namedCurve: alg === 'ES256' ? 'P-256' : 'P-384'})
      break
    }

    case 'EdDSA': {
      pair = await generate('ed25519')
      break
    }

    default: {
      throw new PushpullError('ERR_USAGE', `cannot generate a key pair for "${alg}"; use one of ${ASYMMETRIC_ALGORITHMS.join(', ')}`)
    }
  }

  const publicJwk = pair.publicKey.export({format: 'jwk'}) as JWK
  const keyId = kid ?? (await (await import('jose')).calculateJwkThumbprint(publicJwk))
  const meta = {alg, kid: keyId, use: 'sig'}
  return {
    alg: alg as AsymmetricAlgorithm,
    kid: keyId,
    privateJwk: {...(pair.privateKey.export({format: 'jwk'}) as JWK), ...meta},
    privatePem: pair.privateKey.export({format: 'pem', type: 'pkcs8'}).toString(),
    publicJwks: {keys: [{...publicJwk, ...meta}]},
  }
}
