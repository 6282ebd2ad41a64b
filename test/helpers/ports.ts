/** Loopback listening helpers shared by the spec peers and the fault proxy. */
import {createServer, type Server as NetServer} from 'node:net'
import type {AddressInfo} from 'node:net'

export const LOOPBACK = '127.0.0.1'

/** Listen on 127.0.0.1 port 0 and resolve with the port the kernel chose. */
export async function listenLoopback(server: Pick<NetServer, 'listen' | 'once' | 'off' | 'address'>): Promise<number> {
  await new Promise<void>((resolve, reject) => {
    const onError = (error: Error) => reject(error)
    server.once('error', onError)
    server.listen(0, LOOPBACK, () => {
      server.off('error', onError)
      resolve()
    })
  })
  return (server.address() as AddressInfo).port
}

/**
 * A loopback port that nothing listens on right now (bound, then released). Useful for
 * "connection refused" tests; another process could in theory take it in between.
 */
export async function unusedPort(): Promise<number> {
  const server = createServer()
  const port = await listenLoopback(server)
  await new Promise<void>((resolve) => server.close(() => resolve()))
  return port
}
