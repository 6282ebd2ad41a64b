/**
 * SSF verification: a receiver asks the transmitter for a verification event carrying a fresh
 * random `state`, then watches the stream for a SET of type
 * `https://schemas.openid.net/secevent/ssf/event-type/verification` with that state.
 *
 * `awaitVerification` polls an RFC 8936 endpoint with `returnImmediately: true` every
 * `intervalMs` until the SET arrives or `timeoutMs` passes (clock and sleep injectable). Only the
 * verification SETs it consumes are answered: the matching one is acked; one carrying another
 * state gets the setErr `invalid_state`; one that fails verification gets the setErr its failure
 * maps to. Every other SET is left unacknowledged for the stream's real consumer (`poll`,
 * `listen`), so running `ssf verify` never swallows events. `stream-updated` SETs are reported
 * through `onStreamUpdated` as status changes and also left in place.
 */
import {randomBytes} from 'node:crypto'

import {encodeBase64url} from '../base64url.js'
import {buildPollRequest, parsePollResponse, type SetErr} from '../communication.js'
import {PushpullError, setErrCodeOf} from '../errors.js'
import {isJsonObject} from '../json.js'
import {decodeSet, type SetClaims} from '../set.js'
import {sanitizeText} from '../text.js'
import type {HttpClient} from '../transport/http.js'
import type {SetVerifier} from '../verify.js'

export const VERIFICATION_EVENT = 'https://schemas.openid.net/secevent/ssf/event-type/verification'
export const STREAM_UPDATED_EVENT = 'https://schemas.openid.net/secevent/ssf/event-type/stream-updated'

export const DEFAULT_VERIFY_TIMEOUT_MS = 30_000
export const DEFAULT_VERIFY_INTERVAL_MS = 1000

/** A fresh random `state`: 16 bytes, base64url (22 characters). */
export function newVerificationState(random: (size: number) => Uint8Array = randomBytes): string {
  return encodeBase64url(random(16))
}

export type SsfEvent =
  | {type: 'verification'; state?: string; streamId?: string}
  | {type: 'stream-updated'; status: string; reason?: string; streamId?: string}

function streamIdOf(claims: SetClaims): string | undefined {
  const sub = claims.sub_id
  if (sub !== undefined && sub.format === 'opaque' && typeof sub.id === 'string') return sub.id
  return undefined
}

/** Recognise the two SSF stream-control events in a SET's claims; undefined for anything else. */
export function classifySsfEvent(claims: SetClaims): SsfEvent | undefined {
  const verification = Object.hasOwn(claims.events, VERIFICATION_EVENT) ? claims.events[VERIFICATION_EVENT] : undefined
  if (verification !== undefined) {
    const event: SsfEvent = {type: 'verification'}
    const state = isJsonObject(verification) ? verification.state : undefined
    if (typeof state === 'string') event.state = state
    const streamId = streamIdOf(claims)
    if (streamId !== undefined) event.streamId = streamId
    return event
  }

  const updated = Object.hasOwn(claims.events, STREAM_UPDATED_EVENT) ? claims.events[STREAM_UPDATED_EVENT] : undefined
  if (updated !== undefined) {
    const status = isJsonObject(updated) && typeof updated.status === 'string' ? sanitizeText(updated.status, 40) : '(missing)'
    const event: SsfEvent = {status, type: 'stream-updated'}
    const reason = isJsonObject(updated) ? updated.reason : undefined
    if (typeof reason === 'string') event.reason = sanitizeText(reason, 300)
    const streamId = streamIdOf(claims)
    if (streamId !== undefined) event.streamId = streamId
    return event
  }

  return undefined
}

/**
 * Check that a verification SET answers our request: its `state` must equal `state`, and its
 * `sub_id` (when it names a stream) must be `streamId`. Throws ERR_SET_STATE (err `invalid_state`).
 */
export function checkVerificationState(claims: SetClaims, expected: {state: string; streamId?: string}): void {
  const event = classifySsfEvent(claims)
  if (event?.type !== 'verification') {
    throw new PushpullError('ERR_EVENT_INVALID', `SET ${sanitizeText(claims.jti, 80)} is not an SSF verification event`)
  }

  if (event.state !== expected.state) {
    const got = event.state === undefined ? 'no state' : `state ${JSON.stringify(sanitizeText(event.state, 80))}`
    throw new PushpullError('ERR_SET_STATE', `verification SET ${sanitizeText(claims.jti, 80)} carries ${got}, not the state ${JSON.stringify(expected.state)} we asked for`, {
      details: {err: 'invalid_state', jti: claims.jti},
    })
  }

  if (expected.streamId !== undefined && event.streamId !== undefined && event.streamId !== expected.streamId) {
    throw new PushpullError('ERR_SET_STATE', `verification SET ${sanitizeText(claims.jti, 80)} is for stream ${JSON.stringify(sanitizeText(event.streamId, 80))}, not ${JSON.stringify(expected.streamId)}`, {
      details: {err: 'invalid_state', jti: claims.jti},
    })
  }
}

export interface StreamUpdate {
  jti: string
  status: string
  reason?: string
  streamId?: string
}

export interface VerificationOutcome {
  jti: string
  iss: string
  state: string
  streamId?: string
  /** True when a key verified the signature (false only for an explicitly allowed unsigned SET). */
  signed: boolean
  /** Polls made, including the final ack-only one. */
  polls: number
  /** Verification SETs answered with a setErr on the way (wrong state, bad signature ...). */
  rejected: Array<{jti: string; err: string; description: string}>
  streamUpdates: StreamUpdate[]
}

export interface AwaitVerificationOptions {
  client: HttpClient
  /** The stream's RFC 8936 poll endpoint (`delivery.endpoint_url`). */
  pollUrl: string
  verifier: SetVerifier
  state: string
  streamId?: string
  /** Give up after this many ms. Default 30 000. */
  timeoutMs?: number
  /** Pause between polls that brought nothing, in ms. Default 1000. */
  intervalMs?: number
  /** SETs asked for per poll. Default 100. */
  maxEvents?: number
  now?: () => number
  sleep?: (ms: number, signal?: AbortSignal) => Promise<void>
  signal?: AbortSignal
  onStreamUpdated?: (update: StreamUpdate) => void
  onRejected?: (report: {jti: string; err: string; description: string}) => void
}

async function defaultSleep(ms: number, signal?: AbortSignal): Promise<void> {
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort)
      resolve()
    }, ms)
    const onAbort = (): void => {
      clearTimeout(timer)
      reject(new PushpullError('ERR_ABORTED', 'interrupted while waiting for the verification SET', {cause: signal?.reason}))
    }

    signal?.addEventListener('abort', onAbort, {once: true})
  })
}

/**
 * Poll until the verification SET with `state` arrives (resolves with what was found) or the
 * timeout passes: ERR_SET_STATE when only verification SETs with another state came (they were
 * answered `invalid_state`), else ERR_TIMEOUT.
 */
export async function awaitVerification(options: AwaitVerificationOptions): Promise<VerificationOutcome> {
  const now = options.now ?? Date.now
  const sleep = options.sleep ?? defaultSleep
  const timeoutMs = options.timeoutMs ?? DEFAULT_VERIFY_TIMEOUT_MS
  const intervalMs = options.intervalMs ?? DEFAULT_VERIFY_INTERVAL_MS
  const deadline = now() + timeoutMs
  const rejected: VerificationOutcome['rejected'] = []
  const streamUpdates: StreamUpdate[] = []
  const seenUpdates = new Set<string>()
  let ack: string[] = []
  let setErrs = new Map<string, SetErr>()
  let polls = 0

  const poll = async (maxEvents: number): Promise<Map<string, string>> => {
    polls++
    const body = buildPollRequest({ack, maxEvents, returnImmediately: true, setErrs})
    const response = await options.client.request({
      body,
      headers: {accept: 'application/json', 'content-type': 'application/json'},
      method: 'POST',
      signal: options.signal,
      url: options.pollUrl,
    })
    if (response.status === 401 || response.status === 403) {
      throw new PushpullError('ERR_CREDENTIALS', `poll ${options.pollUrl}: the transmitter refused the bearer token (HTTP ${response.status}); check --token / --token-file`, {
        details: {status: response.status},
      })
    }

    if (response.status !== 200) {
      throw new PushpullError('ERR_PEER_STATUS', `poll ${options.pollUrl}: unexpected HTTP ${response.status}`, {details: {status: response.status}})
    }

    // Reported: these acks and setErrs are now with the transmitter.
    ack = []
    setErrs = new Map()
    return parsePollResponse(response.body).sets
  }

  const reject = (jti: string, err: string, description: string): void => {
    const report = {description: sanitizeText(description, 300), err, jti}
    setErrs.set(jti, {description: report.description, err})
    rejected.push(report)
    options.onRejected?.(report)
  }

  for (;;) {
    if (options.signal?.aborted) throw new PushpullError('ERR_ABORTED', 'interrupted while waiting for the verification SET', {cause: options.signal.reason})
    const sets = await poll(options.maxEvents ?? 100)
    let found: VerificationOutcome | undefined
    for (const [key, token] of sets) {
      let claims: SetClaims
      try {
        claims = decodeSet(token).claims
      } catch {
        continue // not ours to judge: the stream's consumer will answer it
      }

      const event = classifySsfEvent(claims)
      if (event?.type === 'stream-updated') {
        if (!seenUpdates.has(claims.jti)) {
          seenUpdates.add(claims.jti)
          const update: StreamUpdate = {jti: claims.jti, status: event.status}
          if (event.reason !== undefined) update.reason = event.reason
          if (event.streamId !== undefined) update.streamId = event.streamId
          streamUpdates.push(update)
          options.onStreamUpdated?.(update)
        }

        continue
      }

      if (event?.type !== 'verification') continue
      if (event.streamId !== undefined && options.streamId !== undefined && event.streamId !== options.streamId) continue
      if (found !== undefined) continue
      try {
        const verified = await options.verifier.verify(token)
        checkVerificationState(verified.claims, {state: options.state, streamId: options.streamId})
        if (key !== verified.claims.jti) {
          reject(key, 'invalid_request', `the sets key "${key}" is not the SET's jti`)
          continue
        }

        ack.push(key)
        found = {
          iss: verified.claims.iss,
          jti: verified.claims.jti,
          polls: 0,
          rejected,
          signed: verified.verified,
          state: options.state,
          streamId: event.streamId,
          streamUpdates,
        }
      } catch (error) {
        const err = setErrCodeOf(error)
        if (err === undefined) throw error // transient (JWKS down): nothing answered, give up loudly
        reject(key, err, (error as Error).message)
      }
    }

    if (found !== undefined) {
      await poll(0) // deliver the ack (and any setErrs) now
      return {...found, polls}
    }

    if (ack.length > 0 || setErrs.size > 0) await poll(0)
    const left = deadline - now()
    if (left <= 0) break
    await sleep(Math.min(intervalMs, left), options.signal)
  }

  const wrongState = rejected.find((item) => item.err === 'invalid_state')
  if (wrongState !== undefined) {
    throw new PushpullError('ERR_SET_STATE', `no verification SET with our state arrived within ${timeoutMs} ms; ${wrongState.description} (answered invalid_state)`, {
      details: {err: 'invalid_state', jti: wrongState.jti, rejected},
    })
  }

  throw new PushpullError('ERR_TIMEOUT', `no verification SET with state ${JSON.stringify(options.state)} arrived on ${options.pollUrl} within ${timeoutMs} ms`, {
    details: {polls, rejected, timeoutMs},
  })
}
