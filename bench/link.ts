/**
 * A loopback TCP relay that models a network link: every chunk is forwarded `delayMs` after it
 * arrived, in order, in both directions. Unlike a per-chunk hold-and-wait, chunks in flight
 * overlap, so the relay adds latency without capping bandwidth (a round trip costs 2 x delayMs).
 * Used by figure 1c to show what batching and streaming buy once requests pay a real round trip.
 */
import {createServer, createConnection, type AddressInfo, type Socket} from 'node:net'

export interface Link {
  /** `http://127.0.0.1:PORT`; append the target's path (or swap the scheme for ws:). */
  url: string
  /** Where connections go (an http:// or ws:// URL; its host and port are used). Set before connecting. */
  target: string
  close(): Promise<void>
}

function relay(from: Socket, to: Socket, delayMs: number): void {
  const queue: Array<{at: number; chunk: Buffer}> = []
  let timer: NodeJS.Timeout | undefined
  const pump = (): void => {
    timer = undefined
    const now = performance.now()
    while (queue.length > 0 && (queue[0] as {at: number}).at <= now) to.write((queue.shift() as {chunk: Buffer}).chunk)
    if (queue.length > 0) timer = setTimeout(pump, Math.max(0, (queue[0] as {at: number}).at - now))
    else if (ended) to.end()
  }

  let ended = false
  from.on('data', (chunk: Buffer) => {
    queue.push({at: performance.now() + delayMs, chunk})
    timer ??= setTimeout(pump, delayMs)
  })
  from.on('end', () => {
    ended = true
    if (queue.length === 0 && timer === undefined) to.end()
  })
}

/** Start a link with `delayMs` each way; set its `target` before the first connection. */
export async function startLink(delayMs: number): Promise<Link> {
  const sockets = new Set<Socket>()
  const server = createServer((client) => {
    const {hostname, port} = new URL(link.target)
    client.setNoDelay(true)
    const upstream = createConnection({host: hostname, noDelay: true, port: Number(port)})
    for (const socket of [client, upstream]) {
      sockets.add(socket)
      socket.on('close', () => sockets.delete(socket))
      socket.on('error', () => {
        client.destroy()
        upstream.destroy()
      })
    }

    relay(client, upstream, delayMs)
    relay(upstream, client, delayMs)
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const {port: local} = server.address() as AddressInfo
  const link: Link = {
    async close() {
      for (const socket of sockets) socket.destroy()
      await new Promise<void>((resolve) => server.close(() => resolve()))
    },
    target: '',
    url: `http://127.0.0.1:${local}`,
  }
  return link
}
