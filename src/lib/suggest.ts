/** "Did you mean" help for names typed on the command line. */

/** Edit distance (insert, delete, substitute each cost 1). */
export function editDistance(a: string, b: string): number {
  if (a === b) return 0
  let previous = Array.from({length: b.length + 1}, (_, index) => index)
  for (let i = 1; i <= a.length; i++) {
    const current = [i]
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1
      current[j] = Math.min((previous[j] ?? 0) + 1, (current[j - 1] ?? 0) + 1, (previous[j - 1] ?? 0) + cost)
    }

    previous = current
  }

  return previous[b.length] ?? Math.max(a.length, b.length)
}

/**
 * The candidate closest to `input` (case-insensitive), or undefined when none is close enough:
 * at most `maxDistance` edits (default: a third of the input's length, at least 2). A candidate
 * that contains the input, or that the input contains (both at least 4 characters), also counts
 * as close.
 */
export function closestMatch(input: string, candidates: readonly string[], maxDistance?: number): string | undefined {
  const needle = input.trim().toLowerCase()
  if (needle === '') return undefined
  const limit = maxDistance ?? Math.max(2, Math.floor(needle.length / 3))
  let best: string | undefined
  let bestDistance = Number.POSITIVE_INFINITY
  for (const candidate of candidates) {
    const hay = candidate.toLowerCase()
    const contains = needle.length >= 4 && hay.length >= 4 && (hay.includes(needle) || needle.includes(hay))
    // The edit distance is at least the difference in length: a candidate that cannot be within
    // the limit is skipped without the quadratic computation (peer text can be 64 KiB long).
    if (!contains && Math.abs(needle.length - hay.length) > limit) continue
    const distance = contains ? (needle === hay ? 0 : 1) : editDistance(needle, hay)
    if (distance < bestDistance) {
      best = candidate
      bestDistance = distance
    }
  }

  return bestDistance <= limit ? best : undefined
}

/** ` (did you mean "x"?)` or the empty string. */
export function didYouMean(input: string, candidates: readonly string[]): string {
  const match = closestMatch(input, candidates)
  return match === undefined ? '' : ` (did you mean "${match}"?)`
}
