import {afterEach, describe, expect, it, vi} from 'vitest'

import {createStatusLine, fitToWidth} from '../../src/cli/status-line.js'

/** A fake terminal stream: records what is written. */
function terminal(columns = 40): NodeJS.WriteStream & {written: string[]} {
  const written: string[] = []
  return {columns, isTTY: true, write: (text: string) => written.push(text) > 0, written} as unknown as NodeJS.WriteStream & {written: string[]}
}

describe('status line', () => {
  it('fits long lines to the terminal without cutting inside a colour code', () => {
    const coloured = `\u001B[32m${'a'.repeat(30)}\u001B[39m`
    expect(fitToWidth(coloured, 40)).toBe(coloured)
    expect(fitToWidth(coloured, 10)).toBe(`${'a'.repeat(9)}…`)
  })

  it('does nothing when the stream is not a terminal', () => {
    const written: string[] = []
    const line = createStatusLine({isTTY: false, write: (t: string) => written.push(t) > 0} as unknown as NodeJS.WriteStream, () => 'x', 0)
    line.update()
    line.pause(true)
    line.stop()
    expect(written).toEqual([])
  })

  afterEach(() => {
    vi.useRealTimers()
  })

  it('stays erased while paused and draws again after', () => {
    vi.useFakeTimers()
    const stream = terminal()
    let text = 'first'
    const line = createStatusLine(stream, () => text, 250)
    line.update()
    vi.advanceTimersByTime(250)
    expect(stream.written.at(-1)).toBe('\r\u001B[2Kfirst')
    line.pause(true)
    expect(stream.written.at(-1)).toBe('\r\u001B[2K')
    text = 'second'
    line.update()
    vi.advanceTimersByTime(2000) // the update and two ticks of the one-second redraw
    expect(stream.written.at(-1)).toBe('\r\u001B[2K')
    line.pause(false)
    line.update()
    vi.advanceTimersByTime(250)
    expect(stream.written.at(-1)).toBe('\r\u001B[2Ksecond')
    line.stop()
    expect(stream.written.at(-1)).toBe('\r\u001B[2K')
  })
})
