/**
 * The receiver side of the SSF 1.0 stream management API, over the project's HTTP client.
 *
 * One method per operation; each checks the transmitter's status code against what the
 * specification allows and the body against the stream configuration rules:
 *
 * | operation        | request                                   | success           |
 * |------------------|-------------------------------------------|-------------------|
 * | list / get       | GET configuration_endpoint[?stream_id=]   | 200 array / object|
 * | create           | POST configuration_endpoint               | 201 (200 tolerated)|
 * | update           | PATCH configuration_endpoint              | 200, 202 pending  |
 * | replace          | PUT configuration_endpoint                | 200, 202 pending  |
 * | delete           | DELETE configuration_endpoint?stream_id=  | 204 (200 tolerated)|
 * | status get / set | GET status_endpoint?stream_id= / POST     | 200 (set: 202)    |
 * | subjects add     | POST add_subject_endpoint                 | 200 (204 tolerated)|
 * | subjects remove  | POST remove_subject_endpoint              | 204 (200 tolerated)|
 * | verify           | POST verification_endpoint                | 204 (200 tolerated)|
 *
 * Errors: 401/403 -> ERR_CREDENTIALS; 400, 404, 409 -> ERR_PEER_REJECTED with a message naming
 * what the status means for that operation; 429 and anything else -> ERR_PEER_STATUS (with
 * `retryAfterMs` when the transmitter sent Retry-After). `details.status` always carries the status.
 */
import {PushpullError} from '../errors.js'
import {isJsonObject, ownMember, parseJsonBounded} from '../json.js'
import {sanitizeText} from '../text.js'
import type {HttpClient, HttpMethod, HttpResponse} from '../transport/http.js'
import {DEFAULT_MAX_METADATA_BYTES, type EndpointName, type TransmitterMetadata} from './metadata.js'

export const STREAM_STATUSES = ['enabled', 'paused', 'disabled'] as const
export type StreamStatusValue = (typeof STREAM_STATUSES)[number]

export interface StreamDelivery {
  method: string
  endpoint_url?: string
  /** Push only: the Authorization header value the transmitter sends with each push. */
  authorization_header?: string
}

export interface StreamConfig {
  stream_id: string
  iss: string
  aud: string | string[]
  events_supported?: string[]
  events_requested?: string[]
  events_delivered: string[]
  delivery: StreamDelivery
  min_verification_interval?: number
  description?: string
  inactivity_timeout?: number
}

/** What a receiver may send on create / update / replace (Receiver-Supplied members, plus stream_id). */
export interface StreamConfigInput {
  stream_id?: string
  events_requested?: string[]
  delivery?: StreamDelivery
  description?: string
}

export interface StreamStatus {
  stream_id: string
  status: string
  reason?: string
}

export type SubjectInput = Record<string, unknown>

export interface SsfClientOptions {
  client: HttpClient
  metadata: TransmitterMetadata
  /** Largest management response read as JSON, in bytes. Default 256 KiB. */
  maxBytes?: number
  signal?: AbortSignal
}

/** A result for update/replace/status-set that the transmitter accepted but did not process yet (202). */
export interface Pending {
  pending: true
}

export function isPending(value: unknown): value is Pending {
  return isJsonObject(value) && value.pending === true
}

const OPERATION_404: Readonly<Record<string, string>> = {
  'add subject': 'no such stream, or the transmitter does not recognise the subject',
  'remove subject': 'no such stream, or the transmitter does not recognise the subject',
  'status get': 'no such stream for this receiver (or the subject is not known)',
}

/** The peer's `description`/`err`/`message` from an error body, cleaned for display. */
function peerReason(response: HttpResponse): string {
  let value: unknown
  try {
    value = parseJsonBounded(response.body, {maxBytes: 64 * 1024})
  } catch {
    const text = response.body.toString('utf8').trim()
    return text === '' || /^\s*</.test(text) ? '' : `: ${sanitizeText(text, 200)}`
  }

  if (!isJsonObject(value)) return ''
  const parts = ['err', 'error', 'description', 'error_description', 'message']
    .map((key) => ownMember(value, key))
    .filter((item): item is string => typeof item === 'string' && item !== '')
  return parts.length === 0 ? '' : `: ${sanitizeText(parts.join(' - '), 300)}`
}

/** Map a status the operation does not accept to a PushpullError. */
export function statusError(operation: string, url: string, response: HttpResponse, streamId?: string): PushpullError {
  const {status} = response
  const reason = peerReason(response)
  const details: Record<string, unknown> = {operation, status, url}
  if (streamId !== undefined) details.streamId = streamId
  if (status === 401 || status === 403) {
    const what = status === 401 ? 'did not accept the bearer token' : 'does not allow this receiver to do that'
    return new PushpullError('ERR_CREDENTIALS', `${operation}: the transmitter ${what} (HTTP ${status})${reason}; check --token / --token-file`, {details})
  }

  if (status === 404) {
    const what = OPERATION_404[operation] ?? (streamId === undefined ? 'no stream for this receiver' : `no stream "${sanitizeText(streamId, 100)}" for this receiver`)
    return new PushpullError('ERR_PEER_REJECTED', `${operation}: ${what} (HTTP 404)${reason}`, {details})
  }

  if (status === 409) {
    return new PushpullError(
      'ERR_PEER_REJECTED',
      `${operation}: the transmitter allows one stream per receiver and one already exists (HTTP 409)${reason}; see it with "pushpull ssf streams list", then update or replace it`,
      {details},
    )
  }

  if (status === 400) {
    return new PushpullError('ERR_PEER_REJECTED', `${operation}: the transmitter rejected the request as invalid (HTTP 400)${reason}`, {details})
  }

  if (status === 429) {
    const wait = response.retryAfterMs === undefined ? '' : `; it asks to wait ${Math.ceil(response.retryAfterMs / 1000)} s`
    return new PushpullError('ERR_PEER_STATUS', `${operation}: the transmitter says too many requests (HTTP 429)${wait}${reason}`, {
      details: response.retryAfterMs === undefined ? details : {...details, retryAfterMs: response.retryAfterMs},
    })
  }

  return new PushpullError('ERR_PEER_STATUS', `${operation}: unexpected HTTP ${status} from the transmitter${reason}`, {details})
}

function stringArray(value: unknown, where: string): string[] | undefined {
  if (value === undefined) return undefined
  if (!Array.isArray(value) || !value.every((item) => typeof item === 'string')) {
    throw new PushpullError('ERR_PEER_PROTOCOL', `${where} must be an array of strings`)
  }

  return [...(value as string[])]
}

/**
 * Check one stream configuration from the transmitter: `stream_id`, `iss` equal to the issuer we
 * discovered, `aud` present, `events_delivered` an array, `delivery.method` a string.
 */
export function validateStreamConfig(value: unknown, issuer: string, where = 'stream configuration'): StreamConfig {
  if (!isJsonObject(value)) throw new PushpullError('ERR_PEER_PROTOCOL', `${where} is not a JSON object`)
  const streamId = ownMember(value, 'stream_id')
  if (typeof streamId !== 'string' || streamId === '') throw new PushpullError('ERR_PEER_PROTOCOL', `${where} has no "stream_id" string`)
  const iss = ownMember(value, 'iss')
  if (iss !== issuer) {
    throw new PushpullError('ERR_PEER_PROTOCOL', `${where} ${sanitizeText(streamId, 80)}: "iss" is ${JSON.stringify(typeof iss === 'string' ? sanitizeText(iss, 200) : iss ?? null)}, not the discovered issuer ${JSON.stringify(issuer)}`, {
      details: {expected: issuer, streamId},
    })
  }

  const aud = ownMember(value, 'aud')
  const audOk = (typeof aud === 'string' && aud !== '') || (Array.isArray(aud) && aud.length > 0 && aud.every((item) => typeof item === 'string'))
  if (!audOk) throw new PushpullError('ERR_PEER_PROTOCOL', `${where} ${sanitizeText(streamId, 80)}: "aud" must be a string or a non-empty array of strings`)
  const delivered = stringArray(ownMember(value, 'events_delivered'), `${where}: "events_delivered"`)
  if (delivered === undefined) throw new PushpullError('ERR_PEER_PROTOCOL', `${where} ${sanitizeText(streamId, 80)}: "events_delivered" is missing`)
  const delivery = ownMember(value, 'delivery')
  const method = isJsonObject(delivery) ? ownMember(delivery, 'method') : undefined
  if (!isJsonObject(delivery) || typeof method !== 'string') {
    throw new PushpullError('ERR_PEER_PROTOCOL', `${where} ${sanitizeText(streamId, 80)}: "delivery" must be an object with a "method" string`)
  }

  const config: StreamConfig = {
    aud: typeof aud === 'string' ? aud : [...(aud as string[])],
    delivery: {method},
    events_delivered: delivered,
    iss: issuer,
    stream_id: streamId,
  }
  const endpoint = ownMember(delivery, 'endpoint_url')
  if (endpoint !== undefined) {
    if (typeof endpoint !== 'string') throw new PushpullError('ERR_PEER_PROTOCOL', `${where}: "delivery.endpoint_url" must be a string`)
    config.delivery.endpoint_url = endpoint
  }

  const authorization = ownMember(delivery, 'authorization_header')
  if (typeof authorization === 'string') config.delivery.authorization_header = authorization
  const supported = stringArray(ownMember(value, 'events_supported'), `${where}: "events_supported"`)
  if (supported !== undefined) config.events_supported = supported
  const requested = stringArray(ownMember(value, 'events_requested'), `${where}: "events_requested"`)
  if (requested !== undefined) config.events_requested = requested
  for (const key of ['min_verification_interval', 'inactivity_timeout'] as const) {
    const number = ownMember(value, key)
    if (number === undefined) continue
    if (typeof number !== 'number' || !Number.isInteger(number) || number < 0) {
      throw new PushpullError('ERR_PEER_PROTOCOL', `${where}: "${key}" must be a non-negative integer`)
    }

    config[key] = number
  }

  const description = ownMember(value, 'description')
  if (typeof description === 'string') config.description = description
  return config
}

export function validateStreamStatus(value: unknown, streamId: string): StreamStatus {
  if (!isJsonObject(value)) throw new PushpullError('ERR_PEER_PROTOCOL', 'the stream status is not a JSON object')
  const status = ownMember(value, 'status')
  if (typeof status !== 'string' || status === '') throw new PushpullError('ERR_PEER_PROTOCOL', 'the stream status has no "status" string')
  const id = ownMember(value, 'stream_id')
  if (id !== undefined && id !== streamId) {
    throw new PushpullError('ERR_PEER_PROTOCOL', `the status answer is for stream ${JSON.stringify(sanitizeText(String(id), 80))}, not ${JSON.stringify(streamId)}`)
  }

  const result: StreamStatus = {status: sanitizeText(status, 40), stream_id: streamId}
  const reason = ownMember(value, 'reason')
  if (typeof reason === 'string') result.reason = sanitizeText(reason, 300)
  return result
}

export class SsfClient {
  readonly metadata: TransmitterMetadata
  private readonly http: HttpClient
  private readonly maxBytes: number
  private readonly signal: AbortSignal | undefined

  constructor(options: SsfClientOptions) {
    this.http = options.client
    this.metadata = options.metadata
    this.maxBytes = options.maxBytes ?? DEFAULT_MAX_METADATA_BYTES
    this.signal = options.signal
  }

  private endpoint(name: EndpointName, operation: string): string {
    const url = this.metadata[name]
    if (url === undefined) {
      throw new PushpullError('ERR_PEER_PROTOCOL', `${operation}: the transmitter metadata has no "${name}", so it does not offer this operation`)
    }

    return url
  }

  private async send(method: HttpMethod, url: string, body?: unknown): Promise<HttpResponse> {
    const headers: Record<string, string> = {accept: 'application/json'}
    if (body !== undefined) headers['content-type'] = 'application/json'
    return this.http.request({body: body === undefined ? undefined : JSON.stringify(body), headers, method, signal: this.signal, url})
  }

  private json(response: HttpResponse, _operation: string): unknown {
    return parseJsonBounded(response.body, {maxBytes: this.maxBytes}, {invalid: 'ERR_PEER_PROTOCOL', tooLarge: 'ERR_RESPONSE_TOO_LARGE'})
  }

  private withQuery(url: string, streamId: string): string {
    const parsed = new URL(url)
    parsed.searchParams.set('stream_id', streamId)
    return parsed.href
  }

  /** Every stream this receiver may see (GET without stream_id). */
  async listStreams(): Promise<StreamConfig[]> {
    const operation = 'streams list'
    const url = this.endpoint('configuration_endpoint', operation)
    const response = await this.send('GET', url)
    if (response.status !== 200) throw statusError(operation, url, response)
    const value = this.json(response, operation)
    // Some transmitters answer a single object when only one stream exists; accept it.
    const items = Array.isArray(value) ? value : [value]
    return items.map((item, index) => validateStreamConfig(item, this.metadata.issuer, `stream configuration [${index}]`))
  }

  async getStream(streamId: string): Promise<StreamConfig> {
    const operation = 'streams get'
    const url = this.endpoint('configuration_endpoint', operation)
    const response = await this.send('GET', this.withQuery(url, streamId))
    if (response.status !== 200) throw statusError(operation, url, response, streamId)
    let value = this.json(response, operation)
    if (Array.isArray(value) && value.length === 1) value = value[0]
    const config = validateStreamConfig(value, this.metadata.issuer)
    if (config.stream_id !== streamId) {
      throw new PushpullError('ERR_PEER_PROTOCOL', `${operation}: asked for stream ${JSON.stringify(streamId)} but got ${JSON.stringify(sanitizeText(config.stream_id, 80))}`)
    }

    return config
  }

  async createStream(input: StreamConfigInput): Promise<StreamConfig> {
    const operation = 'streams create'
    const url = this.endpoint('configuration_endpoint', operation)
    const response = await this.send('POST', url, input)
    if (response.status !== 201 && response.status !== 200) throw statusError(operation, url, response)
    const config = validateStreamConfig(this.json(response, operation), this.metadata.issuer)
    const requested = input.delivery?.method ?? 'urn:ietf:rfc:8936'
    if (config.delivery.method !== requested) {
      throw new PushpullError('ERR_PEER_PROTOCOL', `${operation}: asked for delivery ${requested} but the transmitter configured ${sanitizeText(config.delivery.method, 100)} (stream ${config.stream_id})`, {
        details: {streamId: config.stream_id},
      })
    }

    if (config.delivery.method === 'urn:ietf:rfc:8936' && config.delivery.endpoint_url === undefined) {
      throw new PushpullError('ERR_PEER_PROTOCOL', `${operation}: the transmitter created poll stream ${config.stream_id} without a "delivery.endpoint_url" to poll`, {
        details: {streamId: config.stream_id},
      })
    }

    return config
  }

  /** PATCH: only the members given change. */
  async updateStream(input: StreamConfigInput & {stream_id: string}): Promise<StreamConfig | Pending> {
    return this.change('PATCH', 'streams update', input)
  }

  /** PUT: Receiver-Supplied members left out are deleted. */
  async replaceStream(input: StreamConfigInput & {stream_id: string}): Promise<StreamConfig | Pending> {
    return this.change('PUT', 'streams replace', input)
  }

  private async change(method: 'PATCH' | 'PUT', operation: string, input: StreamConfigInput & {stream_id: string}): Promise<StreamConfig | Pending> {
    const url = this.endpoint('configuration_endpoint', operation)
    const response = await this.send(method, url, input)
    if (response.status === 202) return {pending: true}
    if (response.status !== 200) throw statusError(operation, url, response, input.stream_id)
    return validateStreamConfig(this.json(response, operation), this.metadata.issuer)
  }

  async deleteStream(streamId: string): Promise<void> {
    const operation = 'streams delete'
    const url = this.endpoint('configuration_endpoint', operation)
    const response = await this.send('DELETE', this.withQuery(url, streamId))
    if (response.status !== 204 && response.status !== 200) throw statusError(operation, url, response, streamId)
  }

  async getStatus(streamId: string): Promise<StreamStatus> {
    const operation = 'status get'
    const url = this.endpoint('status_endpoint', operation)
    const response = await this.send('GET', this.withQuery(url, streamId))
    if (response.status !== 200) throw statusError(operation, url, response, streamId)
    return validateStreamStatus(this.json(response, operation), streamId)
  }

  async setStatus(streamId: string, status: string, reason?: string): Promise<StreamStatus | Pending> {
    const operation = 'status set'
    const url = this.endpoint('status_endpoint', operation)
    const body: Record<string, unknown> = {status, stream_id: streamId}
    if (reason !== undefined) body.reason = reason
    const response = await this.send('POST', url, body)
    if (response.status === 202) return {pending: true}
    if (response.status !== 200) throw statusError(operation, url, response, streamId)
    const result = validateStreamStatus(this.json(response, operation), streamId)
    return result
  }

  async addSubject(streamId: string, subject: SubjectInput, verified?: boolean): Promise<void> {
    const operation = 'add subject'
    const url = this.endpoint('add_subject_endpoint', operation)
    const body: Record<string, unknown> = {stream_id: streamId, subject}
    if (verified !== undefined) body.verified = verified
    const response = await this.send('POST', url, body)
    if (response.status !== 200 && response.status !== 204) throw statusError(operation, url, response, streamId)
  }

  async removeSubject(streamId: string, subject: SubjectInput): Promise<void> {
    const operation = 'remove subject'
    const url = this.endpoint('remove_subject_endpoint', operation)
    const response = await this.send('POST', url, {stream_id: streamId, subject})
    if (response.status !== 204 && response.status !== 200) throw statusError(operation, url, response, streamId)
  }

  /** Ask for a verification event carrying `state` (204 means "will be sent", not "was sent"). */
  async requestVerification(streamId: string, state?: string): Promise<void> {
    const operation = 'verify'
    const url = this.endpoint('verification_endpoint', operation)
    const body: Record<string, unknown> = {stream_id: streamId}
    if (state !== undefined) body.state = state
    const response = await this.send('POST', url, body)
    if (response.status !== 204 && response.status !== 200) throw statusError(operation, url, response, streamId)
  }
}
