/**
 * Time-ordered identifiers for the `jti` of SETs pushpull mints: UUID version 7 (RFC 9562,
 * section 5.7). The first 48 bits are the Unix time in milliseconds, so identifiers made later sort
 * later. A receiver that indexes SETs by `jti` (pushpull's own state database does, to deduplicate)
 * then appends to its index instead of writing to a random page of it for every SET. The other 74
 * bits are random (122 random bits for a version 4 UUID): within one millisecond, identifiers stay
 * unpredictable and collisions stay out of reach.
 */
import {randomFillSync} from 'node:crypto'

const HEX = Array.from({length: 256}, (_, byte) => byte.toString(16).padStart(2, '0'))
/** Random bytes drawn in blocks (one call per 256 identifiers). */
const POOL = Buffer.alloc(256 * 10)
let poolAt = POOL.length

/** A UUID version 7 string for `now` (ms since the epoch; default the current time). */
export function uuidV7(now: number = Date.now()): string {
  if (poolAt + 10 > POOL.length) {
    randomFillSync(POOL)
    poolAt = 0
  }

  const at = poolAt
  poolAt += 10
  const ms = Math.max(0, Math.floor(now))
  // 48-bit big-endian timestamp, split so every part stays a safe integer.
  const high = Math.floor(ms / 0x1_0000_0000) & 0xff_ff
  const low = ms >>> 0
  const bytes = [
    high >>> 8,
    high & 0xff,
    low >>> 24,
    (low >>> 16) & 0xff,
    (low >>> 8) & 0xff,
    low & 0xff,
    0x70 | ((POOL[at] as number) & 0x0f), // version 7
    POOL[at + 1] as number,
    0x80 | ((POOL[at + 2] as number) & 0x3f), // variant 10
    ...POOL.subarray(at + 3, at + 10),
  ]
  const hex = bytes.map((byte) => HEX[byte] as string)
  return `${hex.slice(0, 4).join('')}-${hex.slice(4, 6).join('')}-${hex.slice(6, 8).join('')}-${hex.slice(8, 10).join('')}-${hex.slice(10).join('')}`
}
