/** Human rendering of SSF metadata, stream configurations and statuses (tables; --json skips this). */
import Table from 'cli-table3'

import {shortNameOf} from '../lib/events.js'
import type {StreamConfig, StreamStatus} from '../lib/ssf/client.js'
import type {TransmitterMetadata} from '../lib/ssf/metadata.js'
import {sanitizeText} from '../lib/text.js'

const METHOD_NAMES: Readonly<Record<string, string>> = {
  'urn:ietf:rfc:8935': 'push (RFC 8935)',
  'urn:ietf:rfc:8936': 'poll (RFC 8936)',
}

function clean(value: string): string {
  return sanitizeText(value, 300)
}

export function methodName(uri: string): string {
  return METHOD_NAMES[uri] ?? clean(uri)
}

function events(list: readonly string[] | undefined): string {
  if (list === undefined) return '-'
  if (list.length === 0) return '(none)'
  return list.map((uri) => shortNameOf(uri) ?? clean(uri)).join('\n')
}

function table(rows: Array<[string, string]>): string {
  const out = new Table({style: {border: [], head: []}, wordWrap: true})
  for (const [name, value] of rows) out.push({[name]: value})
  return out.toString()
}

export function renderMetadata(metadata: TransmitterMetadata): string {
  const rows: Array<[string, string]> = [['issuer', clean(metadata.issuer)]]
  if (metadata.spec_version !== undefined) rows.push(['spec_version', clean(metadata.spec_version)])
  rows.push(['jwks_uri', metadata.jwks_uri === undefined ? '(none: SETs cannot be verified)' : clean(metadata.jwks_uri)])
  rows.push(['delivery methods', metadata.delivery_methods_supported.length === 0 ? '(not advertised)' : metadata.delivery_methods_supported.map(methodName).join('\n')])
  for (const name of ['configuration_endpoint', 'status_endpoint', 'add_subject_endpoint', 'remove_subject_endpoint', 'verification_endpoint'] as const) {
    rows.push([name, metadata[name] === undefined ? '(not offered)' : clean(metadata[name] as string)])
  }

  rows.push(['authorization', metadata.authorization_schemes.length === 0 ? '(not advertised)' : metadata.authorization_schemes.map(clean).join('\n')])
  if (metadata.critical_subject_members.length > 0) rows.push(['critical subject members', metadata.critical_subject_members.map(clean).join(', ')])
  if (metadata.default_subjects !== undefined) rows.push(['default_subjects', clean(metadata.default_subjects)])
  return table(rows)
}

export function renderStream(config: StreamConfig): string {
  const rows: Array<[string, string]> = [
    ['stream_id', clean(config.stream_id)],
    ['iss', clean(config.iss)],
    ['aud', (Array.isArray(config.aud) ? config.aud : [config.aud]).map(clean).join('\n')],
    ['delivery', methodName(config.delivery.method)],
  ]
  if (config.delivery.endpoint_url !== undefined) {
    rows.push([config.delivery.method === 'urn:ietf:rfc:8936' ? 'poll endpoint' : 'push endpoint', clean(config.delivery.endpoint_url)])
  }

  if (config.delivery.authorization_header !== undefined) rows.push(['authorization_header', '(set; not shown)'])
  if (config.description !== undefined) rows.push(['description', clean(config.description)])
  rows.push(['events_delivered', events(config.events_delivered)], ['events_requested', events(config.events_requested)])
  if (config.min_verification_interval !== undefined) rows.push(['min_verification_interval', `${config.min_verification_interval} s`])
  if (config.inactivity_timeout !== undefined) rows.push(['inactivity_timeout', `${config.inactivity_timeout} s`])
  return table(rows)
}

export function renderStreamList(configs: readonly StreamConfig[]): string {
  if (configs.length === 0) return 'no streams'
  const out = new Table({head: ['stream_id', 'delivery', 'endpoint', 'events delivered', 'description'], style: {border: [], head: []}, wordWrap: true})
  for (const config of configs) {
    out.push([clean(config.stream_id), methodName(config.delivery.method), clean(config.delivery.endpoint_url ?? '-'), String(config.events_delivered.length), clean(config.description ?? '')])
  }

  return out.toString()
}

export function renderStatus(status: StreamStatus): string {
  return `stream ${clean(status.stream_id)}: ${clean(status.status)}${status.reason === undefined ? '' : ` (${clean(status.reason)})`}`
}

/** A stream config for --json output: the push authorization header is a credential, never printed. */
export function redactStream(config: StreamConfig): StreamConfig {
  if (config.delivery.authorization_header === undefined) return config
  return {...config, delivery: {...config.delivery, authorization_header: '(redacted)'}}
}
