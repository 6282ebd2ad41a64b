/**
 * SSF 1.0 transmitter discovery: where the metadata lives, fetching it, and checking it.
 *
 * - The document sits at the issuer's host with `/.well-known/ssf-configuration` inserted before
 *   the issuer's path (a trailing `/` of the path is dropped first): `https://tx.example/t1` ->
 *   `https://tx.example/.well-known/ssf-configuration/t1`. Old RISC transmitters publish it under
 *   `risc-configuration` instead (`legacy: true`).
 * - The document's `issuer` must be identical to the issuer we asked for; otherwise nothing of it
 *   may be used (ERR_PEER_PROTOCOL).
 * - Every URL in it (issuer, jwks_uri, endpoints) must be https. Plain http is accepted only when
 *   the caller allows it AND the host is loopback (tests and local demos); never elsewhere.
 * - `jwks_uri` is required unless the caller says the stream is unsigned (`requireJwks: false`).
 */
import {PushpullError} from '../errors.js'
import {isJsonObject, ownMember, parseJsonBounded} from '../json.js'
import {sanitizeText} from '../text.js'
import type {HttpClient} from '../transport/http.js'
import {redactUrl} from '../transport/http.js'

/** The delivery-method URIs SSF defines (RFC 8935 push, RFC 8936 poll). */
export const DELIVERY_PUSH = 'urn:ietf:rfc:8935'
export const DELIVERY_POLL = 'urn:ietf:rfc:8936'

/** Largest metadata document read, in bytes. */
export const DEFAULT_MAX_METADATA_BYTES = 256 * 1024

export const ENDPOINT_NAMES = [
  'configuration_endpoint',
  'status_endpoint',
  'add_subject_endpoint',
  'remove_subject_endpoint',
  'verification_endpoint',
] as const
export type EndpointName = (typeof ENDPOINT_NAMES)[number]

export interface TransmitterMetadata {
  issuer: string
  spec_version?: string
  jwks_uri?: string
  delivery_methods_supported: string[]
  configuration_endpoint?: string
  status_endpoint?: string
  add_subject_endpoint?: string
  remove_subject_endpoint?: string
  verification_endpoint?: string
  critical_subject_members: string[]
  /** `spec_urn` of each advertised authorization scheme. */
  authorization_schemes: string[]
  default_subjects?: string
}

export interface UrlPolicy {
  /** Accept `http://` URLs whose host is loopback (127.0.0.0/8, ::1, localhost). Default false. */
  allowHttp?: boolean
}

export interface ValidateMetadataOptions extends UrlPolicy {
  /** The issuer the document was fetched for; `issuer` must equal it exactly. */
  issuer: string
  /** Fail when `jwks_uri` is missing (signed streams need it). Default true. */
  requireJwks?: boolean
}

export interface DiscoverOptions extends UrlPolicy {
  client: HttpClient
  /** Use `/.well-known/risc-configuration` (old RISC transmitters). Default false. */
  legacy?: boolean
  requireJwks?: boolean
  maxBytes?: number
  signal?: AbortSignal
}

const LOOPBACK_HOST = /^(localhost|127(?:\.\d{1,3}){3}|\[::1\])$/i

export function isLoopbackHost(hostname: string): boolean {
  return LOOPBACK_HOST.test(hostname)
}

/**
 * Check one URL from (or for) a transmitter: absolute, https (or loopback http when allowed), no
 * credentials, no fragment. `what` names it in messages. Returns the normalised href.
 */
export function checkTransmitterUrl(value: string, what: string, policy: UrlPolicy = {}): string {
  let url: URL
  try {
    url = new URL(value)
  } catch (error) {
    throw new PushpullError('ERR_PEER_PROTOCOL', `${what} is not an absolute URL: ${JSON.stringify(sanitizeText(value, 120))}`, {cause: error})
  }

  if (url.protocol === 'http:') {
    if (policy.allowHttp !== true) {
      throw new PushpullError('ERR_PEER_PROTOCOL', `${what} ${redactUrl(url)} uses http; SSF requires https (pass --allow-http only for a loopback test transmitter)`, {
        details: {url: redactUrl(url)},
      })
    }

    if (!isLoopbackHost(url.hostname)) {
      throw new PushpullError('ERR_PEER_PROTOCOL', `${what} ${redactUrl(url)} uses http on a non-loopback host; http is only ever accepted for localhost, 127.0.0.0/8 and [::1]`, {
        details: {url: redactUrl(url)},
      })
    }
  } else if (url.protocol !== 'https:') {
    throw new PushpullError('ERR_PEER_PROTOCOL', `${what} must be an https URL, got the scheme ${url.protocol}`)
  }

  if (url.username !== '' || url.password !== '') {
    throw new PushpullError('ERR_PEER_PROTOCOL', `${what} ${redactUrl(url)} carries credentials in the URL`)
  }

  if (url.hash !== '') throw new PushpullError('ERR_PEER_PROTOCOL', `${what} ${redactUrl(url)} has a fragment`)
  return url.href
}

/** Check an issuer identifier given by the user: https (or loopback http when allowed), no query or fragment. */
export function checkIssuer(issuer: string, policy: UrlPolicy = {}): string {
  let url: URL
  try {
    url = new URL(issuer)
  } catch (error) {
    throw new PushpullError('ERR_USAGE', `the issuer ${JSON.stringify(sanitizeText(issuer, 120))} is not an absolute URL`, {cause: error})
  }

  if (url.search !== '' || url.hash !== '') {
    throw new PushpullError('ERR_USAGE', `the issuer ${redactUrl(url)} must not have a query or fragment`)
  }

  try {
    checkTransmitterUrl(issuer, 'the issuer', policy)
  } catch (error) {
    throw new PushpullError('ERR_USAGE', (error as Error).message, {cause: error})
  }

  return issuer
}

/** The metadata URL for `issuer` (SSF 1.0 section 6.2): well-known inserted before the path. */
export function metadataUrl(issuer: string, options: {legacy?: boolean} = {}): string {
  const url = new URL(issuer)
  const name = options.legacy === true ? 'risc-configuration' : 'ssf-configuration'
  const path = url.pathname.replace(/\/+$/, '')
  return `${url.origin}/.well-known/${name}${path}`
}

function stringList(doc: Record<string, unknown>, key: string): string[] {
  const value = ownMember(doc, key)
  if (value === undefined) return []
  if (!Array.isArray(value) || !value.every((item) => typeof item === 'string')) {
    throw new PushpullError('ERR_PEER_PROTOCOL', `transmitter metadata: "${key}" must be an array of strings`)
  }

  return [...(value as string[])]
}

function optionalString(doc: Record<string, unknown>, key: string): string | undefined {
  const value = ownMember(doc, key)
  if (value === undefined) return undefined
  if (typeof value !== 'string' || value === '') {
    throw new PushpullError('ERR_PEER_PROTOCOL', `transmitter metadata: "${key}" must be a non-empty string`)
  }

  return value
}

/** Validate a parsed metadata document. Throws ERR_PEER_PROTOCOL naming the first problem. */
export function validateMetadata(value: unknown, options: ValidateMetadataOptions): TransmitterMetadata {
  if (!isJsonObject(value)) throw new PushpullError('ERR_PEER_PROTOCOL', 'transmitter metadata is not a JSON object')
  const issuer = ownMember(value, 'issuer')
  if (typeof issuer !== 'string' || issuer === '') {
    throw new PushpullError('ERR_PEER_PROTOCOL', 'transmitter metadata has no "issuer"')
  }

  if (issuer !== options.issuer) {
    throw new PushpullError('ERR_PEER_PROTOCOL', `transmitter metadata names the issuer ${JSON.stringify(sanitizeText(issuer, 200))}, not ${JSON.stringify(options.issuer)}; the document must not be used`, {
      details: {expected: options.issuer, got: sanitizeText(issuer, 200)},
    })
  }

  checkTransmitterUrl(issuer, 'the issuer', options)
  const metadata: TransmitterMetadata = {
    authorization_schemes: [],
    critical_subject_members: stringList(value, 'critical_subject_members'),
    delivery_methods_supported: stringList(value, 'delivery_methods_supported'),
    issuer,
  }
  const specVersion = optionalString(value, 'spec_version')
  if (specVersion !== undefined) metadata.spec_version = specVersion
  const jwksUri = optionalString(value, 'jwks_uri')
  if (jwksUri === undefined) {
    if (options.requireJwks !== false) {
      throw new PushpullError('ERR_PEER_PROTOCOL', 'transmitter metadata has no "jwks_uri", so signed SETs from it cannot be verified (use --allow-unsigned only if the stream really is unsigned)')
    }
  } else {
    metadata.jwks_uri = checkTransmitterUrl(jwksUri, 'jwks_uri', options)
  }

  for (const name of ENDPOINT_NAMES) {
    const endpoint = optionalString(value, name)
    if (endpoint !== undefined) metadata[name] = checkTransmitterUrl(endpoint, name, options)
  }

  const schemes = ownMember(value, 'authorization_schemes')
  if (schemes !== undefined) {
    if (!Array.isArray(schemes)) throw new PushpullError('ERR_PEER_PROTOCOL', 'transmitter metadata: "authorization_schemes" must be an array')
    for (const scheme of schemes) {
      const urn = isJsonObject(scheme) ? ownMember(scheme, 'spec_urn') : undefined
      if (typeof urn !== 'string') {
        throw new PushpullError('ERR_PEER_PROTOCOL', 'transmitter metadata: each "authorization_schemes" entry must be an object with a "spec_urn" string')
      }

      metadata.authorization_schemes.push(urn)
    }
  }

  const defaultSubjects = optionalString(value, 'default_subjects')
  if (defaultSubjects !== undefined) metadata.default_subjects = defaultSubjects
  return metadata
}

/**
 * Fetch and validate the transmitter metadata of `issuer`. Throws ERR_USAGE for a bad issuer,
 * transport errors from the client, ERR_PEER_STATUS for a non-200, ERR_PEER_PROTOCOL for a
 * document that is not JSON or fails validation.
 */
export async function discoverTransmitter(issuer: string, options: DiscoverOptions): Promise<TransmitterMetadata> {
  checkIssuer(issuer, options)
  const url = metadataUrl(issuer, options)
  const response = await options.client.request({headers: {accept: 'application/json'}, method: 'GET', signal: options.signal, url})
  if (response.status !== 200) {
    const hint = response.status === 404 && options.legacy !== true ? ' (an old RISC transmitter? try --legacy-risc)' : ''
    throw new PushpullError('ERR_PEER_STATUS', `${url}: the transmitter metadata request answered HTTP ${response.status}${hint}`, {
      details: {status: response.status, url},
    })
  }

  const doc = parseJsonBounded(response.body, {maxBytes: options.maxBytes ?? DEFAULT_MAX_METADATA_BYTES}, {invalid: 'ERR_PEER_PROTOCOL', tooLarge: 'ERR_RESPONSE_TOO_LARGE'})
  return validateMetadata(doc, {allowHttp: options.allowHttp, issuer, requireJwks: options.requireJwks})
}
