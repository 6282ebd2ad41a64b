/**
 * RFC 8936 poll: POST `{maxEvents?, returnImmediately?, ack?, setErrs?}` to the transmitter; it
 * answers 200 `{sets, moreAvailable?}` (holding the request for a long poll unless
 * `returnImmediately`). Acks and setErrs for SETs received earlier ride on the next request; an
 * ack-only request is `maxEvents: 0, returnImmediately: true`.
 */
import {buildPollRequest, type CommunicationLimits, parsePollResponse} from '../communication.js'
import type {OwedReport} from '../ledger.js'
import {type BindingHttpOptions, checkResponse, previewOf} from './http-common.js'
import type {PollParams, Poller, PollResult, RequestPreview} from './types.js'

const HEADERS = Object.freeze({accept: 'application/json', 'content-type': 'application/json'})

export interface PollBindingOptions extends BindingHttpOptions {
  limits?: Partial<CommunicationLimits>
}

export function createRfc8936Poller(options: PollBindingOptions): Poller {
  const {client, url} = options
  const limits = {maxBytes: client.maxResponseBytes, ...options.limits}
  const bodyOf = (params: PollParams): string =>
    buildPollRequest({ack: params.owed.ack, maxEvents: params.maxEvents, returnImmediately: params.returnImmediately, setErrs: params.owed.setErrs})
  return {
    async acknowledge(owed: OwedReport, signal: AbortSignal): Promise<void> {
      const body = buildPollRequest({ack: owed.ack, maxEvents: 0, returnImmediately: true, setErrs: owed.setErrs})
      const response = await client.request({body, headers: HEADERS, method: 'POST', signal, url})
      checkResponse(response, url, 'ack-only poll request')
    },
    async close() {},
    name: 'poll',
    async poll(params: PollParams, signal: AbortSignal): Promise<PollResult> {
      const response = await client.request({body: bodyOf(params), headers: HEADERS, method: 'POST', signal, url})
      checkResponse(response, url, 'poll request')
      const parsed = parsePollResponse(response.body, limits)
      return {moreAvailable: parsed.moreAvailable, received: {invalidSets: parsed.invalidSets, sets: parsed.sets}}
    },
    preview(params: PollParams): RequestPreview {
      return previewOf(url, {...HEADERS}, bodyOf(params), options.hasToken === true)
    },
  }
}
