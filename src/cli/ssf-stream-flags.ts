/** Flags for the Receiver-Supplied members of a stream (create / update / replace). */
import {Flags} from '@oclif/core'

import {PushpullError} from '../lib/errors.js'
import {resolveEventUri} from '../lib/events.js'
import type {StreamConfigInput, StreamDelivery} from '../lib/ssf/client.js'
import {DELIVERY_POLL, DELIVERY_PUSH} from '../lib/ssf/metadata.js'
import {readTokenFile} from './transport-flags.js'

const GROUP = 'STREAM'

export const streamConfigFlags = {
  description: Flags.string({description: 'Human description of the stream (Receiver-Supplied "description").', helpGroup: GROUP}),
  event: Flags.string({
    description: 'Event type to request (repeatable): a short name such as caep.session-revoked or ssf.verification, or a full URI.',
    helpGroup: GROUP,
    multiple: true,
  }),
  poll: Flags.boolean({description: 'Poll delivery (RFC 8936): the transmitter assigns the poll endpoint.', exclusive: ['push'], helpGroup: GROUP}),
  push: Flags.string({description: 'Push delivery (RFC 8935) to this receiver URL (https; http only for loopback with --allow-http).', exclusive: ['poll'], helpGroup: GROUP, helpValue: 'URL'}),
  'push-token': Flags.string({
    description: 'Bearer token the transmitter must send with each push (registered as delivery.authorization_header "Bearer ..."; the listener then requires it).',
    env: 'PUSHPULL_PUSH_TOKEN',
    exclusive: ['push-token-file'],
    helpGroup: GROUP,
  }),
  'push-token-file': Flags.string({description: 'Read the push bearer token from this file.', exclusive: ['push-token'], helpGroup: GROUP}),
}

export interface StreamConfigFlagValues {
  description?: string
  event?: string[]
  poll?: boolean
  push?: string
  'push-token'?: string
  'push-token-file'?: string
}

/** Build the Receiver-Supplied members from the flags; `defaultPoll` puts poll delivery in when neither --poll nor --push is given. */
export async function streamInputFrom(flags: StreamConfigFlagValues, warn: (message: string) => void, defaultPoll: boolean): Promise<StreamConfigInput> {
  const input: StreamConfigInput = {}
  let pushToken = flags['push-token']
  if (flags['push-token-file'] !== undefined) pushToken = await readTokenFile(flags['push-token-file'], warn)
  if (pushToken !== undefined && flags.push === undefined) throw new PushpullError('ERR_USAGE', '--push-token needs --push URL')
  if (pushToken !== undefined && !/^[\u0021-\u007E]+$/.test(pushToken)) throw new PushpullError('ERR_USAGE', 'the push token contains spaces or control characters')
  if (flags.push !== undefined) {
    const delivery: StreamDelivery = {endpoint_url: flags.push, method: DELIVERY_PUSH}
    if (pushToken !== undefined) delivery.authorization_header = `Bearer ${pushToken}`
    input.delivery = delivery
  } else if (flags.poll === true || defaultPoll) {
    input.delivery = {method: DELIVERY_POLL}
  }

  if (flags.event !== undefined && flags.event.length > 0) input.events_requested = flags.event.map((name) => resolveEventUri(name))
  if (flags.description !== undefined) input.description = flags.description
  return input
}
