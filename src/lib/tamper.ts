/**
 * Deliberately broken SETs for `send --tamper`: check that a receiver refuses what it must.
 * Each mode breaks one thing and names the `err` a conforming receiver answers:
 *
 * | mode | what changes | expected err |
 * |---|---|---|
 * | signature | one bit of the signature flipped | invalid_key |
 * | iss | `iss` replaced, re-signed with the same key | invalid_issuer |
 * | aud | `aud` replaced, re-signed | invalid_audience |
 * | kid | header `kid` names no known key, re-signed | invalid_key |
 * | typ | header `typ` is `JWT`, re-signed | invalid_request |
 * | unsigned | `alg: none`, signature removed | invalid_key |
 *
 * Re-signing modes need the signer; `signature` and `unsigned` work on any token.
 */
import {CompactSign} from 'jose'

import {decodeBase64url, encodeBase64url} from './base64url.js'
import {PushpullError} from './errors.js'
import type {Signer} from './keys.js'
import {decodeToken} from './set.js'

export const TAMPER_MODES = ['signature', 'iss', 'aud', 'kid', 'typ', 'unsigned'] as const
export type TamperMode = (typeof TAMPER_MODES)[number]

export const EXPECTED_ERR: Readonly<Record<TamperMode, string>> = Object.freeze({
  aud: 'invalid_audience',
  iss: 'invalid_issuer',
  kid: 'invalid_key',
  signature: 'invalid_key',
  typ: 'invalid_request',
  unsigned: 'invalid_key',
})

export const TAMPERED_ISSUER = 'https://tampered.invalid/issuer'
export const TAMPERED_AUDIENCE = 'https://tampered.invalid/audience'
export const TAMPERED_KID = 'pushpull-tampered-unknown-kid'

export interface TamperedSet {
  token: string
  jti: string
  mode: TamperMode
  expectedErr: string
}

const encoder = new TextEncoder()

async function resign(header: Record<string, unknown>, payload: Record<string, unknown>, signer: Signer | undefined, mode: TamperMode): Promise<string> {
  if (signer === undefined || signer.alg === 'none' || signer.key === undefined) {
    throw new PushpullError('ERR_USAGE', `--tamper ${mode} re-signs the SET: give the key it was signed with (--signing-key or --secret)`)
  }

  const protectedHeader = {...header, alg: signer.alg} as {alg: string}
  try {
    return await new CompactSign(encoder.encode(JSON.stringify(payload))).setProtectedHeader(protectedHeader).sign(signer.key)
  } catch (error) {
    throw new PushpullError('ERR_KEY_INVALID', `re-signing the tampered SET with ${signer.alg} failed: ${(error as Error).message}`, {cause: error})
  }
}

/** Break `token` the way `mode` says. */
export async function tamperToken(token: string, mode: TamperMode, signer?: Signer): Promise<TamperedSet> {
  const decoded = decodeToken(token)
  const header = {...decoded.header} as Record<string, unknown>
  const payload = {...decoded.payload}
  const jti = typeof payload.jti === 'string' ? payload.jti : ''
  if (jti === '') throw new PushpullError('ERR_SET_CLAIMS', 'the SET has no "jti" string')
  const [headerPart = '', payloadPart = ''] = decoded.token.split('.')
  let tampered: string
  switch (mode) {
    case 'signature': {
      const signature = decodeBase64url(decoded.signature)
      if (signature === undefined || signature.length === 0) {
        throw new PushpullError('ERR_USAGE', `--tamper signature needs a signed SET; jti ${jti} is unsigned`)
      }

      signature[signature.length - 1]! ^= 0x01
      tampered = `${headerPart}.${payloadPart}.${encodeBase64url(signature)}`
      break
    }

    case 'unsigned': {
      const {kid: _kid, ...rest} = header
      tampered = `${encodeBase64url(JSON.stringify({...rest, alg: 'none'}))}.${payloadPart}.`
      break
    }

    case 'iss': {
      tampered = await resign(header, {...payload, iss: TAMPERED_ISSUER}, signer, mode)
      break
    }

    case 'aud': {
      tampered = await resign(header, {...payload, aud: TAMPERED_AUDIENCE}, signer, mode)
      break
    }

    case 'kid': {
      tampered = await resign({...header, kid: TAMPERED_KID}, payload, signer, mode)
      break
    }

    case 'typ': {
      tampered = await resign({...header, typ: 'JWT'}, payload, signer, mode)
      break
    }
  }

  return {expectedErr: EXPECTED_ERR[mode], jti, mode, token: tampered}
}
