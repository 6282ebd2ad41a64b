/**
 * Peer-supplied text (setErr descriptions, error bodies, event reasons) is stored and shown only
 * after this: terminal control characters and bidi overrides are removed and the length is capped.
 */
// eslint-disable-next-line no-control-regex
const UNSAFE = /[\u0000-\u0008\u000B-\u001F\u007F-\u009F\u200E\u200F\u202A-\u202E\u2066-\u2069]/g

export const DEFAULT_MAX_TEXT = 500

export function sanitizeText(text: string, maxLength = DEFAULT_MAX_TEXT): string {
  const clean = text.replaceAll(UNSAFE, '')
  return clean.length > maxLength ? `${clean.slice(0, maxLength)}…` : clean
}
