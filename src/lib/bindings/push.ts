/**
 * RFC 8935 push: one SET per POST (`Content-Type: application/secevent+jwt`). 202 (any 2xx) means
 * accepted; 400 with `{err, description}` rejects that SET (not retried). Other statuses throw
 * (see checkResponse). Push has no way to carry acks we owe, so `owed` is ignored.
 */
import {MISSING_ERR} from '../communication.js'
import type {DueSet, OwedReport} from '../ledger.js'
import {bodyExcerpt, type BindingHttpOptions, checkResponse, errorBodyOf, previewOf} from './http-common.js'
import {type Deliverer, emptyOwed, type ExchangeResult, type RequestPreview} from './types.js'

export const DEFAULT_PUSH_CONCURRENCY = 4

const HEADERS = Object.freeze({accept: 'application/json', 'content-type': 'application/secevent+jwt'})

export interface PushDelivererOptions extends BindingHttpOptions {
  /** Requests in flight at once. Default 4. */
  concurrency?: number
}

export function createPushDeliverer(options: PushDelivererOptions): Deliverer {
  const {client, url} = options
  const concurrency = options.concurrency ?? DEFAULT_PUSH_CONCURRENCY

  async function pushOne(set: DueSet, signal: AbortSignal, result: ExchangeResult): Promise<void> {
    const response = await client.request({body: set.token, headers: HEADERS, method: 'POST', signal, url})
    if (response.status >= 200 && response.status <= 299) {
      result.report.ack.push(set.jti)
      return
    }

    const peerErr = errorBodyOf(response)
    if (response.status === 400 && peerErr?.err !== 'authentication_failed' && peerErr?.err !== 'access_denied') {
      result.report.setErrs.set(set.jti, peerErr ?? {description: `HTTP 400 without an {err, description} body: ${bodyExcerpt(response)}`, err: MISSING_ERR})
      return
    }

    checkResponse(response, url, 'SET push')
  }

  return {
    async close() {},
    carriesAcks: false,
    concurrency,
    async exchange(sets: readonly DueSet[], _owed: OwedReport, signal: AbortSignal): Promise<ExchangeResult> {
      const result: ExchangeResult = {report: {...emptyOwed()}}
      // One SET per request; the sender runs `concurrency` exchanges at once.
      for (const set of sets) await pushOne(set, signal, result)
      return result
    },
    lateAcks: false,
    maxBatch: 1,
    name: 'push',
    preview(sets: readonly DueSet[]): RequestPreview[] {
      return sets.map((set) => previewOf(url, {...HEADERS}, set.token, options.hasToken === true))
    },
    successStatus: 'accepted',
  }
}
