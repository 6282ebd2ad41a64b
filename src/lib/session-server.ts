/**
 * Server side of pushpull WebSocket sessions: attach to the HTTP(S) server of the listener so the
 * upgrade (GET, subprotocol `pushpull`) shares the pushpull endpoint's path. Several peers at
 * once; each session runs under the peer identity its upgrade authenticated as, so a peer's owed
 * acks and queued SETs follow it across HTTP requests and WebSocket sessions.
 *
 *   const handle = attachSessionServer(server, {path: '/pushpull', identify, ledger, receiver})
 *   handle.kick(peer)        // SETs were queued for `peer`: every session of it sends them
 *   await handle.close()     // flush owed acks, close every session with 1001, detach
 *
 * `attachListenerSessions(listener)` wires it to `Listener` (src/lib/server.ts): identity from
 * `listener.peerOf`, wake-ups from `listener.onQueued`, events into `listener.report`.
 */
import type {IncomingMessage, Server} from 'node:http'

import {isPushpullError} from './errors.js'
import {DEFAULT_MESSAGE_RATE, type RateLimit, RateLimiter} from './rate-limit.js'
import type {Ledger} from './ledger.js'
import type {SetReceiver} from './receiver.js'
import type {Listener} from './server.js'
import {Session, type SessionEvent, type SessionOptions} from './session.js'
import {attachWebSocketServer, SHUTDOWN_REASON, type WebSocketServerHandle} from './transport/ws-server.js'
import {CloseCode, type PushpullSocket, type SocketOptions} from './transport/ws-socket.js'

export interface SessionServerOptions
  extends SocketOptions,
    Omit<SessionOptions, 'peer' | 'onEvent' | 'ledger' | 'receiver' | 'now' | 'timers' | 'maxSendBytes'> {
  /** The upgrade path (the pushpull endpoint). Default '/pushpull'. */
  path?: string
  /** The peer id of an upgrade request; throw (ERR_CREDENTIALS) to refuse it with 401. */
  identify: (req: IncomingMessage) => string
  ledger: Ledger
  receiver: SetReceiver
  maxConnections?: number
  maxConnectionsPerAddress?: number
  /** Session events, with the peer. */
  onEvent?: (event: SessionEvent) => void
  /** Subscribe to "SETs were queued for peer" wake-ups; returns the unsubscribe function. */
  subscribe?: (peer: string, wake: () => void) => () => void
  /**
   * Incoming messages per peer (token bucket over all its sessions; an unauthenticated peer is
   * counted per remote address). Over it the session is closed with 1008. Default 2000/s, burst 4000.
   */
  messageRate?: RateLimit
}

export interface SessionServerHandle {
  /** Open sessions by peer. */
  readonly sessions: ReadonlyMap<string, ReadonlySet<Session>>
  /** SETs were queued (for `peer`, or for everyone): send them on the open sessions. */
  kick(peer?: string): void
  /** Flush owed acks, close every session (1001), stop accepting upgrades. */
  close(): Promise<void>
}

export function attachSessionServer(server: Server, options: SessionServerOptions): SessionServerHandle {
  const sessions = new Map<string, Set<Session>>()
  const unsubscribers = new Map<Session, () => void>()
  let closing = false
  const limiter = new RateLimiter({now: options.now, ...(options.messageRate ?? {perSecond: DEFAULT_MESSAGE_RATE})})

  const authenticate = (req: IncomingMessage): boolean => {
    try {
      options.identify(req)
      return true
    } catch (error) {
      if (isPushpullError(error, 'ERR_CREDENTIALS')) return false
      throw error
    }
  }

  const onConnection = (socket: PushpullSocket, req: IncomingMessage): void => {
    const peer = options.identify(req)
    const rateKey = peer === 'anonymous' ? `anonymous ${req.socket.remoteAddress ?? ''}` : peer
    // Registered before the session's own listener: a peer over its rate is cut off with 1008.
    socket.on('message', () => {
      if (limiter.take(rateKey)) return
      void socket.fail(CloseCode.POLICY, `too many messages (over ${limiter.perSecond} per second)`)
    })
    const session = new Session(socket, {
      ackDelayMs: options.ackDelayMs,
      batchDelayMs: options.batchDelayMs,
      handoff: options.handoff,
      ledger: options.ledger,
      limits: options.maxPayload === undefined ? options.limits : {maxBytes: options.maxPayload, ...options.limits},
      maxAcksPerMessage: options.maxAcksPerMessage,
      maxQueuedMessages: options.maxQueuedMessages,
      maxSendBytes: options.maxSendBytes ?? options.maxPayload,
      maxSetsPerMessage: options.maxSetsPerMessage,
      now: options.now,
      onEvent: options.onEvent,
      peer,
      receiver: options.receiver,
    })
    let set = sessions.get(peer)
    if (set === undefined) {
      set = new Set()
      sessions.set(peer, set)
    }

    set.add(session)
    if (options.subscribe !== undefined) unsubscribers.set(session, options.subscribe(peer, () => session.kick()))
    void session.done.then(() => {
      unsubscribers.get(session)?.()
      unsubscribers.delete(session)
      const peerSessions = sessions.get(peer)
      peerSessions?.delete(session)
      if (peerSessions?.size === 0) sessions.delete(peer)
    })
  }

  const wsHandle: WebSocketServerHandle = attachWebSocketServer(server, {
    authenticate,
    closeTimeoutMs: options.closeTimeoutMs,
    highWaterMark: options.highWaterMark,
    maxConnections: options.maxConnections,
    maxConnectionsPerAddress: options.maxConnectionsPerAddress,
    maxMissedPongs: options.maxMissedPongs,
    maxPayload: options.maxPayload,
    maxSendBytes: options.maxSendBytes,
    now: options.now,
    onConnection,
    path: options.path ?? '/pushpull',
    pingIntervalMs: options.pingIntervalMs,
    timers: options.timers,
  })

  return {
    async close() {
      if (closing) return
      closing = true
      const all = [...sessions.values()].flatMap((set) => [...set])
      await Promise.all(all.map(async (session) => session.close(CloseCode.GOING_AWAY, SHUTDOWN_REASON)))
      await wsHandle.close(CloseCode.GOING_AWAY, SHUTDOWN_REASON)
    },
    kick(peer?: string) {
      for (const [id, set] of sessions) {
        if (peer !== undefined && id !== peer) continue
        for (const session of set) session.kick()
      }
    },
    sessions,
  }
}

/**
 * `listen --ws`: WebSocket sessions on the listener's pushpull path, with its identities, ledger,
 * receiver and event stream.
 */
export function attachListenerSessions(
  listener: Listener,
  options: Omit<SessionServerOptions, 'identify' | 'ledger' | 'receiver' | 'subscribe' | 'onEvent'> & {onEvent?: (event: SessionEvent) => void} = {},
): SessionServerHandle {
  const report = listener.report.bind(listener)
  return attachSessionServer(listener.server, {
    ...options,
    identify: (req) => listener.peerOf(req),
    ledger: listener.ledger,
    onEvent(event) {
      options.onEvent?.(event)
      for (const item of listenerEventsOf(event)) report(item)
    },
    path: options.path ?? listener.paths.pushpull,
    receiver: listener.receiver,
    subscribe: (peer, wake) => listener.onQueued(peer, wake),
  })
}

type ListenerEventOf = Parameters<Listener['report']>[0]

/** The listener's event records for one session event (binding `ws`). */
export function listenerEventsOf(event: SessionEvent): ListenerEventOf[] {
  const out: ListenerEventOf[] = []
  const {peer} = event
  switch (event.type) {
    case 'received': {
      for (const outcome of event.outcomes) {
        if (outcome.status === 'new' || outcome.status === 'duplicate') {
          out.push({
            binding: 'ws',
            jti: outcome.set.claims.jti,
            peer,
            set: outcome.set,
            status: outcome.status,
            type: 'set',
            ...(outcome.status === 'new' ? {verdict: outcome.verdict} : {}),
          })
        } else if (outcome.status === 'rejected') {
          out.push({
            binding: 'ws',
            description: outcome.setErr.description,
            err: outcome.setErr.err,
            jti: outcome.key,
            peer,
            repeat: outcome.repeat,
            type: 'rejected',
            ...(outcome.iss === undefined ? {} : {iss: outcome.iss}),
            ...(outcome.event === undefined ? {} : {event: outcome.event}),
          })
        } else {
          out.push({binding: 'ws', description: outcome.error.message, jti: outcome.key, peer, type: 'deferred'})
        }
      }

      break
    }

    case 'report': {
      for (const jti of event.result.acked) out.push({jti, peer, type: 'ack'})
      for (const jti of event.result.rejected) {
        const setErr = event.setErrs.get(jti)
        out.push({description: setErr?.description ?? '', err: setErr?.err ?? 'invalid_request', jti, peer, type: 'setErr'})
      }

      break
    }

    case 'sent': {
      if (event.sets.length > 0) out.push({binding: 'ws', jtis: event.sets, peer, type: 'sent'})
      if (event.ack.length > 0 || event.setErrs.length > 0) out.push({ack: event.ack.length, binding: 'ws', peer, setErrs: event.setErrs.length, type: 'answered'})
      break
    }

    case 'abandoned': {
      for (const jti of event.jtis) out.push({jti, peer, type: 'abandoned'})
      break
    }

    default:
  }

  return out
}
