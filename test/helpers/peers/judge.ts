/**
 * Judges decide what a receiving peer answers for one SET: `undefined` to accept (ack / 202), or
 * `{err, description}` to reject (setErr / 400). Error codes are the RFC 8935 section 2.4 registry.
 */
import type {SetErr} from './http-util.js'
import {decodeSetUnverified, isPlainObject, type PeerSigningKey, verifySetSignature} from './set-token.js'

export type {SetErr} from './http-util.js'

/** `claims` is `undefined` when the token could not be decoded as a compact JWS. */
export type Judge = (token: string, claims: Record<string, unknown> | undefined) => SetErr | undefined

/** Decode without throwing. */
export function tryDecodeClaims(token: string): Record<string, unknown> | undefined {
  try {
    return decodeSetUnverified(token).claims
  } catch {
    return undefined
  }
}

/** The default judge: accept anything that decodes as a JWS with a JSON object payload. */
export const acceptDecodable: Judge = (_token, claims) =>
  claims === undefined ? {description: 'The SET is not a compact JWS with a JSON payload.', err: 'invalid_request'} : undefined

/** Reject everything with the given error (for rejection-path tests). */
export function rejectAll(err = 'invalid_request', description = 'Rejected by the test peer.'): Judge {
  return () => ({description, err})
}

export interface VerifyingJudgeOptions {
  keys: PeerSigningKey[]
  issuer?: string
  audience?: string
}

/**
 * A strict judge written from RFC 8417 / RFC 8935: shape, `typ`, signature, issuer, audience.
 * Independent of src/, so it can referee SETs minted by pushpull.
 */
export function verifyingJudge(options: VerifyingJudgeOptions): Judge {
  return (token, claims) => {
    if (token.split('.').length === 5) return {description: 'Encrypted SETs are not supported by this peer.', err: 'invalid_request'}
    let header: Record<string, unknown>
    try {
      header = decodeSetUnverified(token).header
    } catch {
      return {description: 'The SET is not a compact JWS with a JSON payload.', err: 'invalid_request'}
    }

    if (claims === undefined) return {description: 'The SET payload is not a JSON object.', err: 'invalid_request'}
    if (header.alg === 'none') return {description: 'Unsigned SETs are not accepted.', err: 'invalid_key'}
    const typ = typeof header.typ === 'string' ? header.typ.toLowerCase() : undefined
    if (typ !== 'secevent+jwt' && typ !== 'application/secevent+jwt') return {description: 'The SET header typ is not secevent+jwt.', err: 'invalid_request'}
    if (!verifySetSignature(token, options.keys)) return {description: 'The SET signature did not verify.', err: 'invalid_key'}
    if (typeof claims.jti !== 'string' || claims.jti === '') return {description: 'The SET has no jti.', err: 'invalid_request'}
    if (typeof claims.iat !== 'number') return {description: 'The SET has no iat.', err: 'invalid_request'}
    if (!isPlainObject(claims.events) || Object.keys(claims.events).length === 0) return {description: 'The SET has no events.', err: 'invalid_request'}
    if (options.issuer !== undefined && claims.iss !== options.issuer) return {description: 'The SET issuer is not the expected one.', err: 'invalid_issuer'}
    if (options.audience !== undefined) {
      const aud = Array.isArray(claims.aud) ? claims.aud : [claims.aud]
      if (!aud.includes(options.audience)) return {description: 'The SET audience is not this receiver.', err: 'invalid_audience'}
    }

    return undefined
  }
}
