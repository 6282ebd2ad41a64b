/**
 * A worker-thread pool for SET signature checks: `listen --verify-workers N`, `stream
 * --verify-workers N`. One core verifies roughly 20,000 ES256 SETs a second; a receiver that must
 * keep up with more spreads the signature checks over the other cores.
 *
 *   const pool = createVerifyPool({workers: 2})
 *   const verifier = createVerifier({keys, signatures: pool})   // same verdicts, same errors
 *   ...
 *   await pool.close()
 *
 * Only the signature check moves (it is most of the cost per SET): decoding, header and claim
 * checks, key lookup and every error message stay in the verifier (src/lib/verify.ts). The worker
 * runs exactly the node:crypto call `fastVerifierFor` makes in this thread, with the parameters
 * `fastVerifyParamsFor` gives (src/lib/crypto-fast.ts); the differential tests run through the
 * pool too. Checks queued in the same tick go to the workers in batches (one message per worker
 * and batch), so a batch of 100 SETs costs a few messages, not 100.
 *
 * A worker that dies fails its outstanding checks with ERR_INTERNAL (the receiver then closes the
 * session and the peer redelivers) and is replaced. Idle workers do not keep the process alive.
 */
import {Worker} from 'node:worker_threads'
import type {KeyObject} from 'node:crypto'

import {type FastVerifyParams, fastVerifyParamsFor} from './crypto-fast.js'
import {PushpullError} from './errors.js'
import type {SignatureOffload} from './verify.js'

/** Most checks sent to one worker in one message. */
export const DEFAULT_VERIFY_BATCH = 128
/** The largest pool accepted. */
export const MAX_VERIFY_WORKERS = 64

export interface VerifyPoolOptions {
  /** Worker threads, 1 to 64. */
  workers: number
  /** Most checks per message to a worker. Default 128. */
  maxBatch?: number
}

export interface VerifyPool extends SignatureOffload {
  /** Worker threads in the pool. */
  readonly size: number
  /** Stop every worker; checks still outstanding fail with ERR_INTERNAL. */
  close(): Promise<void>
}

/**
 * The worker: registers key parameters by id, answers batches of checks. Kept as source text (run
 * with `eval`) so it works the same from src (tests, tsx) and from dist. Results: 1 valid,
 * 0 invalid, 2 the primitive threw (message in `errors`).
 */
const WORKER_SOURCE = `
'use strict'
const {parentPort} = require('node:worker_threads')
const {createHmac, timingSafeEqual, verify} = require('node:crypto')
const keys = new Map()
function prepare(p) {
  if (p.kind === 'hmac') return {hmac: p.secret}
  if (p.dsaEncoding !== undefined) return {bytes: p.bytes, hash: p.hash, options: {dsaEncoding: p.dsaEncoding, key: p.key}}
  if (p.padding !== undefined) return {hash: p.hash, options: {key: p.key, padding: p.padding, saltLength: p.saltLength}}
  return {hash: p.hash, options: p.key}
}
function check(k, input, signature) {
  if (k.hmac !== undefined) {
    if (signature.length !== 32) return false
    return timingSafeEqual(createHmac('sha256', k.hmac).update(input, 'latin1').digest(), signature)
  }
  if (k.bytes !== undefined && signature.length !== k.bytes) return false
  return verify(k.hash, Buffer.from(input, 'latin1'), k.options, signature)
}
parentPort.on('message', (message) => {
  if (message.type === 'key') {
    keys.set(message.id, prepare(message.params))
    return
  }
  const {id, keyIds, inputs, signatures} = message
  const results = new Uint8Array(inputs.length)
  const errors = {}
  for (let i = 0; i < inputs.length; i++) {
    const key = keys.get(keyIds[i])
    try {
      if (key === undefined) throw new Error('unknown key id ' + keyIds[i])
      results[i] = check(key, inputs[i], signatures[i]) ? 1 : 0
    } catch (error) {
      results[i] = 2
      errors[i] = String(error && error.message || error)
    }
  }
  parentPort.postMessage({errors, id, results})
})
`

interface PendingCheck {
  keyId: number
  input: string
  signature: Buffer
  resolve: (ok: boolean) => void
  reject: (error: Error) => void
}

interface Slot {
  worker: Worker
  /** Outstanding batches by id. */
  batches: Map<number, PendingCheck[]>
  outstanding: number
}

interface Reply {
  id: number
  results: Uint8Array
  errors: Record<string, string>
}

function checkCount(name: string, value: number, min: number, max: number): number {
  if (!Number.isSafeInteger(value) || value < min || value > max) {
    throw new PushpullError('ERR_CONFIG', `${name} must be an integer from ${min} to ${max}, got ${String(value)}`, {details: {option: name}})
  }

  return value
}

/** Start a pool of `workers` verification threads. */
export function createVerifyPool(options: VerifyPoolOptions): VerifyPool {
  const size = checkCount('verify workers', options.workers, 1, MAX_VERIFY_WORKERS)
  const maxBatch = checkCount('verify batch size', options.maxBatch ?? DEFAULT_VERIFY_BATCH, 1, 65_536)
  const keyIds = new WeakMap<KeyObject, Map<string, number>>()
  const registered: Array<{id: number; params: FastVerifyParams}> = []
  let pending: PendingCheck[] = []
  let flushQueued = false
  let batchSerial = 0
  let closed = false

  const fail = (batch: readonly PendingCheck[], message: string): void => {
    const error = new PushpullError('ERR_INTERNAL', message)
    for (const item of batch) item.reject(error)
  }

  const spawn = (): Slot => {
    const worker = new Worker(WORKER_SOURCE, {eval: true})
    worker.unref()
    const slot: Slot = {batches: new Map(), outstanding: 0, worker}
    for (const {id, params} of registered) worker.postMessage({id, params, type: 'key'})
    worker.on('message', (reply: Reply) => {
      const batch = slot.batches.get(reply.id)
      if (batch === undefined) return
      slot.batches.delete(reply.id)
      slot.outstanding -= batch.length
      if (slot.outstanding === 0) worker.unref()
      for (const [index, item] of batch.entries()) {
        const result = reply.results[index]
        if (result === 2) item.reject(new Error(reply.errors[index] ?? 'the signature check failed'))
        else item.resolve(result === 1)
      }
    })
    const onGone = (why: string): void => {
      const index = slots.indexOf(slot)
      if (index < 0) return
      for (const batch of slot.batches.values()) fail(batch, `a signature verification worker ${why}; the SETs it held are not judged`)
      slot.batches.clear()
      slot.outstanding = 0
      if (closed) return
      slots[index] = spawn()
    }

    worker.on('error', (error) => onGone(`failed: ${error.message}`))
    worker.on('exit', (code) => onGone(`exited (code ${code})`))
    return slot
  }

  const slots: Slot[] = Array.from({length: size}, () => spawn())

  const send = (slot: Slot, batch: PendingCheck[]): void => {
    const id = ++batchSerial
    slot.batches.set(id, batch)
    if (slot.outstanding === 0) slot.worker.ref()
    slot.outstanding += batch.length
    slot.worker.postMessage({
      id,
      inputs: batch.map((item) => item.input),
      keyIds: batch.map((item) => item.keyId),
      signatures: batch.map((item) => item.signature),
      type: 'check',
    })
  }

  const flush = (): void => {
    flushQueued = false
    const queue = pending
    pending = []
    if (closed) {
      fail(queue, 'the signature verification pool is closed')
      return
    }

    // Spread the queue evenly (at most maxBatch per message), least busy worker first.
    const per = Math.min(maxBatch, Math.ceil(queue.length / size))
    for (let start = 0; start < queue.length; start += per) {
      let target = slots[0] as Slot
      for (const slot of slots) if (slot.outstanding < target.outstanding) target = slot
      send(target, queue.slice(start, start + per))
    }
  }

  const keyIdOf = (key: KeyObject, alg: string): number | undefined => {
    let byAlg = keyIds.get(key)
    if (byAlg === undefined) {
      byAlg = new Map()
      keyIds.set(key, byAlg)
    }

    let id = byAlg.get(alg)
    if (id === undefined) {
      const params = fastVerifyParamsFor(key, alg)
      if (params === undefined) return undefined
      id = registered.length + 1
      registered.push({id, params})
      byAlg.set(alg, id)
      for (const slot of slots) slot.worker.postMessage({id, params, type: 'key'})
    }

    return id
  }

  return {
    async check(key: KeyObject, alg: string, signingInput: string, signature: Buffer): Promise<boolean> {
      if (closed) throw new PushpullError('ERR_INTERNAL', 'the signature verification pool is closed')
      const keyId = keyIdOf(key, alg)
      if (keyId === undefined) throw new PushpullError('ERR_INTERNAL', `the signature verification pool cannot check ${alg} with this key`)
      return new Promise<boolean>((resolve, reject) => {
        pending.push({input: signingInput, keyId, reject, resolve, signature})
        if (!flushQueued) {
          flushQueued = true
          queueMicrotask(flush)
        }
      })
    },
    async close() {
      if (closed) return
      closed = true
      const all = slots.splice(0)
      for (const slot of all) {
        for (const batch of slot.batches.values()) fail(batch, 'the signature verification pool is closed')
        slot.batches.clear()
      }

      await Promise.all(all.map(async (slot) => slot.worker.terminate()))
    },
    size,
  }
}
