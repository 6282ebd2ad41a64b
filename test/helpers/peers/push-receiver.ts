/**
 * An RFC 8935 push receiver, written from the RFC alone.
 *
 * - `POST` only (405 with `Allow: POST` otherwise); other paths 404.
 * - Optional bearer token (401 with `WWW-Authenticate: Bearer` when missing or wrong).
 * - `Content-Type: application/secevent+jwt` (parameters ignored), else 415.
 * - Body over `maxBodyBytes` is 413.
 * - The judge decides: 202 with an empty body, or 400 `{err, description}` + `Content-Language: en`.
 * Every received token is recorded in order (including rejected ones and duplicates).
 */
import {createServer, type IncomingMessage, type ServerResponse} from 'node:http'

import {listenLoopback, LOOPBACK} from '../ports.js'
import {
  applyScripted, BodyTooLarge, Changes, closeServer, DEFAULT_MAX_BODY_BYTES, readBody, type RecordedRequest, refuseRequest, type ScriptedResponse, sendError, type SetErr, trackSockets,
} from './http-util.js'
import {acceptDecodable, type Judge, tryDecodeClaims} from './judge.js'

export interface PushReceiverOptions {
  /** Path served; default `/events`. */
  path?: string
  /** Bearer token required from the transmitter; default none. */
  token?: string
  /** Decides 202 vs 400; default accepts any decodable JWS. */
  judge?: Judge
  /** Body limit in bytes; default 1 MiB. */
  maxBodyBytes?: number
}

export interface ReceivedPush {
  token: string
  claims: Record<string, unknown> | undefined
  jti: string | undefined
  /** `undefined` when accepted (202). */
  rejected: SetErr | undefined
}

export interface PushReceiver {
  url: string
  port: number
  /** Every token received with the right method, auth and content type, in arrival order. */
  readonly received: ReceivedPush[]
  /** Tokens that got 202, in order. */
  accepted(): string[]
  /** Every request, whatever its outcome. */
  readonly requests: RecordedRequest[]
  /** Answer the next requests with these instead (429, 503 + Retry-After, hang, destroy...). */
  script(...responses: ScriptedResponse[]): void
  /** Replace the judge. */
  setJudge(judge: Judge): void
  waitFor(predicate: () => boolean, timeoutMs?: number): Promise<void>
  close(): Promise<void>
}

export async function startPushReceiver(options: PushReceiverOptions = {}): Promise<PushReceiver> {
  const path = options.path ?? '/events'
  const maxBodyBytes = options.maxBodyBytes ?? DEFAULT_MAX_BODY_BYTES
  let judge = options.judge ?? acceptDecodable
  const received: ReceivedPush[] = []
  const requests: RecordedRequest[] = []
  const scripted: ScriptedResponse[] = []
  const hung = new Set<ServerResponse>()
  const changes = new Changes()

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
      finish('status' in next ? next.status : 0)
      return
    }

    const refused = refuseRequest(req, res, {mediaTypes: ['application/secevent+jwt'], path, postOnly: 'SETs are delivered with POST (RFC 8935 section 2).', token: options.token})
    if (refused !== undefined) return finish(refused)

    let body: string
    try {
      body = await readBody(req, maxBodyBytes)
    } catch (error) {
      if (error instanceof BodyTooLarge) {
        sendError(res, 413, 'invalid_request', `The SET is larger than ${maxBodyBytes} bytes.`, {Connection: 'close'})
        return finish(413)
      }

      throw error
    }

    record.body = body
    const token = body.trim()
    const claims = tryDecodeClaims(token)
    const verdict = judge(token, claims)
    received.push({claims, jti: typeof claims?.jti === 'string' ? claims.jti : undefined, rejected: verdict, token})
    if (verdict) {
      sendError(res, 400, verdict.err, verdict.description)
      return finish(400)
    }

    res.writeHead(202)
    res.end()
    return finish(202)
  }

  const server = createServer((req, res) => {
    handle(req, res).catch((error: unknown) => {
      if (!res.headersSent) sendError(res, 500, 'invalid_request', `peer failure: ${String(error)}`)
    })
  })
  const sockets = trackSockets(server)
  const port = await listenLoopback(server)

  return {
    accepted: () => received.filter((r) => r.rejected === undefined).map((r) => r.token),
    async close() {
      for (const res of hung) res.destroy()
      await closeServer(server, sockets)
    },
    port,
    received,
    requests,
    script: (...responses) => void scripted.push(...responses),
    setJudge(next) {
      judge = next
    },
    url: `http://${LOOPBACK}:${port}${path}`,
    waitFor: (predicate, timeoutMs) => changes.waitFor(predicate, timeoutMs),
  }
}
