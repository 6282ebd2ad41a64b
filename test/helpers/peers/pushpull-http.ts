/**
 * A pushpull HTTP peer (draft-tulshibagwale-saag-pushpull-delivery-03), also accepting
 * multi-SET push (draft-deshpande-secevent-http-multi-set-push) on the same path by content type.
 *
 * pushpull HTTP: `POST` `application/json` Communication Object `{sets?, ack?, setErrs?,
 * maxResponseEvents?}`. Acks and setErrs from the client settle queued SETs; received SETs are
 * judged; the answer is `200` with a Communication Object carrying the acks/setErrs owed to the
 * client (all of them, unless `deferAcks`, which answers a request's SETs only in the *next*
 * response) and up to `maxResponseEvents` SETs queued for the client (redelivered until acked).
 * Malformed bodies are `400 {err: "invalid_request", description}`, and change nothing.
 *
 * Multi-SET push: `POST` `application/secevents+json` `{"sets": {...}}` answered `202
 * {"ack": [...], "setErrs"?: {...}}`; `{"sets": {}}` collects late acks. Errors are 400
 * `application/problem+json` with `err`.
 *
 * Other statuses: 404 other paths, 405 + `Allow: POST`, 401 + `WWW-Authenticate: Bearer`,
 * 415 other content types, 413 over the body limit or over `maxSetsPerObject`.
 */
import {createServer, type IncomingMessage, type ServerResponse} from 'node:http'

import {listenLoopback, LOOPBACK} from '../ports.js'
import {
  applyScripted, BodyTooLarge, Changes, closeServer, DEFAULT_MAX_BODY_BYTES, mediaType, readBody, type RecordedRequest, refuseRequest, type ScriptedResponse, sendError, sendJson, type SetErr, trackSockets, tryParseJson,
} from './http-util.js'
import type {Judge} from './judge.js'
import type {QueueItem} from './outbox.js'
import {checkCommunicationObject, type IncomingObject, PushpullLedger, type ReceivedSet} from './pushpull-ledger.js'
import {isPlainObject} from './set-token.js'
import {checkNonNegativeInteger} from './wire.js'

export interface PushpullHttpOptions {
  /** Path served; default `/pushpull`. */
  path?: string
  /** Bearer token required from clients; default none. */
  token?: string
  /** Decides ack vs setErr for each received SET; default accepts any decodable JWS. */
  judge?: Judge
  /** Body limit in bytes; default 1 MiB. */
  maxBodyBytes?: number
  /** SETs allowed in one object; more is 413. Default 1000. */
  maxSetsPerObject?: number
  /** SETs per response when the request has no `maxResponseEvents`; default 1000. */
  defaultMaxResponseEvents?: number
  /** Answer a request's SETs only in the next response (late acks); default false. */
  deferAcks?: boolean
  /** Put `sets`, `ack` and `setErrs` in every response even when empty; default false (omitted). */
  includeEmptyMembers?: boolean
}

/** What the HTTP and WebSocket pushpull peers expose for inspection. */
export interface PushpullPeerState {
  /** Every SET received, in order, duplicates included. */
  readonly received: ReceivedSet[]
  /** First arrivals of accepted SETs: what a receiver processes exactly once. */
  processed(): ReceivedSet[]
  /** Every well-formed Communication Object received, in order. */
  readonly objects: IncomingObject[]
  /** jtis of queued SETs that the client acked, in arrival order. */
  readonly ackedByClient: string[]
  /** setErrs the client reported for queued SETs. */
  readonly setErrsFromClient: Record<string, SetErr>
  /** Acks or setErrs from the client naming jtis never queued here. */
  readonly unknownAcks: string[]
  /** Queue SETs for the client (delivered until acked). */
  queue(tokens: QueueItem[]): void
  pending(): string[]
  deliveries(jti: string): number
  setJudge(judge: Judge): void
  waitFor(predicate: () => boolean, timeoutMs?: number): Promise<void>
}

export interface PushpullHttpPeer extends PushpullPeerState {
  url: string
  port: number
  /** Every HTTP request (auth header never kept). */
  readonly requests: RecordedRequest[]
  /** Answer the next requests with these instead. */
  script(...responses: ScriptedResponse[]): void
  close(): Promise<void>
}

export interface HttpHandlerContext {
  ledger: PushpullLedger
  changes: Changes
  requests: RecordedRequest[]
  objects: IncomingObject[]
  scripted: ScriptedResponse[]
  hung: Set<ServerResponse>
  /** Called after anything was queued or received (the WebSocket peer pushes on it). */
  onActivity?: () => void
}

/** The request handler for pushpull HTTP + multi-SET push; shared with the WebSocket peer. */
export function createPushpullHttpHandler(options: PushpullHttpOptions, ctx: HttpHandlerContext): (req: IncomingMessage, res: ServerResponse) => Promise<void> {
  const path = options.path ?? '/pushpull'
  const maxBodyBytes = options.maxBodyBytes ?? DEFAULT_MAX_BODY_BYTES
  const maxSets = options.maxSetsPerObject ?? 1000
  const defaultMaxResponseEvents = options.defaultMaxResponseEvents ?? 1000
  const {ledger} = ctx

  return async (req, res) => {
    const record: RecordedRequest = {body: '', contentType: req.headers['content-type'], hadAuthorization: req.headers.authorization !== undefined, method: req.method ?? '', path: req.url ?? '', status: 0}
    ctx.requests.push(record)
    const finish = (status: number) => {
      record.status = status
      ctx.changes.changed()
    }

    const next = ctx.scripted.shift()
    if (next) {
      applyScripted(next, req, res, ctx.hung)
      return finish('status' in next ? next.status : 0)
    }

    const refused = refuseRequest(req, res, {mediaTypes: ['application/json', 'application/secevents+json'], path, postOnly: 'Communication Objects are sent with POST.', token: options.token})
    if (refused !== undefined) return finish(refused)
    const multi = mediaType(req) === 'application/secevents+json'

    const fail = (status: number, description: string) => {
      sendError(res, status, 'invalid_request', description, multi ? {'Content-Type': 'application/problem+json'} : {})
      finish(status)
    }

    let body: string
    try {
      body = await readBody(req, maxBodyBytes)
    } catch (error) {
      if (!(error instanceof BodyTooLarge)) throw error
      res.setHeader('Connection', 'close')
      return fail(413, `The body is larger than ${maxBodyBytes} bytes.`)
    }

    record.body = body
    const parsed = tryParseJson(body)
    if (!parsed.ok) return fail(400, 'The body is not valid JSON.')
    const checked = checkCommunicationObject(parsed.value)
    if (!checked.ok) return fail(400, checked.description)
    const object = checked.value
    if (multi && !isPlainObject(object.raw.sets)) return fail(400, 'A multi-SET push body needs a "sets" object.')
    const max = checkNonNegativeInteger(object.raw.maxResponseEvents, 'maxResponseEvents')
    if (!max.ok) return fail(400, max.description)
    if (Object.keys(object.sets).length > maxSets) return fail(413, `More than ${maxSets} SETs in one object.`)

    ctx.objects.push(object)
    ledger.outbox.applyAcks(object.ack)
    ledger.outbox.applySetErrs(object.setErrs)
    const owedBefore = options.deferAcks ? ledger.drainOwed() : undefined
    ledger.receive(object.sets, multi ? 'multi-push' : 'http')
    const answer = owedBefore ?? ledger.drainOwed()
    const hasErrs = Object.keys(answer.setErrs).length > 0
    if (multi) {
      sendJson(res, 202, hasErrs ? {ack: answer.ack, setErrs: answer.setErrs} : {ack: answer.ack})
      finish(202)
      ctx.onActivity?.()
      return
    }

    const sets = ledger.outbox.take(max.value ?? defaultMaxResponseEvents)
    const response: Record<string, unknown> = {}
    const all = options.includeEmptyMembers === true
    if (all || Object.keys(sets).length > 0) response.sets = sets
    if (all || answer.ack.length > 0) response.ack = answer.ack
    if (all || hasErrs) response.setErrs = answer.setErrs
    sendJson(res, 200, response)
    finish(200)
    ctx.onActivity?.()
  }
}

export async function startPushpullHttpPeer(options: PushpullHttpOptions = {}): Promise<PushpullHttpPeer> {
  const path = options.path ?? '/pushpull'
  const ledger = new PushpullLedger(options.judge)
  const changes = new Changes()
  const ctx: HttpHandlerContext = {changes, hung: new Set(), ledger, objects: [], requests: [], scripted: []}
  const handle = createPushpullHttpHandler(options, ctx)
  const server = createServer((req, res) => {
    handle(req, res).catch((error: unknown) => {
      if (!res.headersSent) sendError(res, 500, 'invalid_request', `peer failure: ${String(error)}`)
    })
  })
  const sockets = trackSockets(server)
  const port = await listenLoopback(server)

  return {
    ackedByClient: ledger.outbox.acked,
    async close() {
      for (const res of ctx.hung) res.destroy()
      await closeServer(server, sockets)
    },
    deliveries: (jti) => ledger.outbox.deliveries(jti),
    objects: ctx.objects,
    pending: () => ledger.outbox.pendingJtis(),
    port,
    processed: () => ledger.processed(),
    queue(tokens) {
      ledger.outbox.queue(tokens)
      changes.changed()
    },
    received: ledger.received,
    requests: ctx.requests,
    script: (...responses) => void ctx.scripted.push(...responses),
    setErrsFromClient: ledger.outbox.setErrs,
    setJudge(judge) {
      ledger.judge = judge
    },
    unknownAcks: ledger.outbox.unknownAcks,
    url: `http://${LOOPBACK}:${port}${path}`,
    waitFor: (predicate, timeoutMs) => changes.waitFor(predicate, timeoutMs),
  }
}
