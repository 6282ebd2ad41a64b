/** Strict base64url (RFC 4648 section 5, no padding) helpers for compact JWS parts. */

const BASE64URL = /^[A-Za-z0-9_-]*$/

/** True when `text` is unpadded base64url whose length is a valid encoding length. */
export function isBase64url(text: string): boolean {
  return BASE64URL.test(text) && text.length % 4 !== 1
}

/** Decode unpadded base64url; returns undefined when `text` is not valid base64url. */
export function decodeBase64url(text: string): Buffer | undefined {
  if (!isBase64url(text)) return undefined
  return Buffer.from(text, 'base64url')
}

export function encodeBase64url(data: string | Uint8Array): string {
  return (typeof data === 'string' ? Buffer.from(data, 'utf8') : Buffer.from(data)).toString('base64url')
}
