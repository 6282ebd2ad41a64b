/**
 * The pushpull HTTP binding (draft-tulshibagwale-saag-pushpull-delivery): POST a Communication
 * Object `{sets?, ack?, setErrs?, maxResponseEvents?}`, the peer answers 200 with a Communication
 * Object. 200 means "parsed", not "accepted": acks and setErrs about our SETs may come in this
 * response or any later one. Works both ways: a `Deliverer` for `send --via pushpull` and a
 * `Poller` for `poll --via pushpull` / `ack --via pushpull`.
 */
import {buildCommunicationObject, type CommunicationLimits, type CommunicationObject, parseCommunicationObject} from '../communication.js'
import {PushpullError} from '../errors.js'
import type {DueSet, OwedReport} from '../ledger.js'
import {redactUrl} from '../transport/http.js'
import {type BindingHttpOptions, checkResponse, previewOf} from './http-common.js'
import {DEFAULT_BATCH} from './multi-push.js'
import type {Deliverer, ExchangeResult, PollParams, Poller, PollResult, RequestPreview} from './types.js'

const HEADERS = Object.freeze({accept: 'application/json', 'content-type': 'application/json'})

export interface PushpullHttpOptions extends BindingHttpOptions {
  /** SETs per request when sending. Default 100. */
  maxBatch?: number
  /** Ask the peer for at most this many SETs per response when sending (`maxResponseEvents`); default: not sent. */
  maxResponseEvents?: number
  limits?: Partial<CommunicationLimits>
}

/** Parse a Communication Object the peer answered: its faults are the peer's (ERR_PEER_PROTOCOL). */
export function parseCommunicationResponse(body: Uint8Array, url: string, limits: Partial<CommunicationLimits>): CommunicationObject {
  try {
    return parseCommunicationObject(body, limits)
  } catch (error) {
    if (error instanceof PushpullError && (error.code === 'ERR_MESSAGE_INVALID' || error.code === 'ERR_LIMIT_EXCEEDED')) {
      const code = error.code === 'ERR_LIMIT_EXCEEDED' ? 'ERR_RESPONSE_TOO_LARGE' : 'ERR_PEER_PROTOCOL'
      throw new PushpullError(code, `${redactUrl(url)} answered 200 with a body that is not a valid Communication Object: ${error.message}`, {
        cause: error,
        details: {status: 200, url: redactUrl(url)},
      })
    }

    throw error
  }
}

function requestBody(sets: readonly DueSet[], owed: OwedReport, maxResponseEvents: number | undefined): string {
  return buildCommunicationObject({
    ack: owed.ack,
    maxResponseEvents,
    setErrs: owed.setErrs,
    sets: sets.map((set) => [set.jti, set.token] as const),
  })
}

export function createPushpullHttpDeliverer(options: PushpullHttpOptions): Deliverer {
  const {client, url} = options
  const limits = {maxBytes: client.maxResponseBytes, ...options.limits}
  return {
    async close() {},
    carriesAcks: true,
    concurrency: 1,
    async exchange(sets: readonly DueSet[], owed: OwedReport, signal: AbortSignal): Promise<ExchangeResult> {
      const body = requestBody(sets, owed, options.maxResponseEvents)
      const response = await client.request({body, headers: HEADERS, method: 'POST', signal, url})
      checkResponse(response, url, 'Communication Object')
      const object = parseCommunicationResponse(response.body, url, limits)
      const result: ExchangeResult = {report: {ack: object.ack, setErrs: object.setErrs}}
      if (object.sets.size > 0 || object.invalidSets.size > 0) result.received = {invalidSets: object.invalidSets, sets: object.sets}
      if (response.retryAfterMs !== undefined) result.retryAfterMs = response.retryAfterMs
      return result
    },
    lateAcks: true,
    maxBatch: options.maxBatch ?? DEFAULT_BATCH,
    name: 'pushpull',
    preview(sets: readonly DueSet[], owed: OwedReport): RequestPreview[] {
      return [previewOf(url, {...HEADERS}, requestBody(sets, owed, options.maxResponseEvents), options.hasToken === true)]
    },
    successStatus: 'acked',
  }
}

export function createPushpullHttpPoller(options: PushpullHttpOptions): Poller {
  const {client, url} = options
  const limits = {maxBytes: client.maxResponseBytes, ...options.limits}
  const bodyOf = (params: PollParams): string => requestBody([], params.owed, params.maxEvents)
  return {
    async acknowledge(owed: OwedReport, signal: AbortSignal): Promise<void> {
      const body = buildCommunicationObject({ack: owed.ack, maxResponseEvents: 0, setErrs: owed.setErrs})
      const response = await client.request({body, headers: HEADERS, method: 'POST', signal, url})
      checkResponse(response, url, 'ack-only Communication Object')
    },
    async close() {},
    name: 'pushpull',
    async poll(params: PollParams, signal: AbortSignal): Promise<PollResult> {
      const response = await client.request({body: bodyOf(params), headers: HEADERS, method: 'POST', signal, url})
      checkResponse(response, url, 'Communication Object')
      const object = parseCommunicationResponse(response.body, url, limits)
      return {
        moreAvailable: false,
        received: {invalidSets: object.invalidSets, sets: object.sets},
        report: {ack: object.ack, setErrs: object.setErrs},
      }
    },
    preview(params: PollParams): RequestPreview {
      return previewOf(url, {...HEADERS}, bodyOf(params), options.hasToken === true)
    },
  }
}
