/**
 * Heap growth for the long-running commands (`listen`, `stream`).
 *
 * V8 sizes the heap after each full collection from what survived, times a growing factor that it
 * raises when the program allocates fast. A receiver taking tens of thousands of SETs a second
 * allocates fast (one short-lived object graph per SET), so V8 lets the heap run far past what is
 * live before collecting: a million-SET session peaked at 190-220 MiB of RSS with 40-70 MiB live.
 * Capping the factor at 1.2 keeps RSS flat (about 150-160 MiB for the same session) at the same
 * throughput; the collector just runs a little more often.
 *
 * V8 reads this factor at every full collection, so setting it once the process runs takes effect
 * (it is a sizing heuristic: no object or state depends on it). A user who chose V8 heap settings
 * (in NODE_OPTIONS or node's own arguments) keeps them: nothing is changed then.
 */
import {setFlagsFromString} from 'node:v8'

/** Percent the heap may grow past the live size after a full collection. */
export const HEAP_GROWING_PERCENT = 20

const USER_HEAP_FLAGS = /--(heap[-_]growing[-_]percent|max[-_]old[-_]space[-_]size|max[-_]heap[-_]size|max[-_]semi[-_]space[-_]size)\b/

/** Whether to bound heap growth, given node's arguments and NODE_OPTIONS. */
export function shouldBoundHeapGrowth(execArgv: readonly string[], nodeOptions: string | undefined): boolean {
  return !execArgv.some((arg) => USER_HEAP_FLAGS.test(arg)) && !USER_HEAP_FLAGS.test(nodeOptions ?? '')
}

/** Bound V8's heap growth for this process (see the module comment). Returns whether it did. */
export function boundHeapGrowth(execArgv: readonly string[] = process.execArgv, nodeOptions: string | undefined = process.env.NODE_OPTIONS): boolean {
  if (!shouldBoundHeapGrowth(execArgv, nodeOptions)) return false
  setFlagsFromString(`--heap-growing-percent=${HEAP_GROWING_PERCENT}`)
  return true
}
