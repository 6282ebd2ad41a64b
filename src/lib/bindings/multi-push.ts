/**
 * Multi-SET push (draft-deshpande-secevent-http-multi-set-push): POST
 * `application/secevents+json` `{"sets": {...}}`; the receiver answers 202 `{ack, setErrs?}`.
 * Acks may come late: an empty `{"sets": {}}` asks for them. The binding has no member for acks we
 * owe, so `owed` is ignored.
 */
import {buildMultiPushRequest, type CommunicationLimits, parseMultiPushResponse} from '../communication.js'
import type {DueSet, OwedReport} from '../ledger.js'
import {type BindingHttpOptions, checkResponse, previewOf} from './http-common.js'
import type {Deliverer, ExchangeResult, RequestPreview} from './types.js'

/** SETs per request unless `--batch` says otherwise. */
export const DEFAULT_BATCH = 100

const HEADERS = Object.freeze({accept: 'application/json', 'content-type': 'application/secevents+json'})

export interface MultiPushDelivererOptions extends BindingHttpOptions {
  /** SETs per request. Default 100. */
  maxBatch?: number
  limits?: Partial<CommunicationLimits>
}

export function createMultiPushDeliverer(options: MultiPushDelivererOptions): Deliverer {
  const {client, url} = options
  const limits = {maxBytes: client.maxResponseBytes, ...options.limits}
  const bodyOf = (sets: readonly DueSet[]): string => buildMultiPushRequest({sets: sets.map((set) => [set.jti, set.token] as const)})
  return {
    async close() {},
    carriesAcks: false,
    concurrency: 1,
    async exchange(sets: readonly DueSet[], _owed: OwedReport, signal: AbortSignal): Promise<ExchangeResult> {
      const response = await client.request({body: bodyOf(sets), headers: HEADERS, method: 'POST', signal, url})
      checkResponse(response, url, 'multi-SET push')
      const parsed = parseMultiPushResponse(response.body, limits)
      return {report: {ack: parsed.ack, setErrs: parsed.setErrs}, ...(response.retryAfterMs === undefined ? {} : {retryAfterMs: response.retryAfterMs})}
    },
    lateAcks: true,
    maxBatch: options.maxBatch ?? DEFAULT_BATCH,
    name: 'multi-push',
    preview(sets: readonly DueSet[]): RequestPreview[] {
      return [previewOf(url, {...HEADERS}, bodyOf(sets), options.hasToken === true)]
    },
    successStatus: 'acked',
  }
}
