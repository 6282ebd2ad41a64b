/**
 * Every line pushpull prints to stdout goes through `writeOut`, which numbers the writes.
 * `stdoutFlushed()` resolves once every write issued before the call has left the process (into
 * the pipe, socket, file or terminal), or returns undefined when they all have. Later writes do not
 * delay it, so a listener that keeps printing cannot starve its own hand-offs.
 *
 * Receivers wait for it between printing new SETs and acknowledging them: a SET is acked only
 * once its line is out of our memory, so a SIGKILL can never lose a line for a SET the peer was
 * told we handled. Waiting also gives a slow reader backpressure instead of an ever-growing queue.
 */
let issued = 0
let flushed = 0
let waiters: Array<{upTo: number; resolve: () => void}> = []

function settle(): void {
  // A stream completes writes in order, so the count of completions names the last one flushed.
  flushed++
  if (waiters.length === 0) return
  const ready = waiters.filter((waiter) => waiter.upTo <= flushed)
  if (ready.length === 0) return
  waiters = waiters.filter((waiter) => waiter.upTo > flushed)
  for (const waiter of ready) waiter.resolve()
}

export function writeOut(text: string): void {
  issued++
  // The callback runs once the chunk is flushed, or with an error (EPIPE: the reader is gone).
  process.stdout.write(text, 'utf8', settle)
}

export function stdoutFlushed(): Promise<void> | undefined {
  if (flushed >= issued) return undefined
  const upTo = issued
  return new Promise((resolve) => {
    waiters.push({resolve, upTo})
  })
}
