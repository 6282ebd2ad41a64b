/**
 * Where the SSF transmitter handler keeps its streams. The handler only needs these four calls,
 * so a durable store (a table in the state database) can replace the in-memory one without
 * touching the handler. Records are plain JSON values.
 */
import type {StreamConfig} from './client.js'

export interface StoredSubject {
  subject: Record<string, unknown>
  verified?: boolean
}

export interface StoredStream {
  config: StreamConfig
  status: 'enabled' | 'paused' | 'disabled'
  reason?: string
  subjects: StoredSubject[]
  /** When the last verification was requested (ms), for min_verification_interval. */
  lastVerificationAt?: number
  createdAt: number
}

export interface SsfStreamStore {
  list(): StoredStream[]
  get(streamId: string): StoredStream | undefined
  put(stream: StoredStream): void
  delete(streamId: string): boolean
}

/** Streams in memory, in creation order (`listen --ssf` without a state database, tests). */
export class MemorySsfStreamStore implements SsfStreamStore {
  private readonly streams = new Map<string, StoredStream>()

  list(): StoredStream[] {
    return [...this.streams.values()].map((stream) => structuredClone(stream))
  }

  get(streamId: string): StoredStream | undefined {
    const stream = this.streams.get(streamId)
    return stream === undefined ? undefined : structuredClone(stream)
  }

  put(stream: StoredStream): void {
    this.streams.set(stream.config.stream_id, structuredClone(stream))
  }

  delete(streamId: string): boolean {
    return this.streams.delete(streamId)
  }
}
