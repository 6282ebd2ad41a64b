/**
 * What every client binding shares. Two roles:
 *
 * - A `Deliverer` sends SETs from our outbox (RFC 8935 push, multi-SET push, pushpull HTTP, and
 *   the WebSocket binding added by `send --via ws`). `src/lib/sender.ts` drives it: take due SETs
 *   from the ledger, `exchange` them, apply the report, retry on failures.
 * - A `Poller` fetches SETs from a transmitter (RFC 8936 poll, pushpull HTTP) and reports back
 *   what we owe it (acks and setErrs).
 *
 * Failures are thrown as PushpullError: ERR_CREDENTIALS for 401/403; ERR_PEER_STATUS with
 * `details.status` (and `details.retryAfterMs`) for statuses the binding does not allow;
 * ERR_PEER_PROTOCOL for a response body that is not what the binding specifies; transport codes
 * from the HTTP client. A per-SET refusal is not a throw: it is a setErr in the report.
 */
import type {SetErr} from '../communication.js'
import type {DueSet, OwedReport} from '../ledger.js'
import type {ReceiveBatch} from '../receiver.js'

/** What the peer said about SETs we sent: acks and setErrs (may name SETs from earlier exchanges). */
export interface PeerReport {
  ack: string[]
  setErrs: Map<string, SetErr>
}

export interface ExchangeResult {
  report: PeerReport
  /** SETs the peer sent us in the same exchange (pushpull): receive them or leave them unacked. */
  received?: ReceiveBatch
  /** The peer asked us to wait (Retry-After on a success, rare). */
  retryAfterMs?: number
}

/** A request as `--dry-run` shows it: never carries the bearer token. */
export interface RequestPreview {
  method: string
  url: string
  headers: Record<string, string>
  body: string
}

export interface Deliverer {
  /** The `--via` name. */
  readonly name: string
  /** Most SETs per exchange (1 for RFC 8935 push). */
  readonly maxBatch: number
  /** Exchanges that may run at once (push runs several; batching bindings run one). */
  readonly concurrency: number
  /** The status a SET gets when the peer takes it: `accepted` (push 202) or `acked`. */
  readonly successStatus: 'accepted' | 'acked'
  /** The peer may ack later: an exchange with no SETs asks for late acks. */
  readonly lateAcks: boolean
  /** Requests carry acks/setErrs we owe the peer (pushpull); push and multi-SET push cannot. */
  readonly carriesAcks: boolean
  /** Send `sets` (may be empty) plus the acks/setErrs we owe the peer; resolve with its report. */
  exchange(sets: readonly DueSet[], owed: OwedReport, signal: AbortSignal): Promise<ExchangeResult>
  /** The requests `exchange` would send (for --dry-run). */
  preview(sets: readonly DueSet[], owed: OwedReport): RequestPreview[]
  close(): Promise<void>
}

export interface PollParams {
  /** Acks and setErrs we owe the transmitter. */
  owed: OwedReport
  /** Most SETs wanted in the response (RFC 8936 maxEvents / pushpull maxResponseEvents). */
  maxEvents?: number
  /** Answer at once instead of holding the request (RFC 8936); pushpull HTTP always answers at once. */
  returnImmediately?: boolean
}

export interface PollResult {
  received: ReceiveBatch
  /** The transmitter has more SETs (RFC 8936 moreAvailable). */
  moreAvailable: boolean
  /** Acks/setErrs the peer sent about SETs we sent it (pushpull only). */
  report?: PeerReport
}

export interface Poller {
  readonly name: string
  /** One poll request: report `owed`, fetch up to `maxEvents` SETs. */
  poll(params: PollParams, signal: AbortSignal): Promise<PollResult>
  /** One ack-only request (`maxEvents: 0, returnImmediately: true` / `{ack, setErrs}`). */
  acknowledge(owed: OwedReport, signal: AbortSignal): Promise<void>
  preview(params: PollParams): RequestPreview
  close(): Promise<void>
}

export const EMPTY_OWED: Readonly<OwedReport> = Object.freeze({ack: [], setErrs: new Map<string, SetErr>()})

export function emptyOwed(): OwedReport {
  return {ack: [], setErrs: new Map()}
}
