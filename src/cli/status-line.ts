import {stripVTControlCharacters} from 'node:util'

/** A live line of counts on a terminal (stderr), shared by `listen` and `stream`. */
export interface StatusLine {
  /** Redraw soon (at most every `intervalMs`). */
  update(): void
  /** Erase the line before other text is written to the terminal. */
  clear(): void
  /** Hide the line while a prompt owns the terminal (true), show it again (false). */
  pause(paused: boolean): void
  stop(): void
}

const ERASE = '\r\u001B[2K'

/** Fit `text` to `width` columns; a line too long loses its colours rather than be cut inside an escape code. */
export function fitToWidth(text: string, width: number): string {
  const plain = stripVTControlCharacters(text)
  if (plain.length <= width) return text
  return `${plain.slice(0, Math.max(0, width - 1))}…`
}

/**
 * A live line on `stream`, only when it is a TTY; otherwise every method does nothing.
 * `\r` + erase-line keeps it on one line; it is erased before other output and redrawn after,
 * and redrawn every second so ages and rates stay current.
 */
export function createStatusLine(stream: NodeJS.WriteStream, render: () => string, intervalMs = 250): StatusLine {
  if (!stream.isTTY) return {clear() {}, pause() {}, stop() {}, update() {}}
  let shown = false
  let paused = false
  let timer: NodeJS.Timeout | undefined
  const erase = (): void => {
    if (shown) stream.write(ERASE)
    shown = false
  }

  const draw = (): void => {
    timer = undefined
    if (paused) return
    stream.write(`${ERASE}${fitToWidth(render(), stream.columns ?? 120)}`)
    shown = true
  }

  const ticker = setInterval(draw, 1000)
  ticker.unref()
  return {
    clear: erase,
    pause(value: boolean) {
      paused = value
      if (paused) erase()
    },
    stop() {
      clearInterval(ticker)
      clearTimeout(timer)
      erase()
    },
    update() {
      if (timer !== undefined) return
      timer = setTimeout(draw, intervalMs)
      timer.unref()
    },
  }
}
