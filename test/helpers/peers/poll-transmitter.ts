/**
 * An RFC 8936 poll-based SET transmitter, written from the RFC alone.
 *
 * The receiver POSTs a JSON poll request `{maxEvents?, returnImmediately?, ack?, setErrs?}`.
 * Acks and setErrs are applied first; then up to `maxEvents` unacknowledged SETs are returned as
 * `{"sets": {jti: SET}, "moreAvailable"?: true}` (SETs already delivered but not yet acked are
 * delivered again). `returnImmediately` defaults to false: with nothing to deliver the request
 * is held until a SET is queued or `longPollTimeoutMs` passes (then `{"sets": {}}`).
 * A malformed poll is 400 `{err: "invalid_request", description}`.
 */
import {createServer, type IncomingMessage, type ServerResponse} from 'node:http'

import {listenLoopback, LOOPBACK} from '../ports.js'
import {
  applyScripted, BodyTooLarge, Changes, closeServer, DEFAULT_MAX_BODY_BYTES, readBody, type RecordedRequest, refuseRequest, type ScriptedResponse, sendError, sendJson, type SetErr, trackSockets, tryParseJson,
} from './http-util.js'
import {PeerOutbox, type QueueItem} from './outbox.js'
import {isPlainObject} from './set-token.js'
import {checkAck, checkNonNegativeInteger, checkSetErrs} from './wire.js'

export interface PollTransmitterOptions {
  /** Path served; default `/poll`. */
  path?: string
  /** Bearer token required from pollers; default none. */
  token?: string
  /** How long a long poll is held when nothing is queued; default 2000 ms. */
  longPollTimeoutMs?: number
  /** SETs per response when the poll has no `maxEvents`; default 1000. */
  defaultMaxEvents?: number
  /** Body limit in bytes; default 1 MiB. */
  maxBodyBytes?: number
}

export interface RecordedPoll {
  maxEvents: number | undefined
  returnImmediately: boolean | undefined
  ack: string[]
  setErrs: Record<string, SetErr>
  /** jtis returned in the response. */
  returned: string[]
  /** True when the request was held as a long poll. */
  waited: boolean
}

export interface PollTransmitter {
  url: string
  port: number
  queue(tokens: QueueItem[]): void
  /** jtis acked by the poller, in arrival order. */
  readonly acked: string[]
  /** setErrs reported by the poller. */
  readonly setErrs: Record<string, SetErr>
  /** Acks or setErrs for jtis this transmitter never queued. */
  readonly unknownAcks: string[]
  /** Every well-formed poll, in order. */
  readonly polls: RecordedPoll[]
  /** Every HTTP request, in order (auth header never kept). */
  readonly requests: RecordedRequest[]
  /** Number of HTTP requests received. */
  requestCount(): number
  pending(): string[]
  deliveries(jti: string): number
  /** Number of long polls waiting right now. */
  waiting(): number
  script(...responses: ScriptedResponse[]): void
  waitFor(predicate: () => boolean, timeoutMs?: number): Promise<void>
  close(): Promise<void>
}

export async function startPollTransmitter(options: PollTransmitterOptions = {}): Promise<PollTransmitter> {
  const path = options.path ?? '/poll'
  const longPollTimeoutMs = options.longPollTimeoutMs ?? 2000
  const defaultMaxEvents = options.defaultMaxEvents ?? 1000
  const maxBodyBytes = options.maxBodyBytes ?? DEFAULT_MAX_BODY_BYTES
  const outbox = new PeerOutbox()
  const polls: RecordedPoll[] = []
  const requests: RecordedRequest[] = []
  const scripted: ScriptedResponse[] = []
  const hung = new Set<ServerResponse>()
  const waiters = new Set<() => void>()
  const changes = new Changes()
  let closing = false

  const respond = (res: ServerResponse, record: RecordedRequest, poll: RecordedPoll, max: number) => {
    const sets = outbox.take(max)
    poll.returned = Object.keys(sets)
    const more = outbox.pendingCount() > poll.returned.length
    sendJson(res, 200, more ? {moreAvailable: true, sets} : {sets})
    record.status = 200
    changes.changed()
  }

  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const record: RecordedRequest = {body: '', contentType: req.headers['content-type'], hadAuthorization: req.headers.authorization !== undefined, method: req.method ?? '', path: req.url ?? '', status: 0}
    requests.push(record)
    const finish = (status: number) => {
      record.status = status
      changes.changed()
    }

    const next = scripted.shift()
    if (next) {
      applyScripted(next, req, res, hung)
      return finish('status' in next ? next.status : 0)
    }

    const refused = refuseRequest(req, res, {mediaTypes: ['application/json'], path, postOnly: 'Poll requests use POST (RFC 8936 section 2.4).', token: options.token})
    if (refused !== undefined) return finish(refused)

    let body: string
    try {
      body = await readBody(req, maxBodyBytes)
    } catch (error) {
      if (!(error instanceof BodyTooLarge)) throw error
      sendError(res, 413, 'invalid_request', `The poll request is larger than ${maxBodyBytes} bytes.`, {Connection: 'close'})
      return finish(413)
    }

    record.body = body
    const parsed = tryParseJson(body)
    if (!parsed.ok || !isPlainObject(parsed.value)) {
      sendError(res, 400, 'invalid_request', 'The poll request is not a JSON object.')
      return finish(400)
    }

    const request = parsed.value
    const maxEvents = checkNonNegativeInteger(request.maxEvents, 'maxEvents')
    const ack = checkAck(request.ack)
    const setErrs = checkSetErrs(request.setErrs)
    const ri = request.returnImmediately
    const problem = [maxEvents, ack, setErrs].find((c) => !c.ok) as {description: string} | undefined
    if (problem || (ri !== undefined && typeof ri !== 'boolean')) {
      sendError(res, 400, 'invalid_request', problem?.description ?? '"returnImmediately" must be a boolean.')
      return finish(400)
    }

    if (!maxEvents.ok || !ack.ok || !setErrs.ok) return
    outbox.applyAcks(ack.value)
    outbox.applySetErrs(setErrs.value)
    const poll: RecordedPoll = {ack: ack.value, maxEvents: maxEvents.value, returned: [], returnImmediately: ri as boolean | undefined, setErrs: setErrs.value, waited: false}
    polls.push(poll)
    changes.changed()
    const max = maxEvents.value ?? defaultMaxEvents
    if (max === 0 || ri === true || outbox.pendingCount() > 0 || closing) {
      respond(res, record, poll, max)
      return
    }

    // Long poll: hold until something is queued, the timeout passes, or the client goes away.
    poll.waited = true
    await new Promise<void>((resolve) => {
      const wake = () => {
        clearTimeout(timer)
        waiters.delete(wake)
        res.off('close', wake)
        resolve()
      }

      const timer = setTimeout(wake, longPollTimeoutMs)
      waiters.add(wake)
      res.on('close', wake)
      changes.changed()
    })
    if (!res.destroyed && !res.writableEnded) respond(res, record, poll, max)
  }

  const server = createServer((req, res) => {
    handle(req, res).catch((error: unknown) => {
      if (!res.headersSent) sendError(res, 500, 'invalid_request', `peer failure: ${String(error)}`)
    })
  })
  const sockets = trackSockets(server)
  const port = await listenLoopback(server)

  return {
    acked: outbox.acked,
    async close() {
      closing = true
      for (const wake of [...waiters]) wake()
      for (const res of hung) res.destroy()
      await closeServer(server, sockets)
    },
    deliveries: (jti) => outbox.deliveries(jti),
    pending: () => outbox.pendingJtis(),
    polls,
    port,
    queue(tokens) {
      outbox.queue(tokens)
      for (const wake of [...waiters]) wake()
      changes.changed()
    },
    requestCount: () => requests.length,
    requests,
    script: (...responses) => void scripted.push(...responses),
    setErrs: outbox.setErrs,
    unknownAcks: outbox.unknownAcks,
    url: `http://${LOOPBACK}:${port}${path}`,
    waitFor: (predicate, timeoutMs) => changes.waitFor(predicate, timeoutMs),
    waiting: () => waiters.size,
  }
}
