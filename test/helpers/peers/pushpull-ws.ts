/**
 * A pushpull WebSocket peer (draft-tulshibagwale-saag-pushpull-delivery-03 WebSocket binding and
 * protocol.md section 4), written from the specifications with `ws` only.
 *
 * - The upgrade is a `GET` on `path` offering subprotocol `pushpull`; otherwise it is refused
 *   with 400 (no session). An optional bearer token is required on the upgrade (401).
 * - One Communication Object per message (text, or binary UTF-8 JSON). Invalid JSON or a
 *   malformed object closes with 1007; over `maxMessageBytes` closes with 1009 (ws does it);
 *   more than `maxSetsPerMessage` SETs closes with 1009.
 * - Received SETs are judged and acked (`ack: 'immediate' | 'batch' | 'manual'`, in order or
 *   reversed); queued SETs are sent on connect and when queued, and again on every new
 *   connection (and every `redeliverMs`, if set) until the client acks them.
 * - Misbehaviour on demand: stop answering pings, invalid JSON, oversize frames, acks for jtis
 *   never sent, drop the connection after N messages, refuse or half-accept the upgrade.
 * - With `http`, the same path also serves pushpull HTTP (POST) on the same ledger.
 */
import {createServer, type IncomingMessage, type ServerResponse} from 'node:http'
import type {Duplex} from 'node:stream'

import {type RawData, WebSocket, WebSocketServer} from 'ws'

import {listenLoopback, LOOPBACK} from '../ports.js'
import {Changes, closeServer, DEFAULT_MAX_BODY_BYTES, hasBearer, type RecordedRequest, type ScriptedResponse, sendError, trackSockets, tryParseJson} from './http-util.js'
import type {Judge} from './judge.js'
import {createPushpullHttpHandler, type HttpHandlerContext, type PushpullHttpOptions, type PushpullPeerState} from './pushpull-http.js'
import {checkCommunicationObject, type IncomingObject, PushpullLedger} from './pushpull-ledger.js'

export const SUBPROTOCOL = 'pushpull'

export interface PushpullWsOptions {
  /** Path of the endpoint; default `/pushpull`. */
  path?: string
  /** Bearer token required on the upgrade; default none. */
  token?: string
  judge?: Judge
  /** Largest message accepted (ws `maxPayload`); default 1 MiB. */
  maxMessageBytes?: number
  /** SETs allowed in one message; more closes with 1009. Default 1000. */
  maxSetsPerMessage?: number
  /** Queued SETs per outgoing message; default 100. */
  setsPerMessage?: number
  /** When acks are sent: with the reply to each message (default), in batches, or only on `flushAcks()`. */
  ack?: 'immediate' | 'batch' | 'manual'
  /** Batch mode: send once this many are owed; default 10. */
  ackBatchSize?: number
  /** Batch mode: send what is owed after this delay; default 50 ms. */
  ackDelayMs?: number
  /** `reverse` sends each batch of acks in reverse arrival order; default `in-order`. */
  ackOrder?: 'in-order' | 'reverse'
  /** Answer pings with pongs; default true. */
  answerPings?: boolean
  /** Select `pushpull` in the handshake; false completes the upgrade without it. Default true. */
  echoSubprotocol?: boolean
  /** Refuse every upgrade with this HTTP status (for fallback tests). */
  refuseUpgrade?: number
  /** Process this many messages, then drop the connection on the next one (not processed). One-shot. */
  dropAfterMessages?: number
  /** Resend unacked SETs on open connections this often; default never (only on new connections). */
  redeliverMs?: number
  /** Also serve pushpull HTTP (POST) on the same path and ledger; options for that handler. */
  http?: boolean | Omit<PushpullHttpOptions, 'judge' | 'path' | 'token'>
}

export interface UpgradeRecord {
  offered: string[]
  hadAuthorization: boolean
  /** 101 when upgraded, else the refusal status. */
  status: number
}

export interface ClientClose {
  code: number
  reason: string
}

export interface PushpullWsPeer extends PushpullPeerState {
  /** `ws://127.0.0.1:PORT/pushpull` */
  url: string
  /** `http://127.0.0.1:PORT/pushpull` (same endpoint; HTTP only with the `http` option). */
  httpUrl: string
  port: number
  /** Open sessions right now. */
  openConnections(): number
  /** Sessions accepted since start. */
  readonly connectionCount: number
  readonly upgrades: UpgradeRecord[]
  /** Close frames received from clients (code 1005 when none was given; 1006 when cut). */
  readonly closes: ClientClose[]
  /** Communication Objects this peer sent, in order. */
  readonly sent: Record<string, unknown>[]
  readonly pingsReceived: number
  readonly pongsReceived: number
  /** HTTP requests (with the `http` option). */
  readonly requests: RecordedRequest[]
  script(...responses: ScriptedResponse[]): void
  /** Send everything owed now (manual or batch mode). */
  flushAcks(): void
  /** Send `{ack: jtis}` as is (for example jtis never sent). */
  sendAcks(jtis: string[]): void
  /** Send any Communication Object (or any JSON value) to every open session. */
  sendObject(value: unknown): void
  /** Send raw data to every open session. */
  sendRaw(data: string | Buffer, binary?: boolean): void
  sendInvalidJson(): void
  /** Send one valid JSON text message of about `bytes` bytes. */
  sendOversize(bytes: number): void
  stopAnsweringPings(): void
  resumeAnsweringPings(): void
  /** Ping every open session (pongs are counted in `pongsReceived`). */
  pingAll(): void
  /** Arm a one-shot drop: process `n` more messages, drop the connection on the next. */
  dropAfter(n: number): void
  closeAll(code?: number, reason?: string): void
  /** Cut every session without a close frame. */
  terminateAll(): void
  close(): Promise<void>
}

interface Session {
  ws: WebSocket
  /** Queued SETs sent on this connection and not yet settled. */
  inFlight: Set<string>
}

export async function startPushpullWsPeer(options: PushpullWsOptions = {}): Promise<PushpullWsPeer> {
  const path = options.path ?? '/pushpull'
  const maxMessageBytes = options.maxMessageBytes ?? DEFAULT_MAX_BODY_BYTES
  const maxSets = options.maxSetsPerMessage ?? 1000
  const setsPerMessage = options.setsPerMessage ?? 100
  const ackMode = options.ack ?? 'immediate'
  const ackBatchSize = options.ackBatchSize ?? 10
  const ackDelayMs = options.ackDelayMs ?? 50
  let answerPings = options.answerPings ?? true
  let dropAfter = options.dropAfterMessages
  let processedSinceArm = 0

  const ledger = new PushpullLedger(options.judge)
  const changes = new Changes()
  const sessions = new Set<Session>()
  const upgrades: UpgradeRecord[] = []
  const closes: ClientClose[] = []
  const sent: Record<string, unknown>[] = []
  const objects: IncomingObject[] = []
  const counters = {connectionCount: 0, pingsReceived: 0, pongsReceived: 0}
  let ackTimer: NodeJS.Timeout | undefined
  let redeliverTimer: NodeJS.Timeout | undefined

  const ctx: HttpHandlerContext = {changes, hung: new Set(), ledger, objects, requests: [], scripted: []}
  const httpOptions = typeof options.http === 'object' ? options.http : {}
  const httpHandler = options.http ? createPushpullHttpHandler({...httpOptions, judge: options.judge, path, token: options.token}, ctx) : undefined

  const send = (session: Session, object: Record<string, unknown>) => {
    if (session.ws.readyState !== WebSocket.OPEN) return
    sent.push(object)
    session.ws.send(JSON.stringify(object))
    changes.changed()
  }

  const anyOpen = (): Session | undefined => [...sessions].find((s) => s.ws.readyState === WebSocket.OPEN)

  const owedObject = (): Record<string, unknown> | undefined => {
    const owed = ledger.drainOwed()
    const ack = options.ackOrder === 'reverse' ? [...owed.ack].reverse() : owed.ack
    const hasErrs = Object.keys(owed.setErrs).length > 0
    if (ack.length === 0 && !hasErrs) return undefined
    return hasErrs ? {ack, setErrs: owed.setErrs} : {ack}
  }

  const flushAcks = (target = anyOpen()) => {
    if (ackTimer) clearTimeout(ackTimer)
    ackTimer = undefined
    if (!target) return
    const object = owedObject()
    if (object) send(target, object)
  }

  const pushQueued = (session: Session, base: Record<string, unknown> = {}) => {
    let object = base
    for (;;) {
      const sets = ledger.outbox.take(setsPerMessage, session.inFlight)
      const jtis = Object.keys(sets)
      for (const jti of jtis) session.inFlight.add(jti)
      if (jtis.length > 0) object = {...object, sets}
      if (Object.keys(object).length > 0) send(session, object)
      if (jtis.length < setsPerMessage) return
      object = {}
    }
  }

  const settle = (object: IncomingObject) => {
    for (const s of sessions) {
      for (const jti of object.ack) s.inFlight.delete(jti)
      for (const jti of Object.keys(object.setErrs)) s.inFlight.delete(jti)
    }
  }

  const onMessage = (session: Session, data: RawData, isBinary: boolean) => {
    if (dropAfter !== undefined && processedSinceArm >= dropAfter) {
      dropAfter = undefined
      session.ws.terminate()
      return
    }

    processedSinceArm++
    const text = Buffer.isBuffer(data) ? data.toString('utf8') : Array.isArray(data) ? Buffer.concat(data).toString('utf8') : Buffer.from(data).toString('utf8')
    void isBinary
    const parsed = tryParseJson(text)
    if (!parsed.ok) return session.ws.close(1007, 'message is not JSON')
    const checked = checkCommunicationObject(parsed.value)
    if (!checked.ok) return session.ws.close(1007, checked.description.slice(0, 120))
    const object = checked.value
    if (Object.keys(object.sets).length > maxSets) return session.ws.close(1009, `more than ${maxSets} SETs in one message`)

    objects.push(object)
    ledger.outbox.applyAcks(object.ack)
    ledger.outbox.applySetErrs(object.setErrs)
    settle(object)
    ledger.receive(object.sets, 'ws')
    changes.changed()

    if (ackMode === 'immediate') {
      pushQueued(session, owedObject())
    } else if (ackMode === 'batch') {
      if (ledger.owedAcks.length + Object.keys(ledger.owedSetErrs).length >= ackBatchSize) flushAcks(session)
      else if (!ackTimer && ledger.owedAcks.length + Object.keys(ledger.owedSetErrs).length > 0) ackTimer = setTimeout(() => flushAcks(), ackDelayMs)
      pushQueued(session)
    } else {
      pushQueued(session)
    }
  }

  const wss = new WebSocketServer({
    autoPong: false,
    handleProtocols: (protocols) => (options.echoSubprotocol === false ? false : protocols.has(SUBPROTOCOL) ? SUBPROTOCOL : false),
    maxPayload: maxMessageBytes,
    noServer: true,
    perMessageDeflate: false,
  })

  wss.on('connection', (ws: WebSocket) => {
    const session: Session = {inFlight: new Set(), ws}
    sessions.add(session)
    counters.connectionCount++
    ws.on('message', (data, isBinary) => onMessage(session, data, isBinary))
    ws.on('ping', (data) => {
      counters.pingsReceived++
      if (answerPings) ws.pong(data)
      changes.changed()
    })
    ws.on('pong', () => {
      counters.pongsReceived++
      changes.changed()
    })
    ws.on('error', () => {
      // ws closes the socket itself (1009, 1002...); the close event records it.
    })
    ws.on('close', (code, reason) => {
      sessions.delete(session)
      closes.push({code, reason: reason.toString('utf8')})
      changes.changed()
    })
    changes.changed()
    // Owed acks first, then every unacked SET again (redelivery on a new connection).
    pushQueued(session, ackMode === 'manual' ? {} : owedObject() ?? {})
  })

  const refuse = (socket: Duplex, status: number, reason: string, headers: Record<string, string> = {}) => {
    const body = JSON.stringify({description: reason, err: status === 401 ? 'authentication_failed' : 'invalid_request'})
    const lines = [`HTTP/1.1 ${status} ${reason}`, 'Connection: close', 'Content-Type: application/json', `Content-Length: ${Buffer.byteLength(body)}`]
    for (const [name, value] of Object.entries(headers)) lines.push(`${name}: ${value}`)
    socket.end(`${lines.join('\r\n')}\r\n\r\n${body}`)
  }

  const server = createServer((req: IncomingMessage, res: ServerResponse) => {
    if (httpHandler) {
      httpHandler(req, res).then(() => {
        for (const s of sessions) pushQueued(s)
      }, (error: unknown) => {
        if (!res.headersSent) sendError(res, 500, 'invalid_request', `peer failure: ${String(error)}`)
      })
      return
    }

    sendError(res, 426, 'invalid_request', 'This endpoint speaks the pushpull WebSocket binding only.', {Upgrade: 'websocket'})
  })

  server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
    socket.on('error', () => {})
    const offered = String(req.headers['sec-websocket-protocol'] ?? '').split(',').map((p) => p.trim()).filter(Boolean)
    const record: UpgradeRecord = {hadAuthorization: req.headers.authorization !== undefined, offered, status: 0}
    upgrades.push(record)
    const done = (status: number) => {
      record.status = status
      changes.changed()
    }

    const refusing = (status: number, reason: string, headers?: Record<string, string>) => {
      refuse(socket, status, reason, headers)
      done(status)
    }

    if (new URL(req.url ?? '/', 'http://peer').pathname !== path) return refusing(404, 'Not Found')
    if (options.refuseUpgrade !== undefined) return refusing(options.refuseUpgrade, 'Refused')
    if (options.token !== undefined && !hasBearer(req, options.token)) return refusing(401, 'Unauthorized', {'WWW-Authenticate': 'Bearer realm="pushpull-peer"'})
    if (!offered.includes(SUBPROTOCOL)) return refusing(400, 'Bad Request')
    wss.handleUpgrade(req, socket, head, (ws) => {
      done(101)
      wss.emit('connection', ws, req)
    })
  })

  const sockets = trackSockets(server)
  const port = await listenLoopback(server)
  if (options.redeliverMs !== undefined) {
    redeliverTimer = setInterval(() => {
      for (const s of sessions) {
        s.inFlight.clear()
        pushQueued(s)
      }
    }, options.redeliverMs)
  }

  const broadcast = (data: string | Buffer, binary = false) => {
    for (const s of sessions) if (s.ws.readyState === WebSocket.OPEN) s.ws.send(data, {binary})
  }

  return {
    get ackedByClient() {
      return ledger.outbox.acked
    },
    async close() {
      if (ackTimer) clearTimeout(ackTimer)
      if (redeliverTimer) clearInterval(redeliverTimer)
      for (const s of sessions) s.ws.terminate()
      wss.close()
      for (const res of ctx.hung) res.destroy()
      await closeServer(server, sockets)
    },
    closeAll(code = 1001, reason = 'peer closing') {
      for (const s of sessions) s.ws.close(code, reason)
    },
    closes,
    get connectionCount() {
      return counters.connectionCount
    },
    deliveries: (jti) => ledger.outbox.deliveries(jti),
    dropAfter(n) {
      dropAfter = n
      processedSinceArm = 0
    },
    flushAcks: () => flushAcks(),
    httpUrl: `http://${LOOPBACK}:${port}${path}`,
    objects,
    openConnections: () => [...sessions].filter((s) => s.ws.readyState === WebSocket.OPEN).length,
    pending: () => ledger.outbox.pendingJtis(),
    pingAll() {
      for (const s of sessions) if (s.ws.readyState === WebSocket.OPEN) s.ws.ping()
    },
    get pingsReceived() {
      return counters.pingsReceived
    },
    get pongsReceived() {
      return counters.pongsReceived
    },
    port,
    processed: () => ledger.processed(),
    queue(tokens) {
      ledger.outbox.queue(tokens)
      for (const s of sessions) pushQueued(s)
      changes.changed()
    },
    received: ledger.received,
    requests: ctx.requests,
    resumeAnsweringPings() {
      answerPings = true
    },
    script: (...responses) => void ctx.scripted.push(...responses),
    sendAcks(jtis) {
      for (const s of sessions) send(s, {ack: jtis})
    },
    sendInvalidJson: () => broadcast('{"sets": {"oops"'),
    sendObject(value) {
      broadcast(JSON.stringify(value))
    },
    sendOversize(bytes) {
      broadcast(JSON.stringify({padding: 'x'.repeat(Math.max(0, bytes - 14))}))
    },
    sendRaw: (data, binary) => broadcast(data, binary),
    sent,
    setErrsFromClient: ledger.outbox.setErrs,
    setJudge(judge) {
      ledger.judge = judge
    },
    stopAnsweringPings() {
      answerPings = false
    },
    terminateAll() {
      for (const s of sessions) s.ws.terminate()
    },
    unknownAcks: ledger.outbox.unknownAcks,
    upgrades,
    url: `ws://${LOOPBACK}:${port}${path}`,
    waitFor: (predicate, timeoutMs) => changes.waitFor(predicate, timeoutMs),
  }
}
