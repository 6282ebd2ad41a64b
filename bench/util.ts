/** Measurement helpers shared by the benchmark figures. */
import {performance} from 'node:perf_hooks'

export interface BenchConfig {
  quick: boolean
  /** Rounds per measurement (the figure is their median). */
  rounds: number
  /** Milliseconds per throughput round. */
  roundMs: number
}

export function median(values: readonly number[]): number {
  if (values.length === 0) return Number.NaN
  const sorted = [...values].sort((a, b) => a - b)
  const mid = Math.floor(sorted.length / 2)
  return sorted.length % 2 === 1 ? (sorted[mid] as number) : ((sorted[mid - 1] as number) + (sorted[mid] as number)) / 2
}

export function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return Number.NaN
  const index = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))
  return sorted[index] as number
}

/** Operations per second of `fn` called back to back (awaited when it returns a promise) for `ms`. */
export async function rate(fn: () => unknown, ms: number): Promise<number> {
  // A short warm-up so the first round does not pay for JIT compilation.
  for (let i = 0; i < 20; i++) await fn()
  let ops = 0
  const start = performance.now()
  const end = start + ms
  let now = start
  while (now < end) {
    for (let i = 0; i < 16; i++) {
      const result = fn()
      if (result instanceof Promise) await result
    }

    ops += 16
    now = performance.now()
  }

  return ops / ((now - start) / 1000)
}

/**
 * Measure several contenders side by side: each round runs every contender once, in turn, so a
 * noisy moment hits all of them alike. Returns the median rate of each.
 */
export async function sideBySide(contenders: Record<string, () => unknown>, config: BenchConfig): Promise<Record<string, number>> {
  const samples: Record<string, number[]> = Object.fromEntries(Object.keys(contenders).map((name) => [name, []]))
  for (let round = 0; round < config.rounds; round++) {
    for (const [name, fn] of Object.entries(contenders)) samples[name]?.push(await rate(fn, config.roundMs))
  }

  return Object.fromEntries(Object.entries(samples).map(([name, values]) => [name, median(values)]))
}

export function fmtRate(value: number | undefined): string {
  if (value === undefined || !Number.isFinite(value)) return 'n/a'
  if (value >= 100_000) return `${Math.round(value / 1000)}k/s`
  if (value >= 10_000) return `${(value / 1000).toFixed(1)}k/s`
  return `${Math.round(value)}/s`
}

export function fmtRatio(value: number | undefined): string {
  return value === undefined || !Number.isFinite(value) ? 'n/a' : `${value.toFixed(2)}x`
}

export function fmtMs(value: number | undefined): string {
  return value === undefined || !Number.isFinite(value) ? 'n/a' : `${value.toFixed(value < 10 ? 2 : 0)} ms`
}

/** One table row: figure, what, absolute figures, ratio, target, verdict. */
export interface Row {
  figure: string
  what: string
  value: string
  ratio?: string
  target?: string
  /** true = target met, false = missed, undefined = no target or not measured. */
  met?: boolean
  note?: string
}

export function verdict(met: boolean | undefined): string {
  if (met === undefined) return ''
  return met ? 'met' : 'MISSED'
}
