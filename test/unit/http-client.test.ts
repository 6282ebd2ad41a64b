import {readFileSync} from 'node:fs'
import {createServer, type IncomingMessage, type Server, type ServerResponse} from 'node:http'
import {createServer as createHttpsServer} from 'node:https'
import {createServer as createNetServer, type AddressInfo, type Server as NetServer, type Socket} from 'node:net'
import {join} from 'node:path'

import {MockAgent} from 'undici'
import {afterEach, describe, expect, it} from 'vitest'

import {PushpullError} from '../../src/lib/errors.js'
import {checkPeerUrl, createHttpClient, DEFAULT_MAX_RESPONSE_BYTES, type HttpClient, redactUrl} from '../../src/lib/transport/http.js'
import {ROOT} from '../helpers/cli.js'

const TLS_DIR = join(ROOT, 'test', 'fixtures', 'tls')
const TOKEN = 'sEcReT-t0ken.value_123'

type Handler = (req: IncomingMessage, res: ServerResponse) => void

const cleanups: Array<() => Promise<void> | void> = []
afterEach(async () => {
  while (cleanups.length > 0) await cleanups.pop()?.()
})

function client(options: Parameters<typeof createHttpClient>[0] = {}): HttpClient {
  const c = createHttpClient(options)
  cleanups.push(async () => c.destroy())
  return c
}

async function listen(server: Server | NetServer): Promise<number> {
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const sockets = new Set<Socket>()
  server.on('connection', (socket: Socket) => {
    sockets.add(socket)
    socket.on('close', () => sockets.delete(socket))
  })
  cleanups.push(
    async () =>
      new Promise<void>((resolve) => {
        for (const socket of sockets) socket.destroy()
        server.close(() => resolve())
      }),
  )
  return (server.address() as AddressInfo).port
}

async function httpServer(handler: Handler): Promise<string> {
  return `http://127.0.0.1:${await listen(createServer(handler))}`
}

async function httpsServer(name: string, handler: Handler): Promise<string> {
  const server = createHttpsServer({cert: readFileSync(join(TLS_DIR, `${name}.crt`)), key: readFileSync(join(TLS_DIR, `${name}.key`))}, handler)
  return `https://127.0.0.1:${await listen(server as unknown as Server)}`
}

/** A TCP server that accepts connections and never answers. */
async function silentServer(): Promise<number> {
  const server = createNetServer(() => {})
  return listen(server)
}

async function failure(promise: Promise<unknown>): Promise<PushpullError> {
  try {
    await promise
  } catch (error) {
    expect(error).toBeInstanceOf(PushpullError)
    return error as PushpullError
  }

  throw new Error('expected the request to fail')
}

function neverShowsToken(error: PushpullError): void {
  expect(error.message).not.toContain(TOKEN)
  expect(JSON.stringify(error.details)).not.toContain(TOKEN)
  expect(String(error.stack)).not.toContain(TOKEN)
}

describe('HttpClient against real loopback servers', () => {
  it('sends the request and returns status, headers and body; bearer and user agent are sent', async () => {
    let seen: IncomingMessage | undefined
    let seenBody = ''
    const url = await httpServer((req, res) => {
      seen = req
      req.setEncoding('utf8').on('data', (chunk: string) => (seenBody += chunk))
      req.on('end', () => {
        res.writeHead(202, {'x-peer': 'yes'})
        res.end('accepted')
      })
    })
    const response = await client({headers: {'X-Extra': 'one'}, token: TOKEN}).request({
      body: 'eyJhbGciOiJub25lIn0.e30.',
      headers: {accept: 'application/json', 'content-type': 'application/secevent+jwt'},
      method: 'POST',
      url: `${url}/events?stream=1`,
    })
    expect(response.status).toBe(202)
    expect(response.headers['x-peer']).toBe('yes')
    expect(response.body.toString()).toBe('accepted')
    expect(response.retryAfterMs).toBeUndefined()
    expect(seen?.url).toBe('/events?stream=1')
    expect(seen?.headers.authorization).toBe(`Bearer ${TOKEN}`)
    expect(seen?.headers['user-agent']).toMatch(/^pushpull\/\d+\.\d+\.\d+/)
    expect(seen?.headers['x-extra']).toBe('one')
    expect(seen?.headers['content-type']).toBe('application/secevent+jwt')
    expect(seenBody).toBe('eyJhbGciOiJub25lIn0.e30.')
  })

  it('returns Retry-After as capped milliseconds', async () => {
    const url = await httpServer((_req, res) => {
      res.writeHead(503, {'retry-after': '7'})
      res.end()
    })
    const response = await client({retryAfterCapMs: 5000}).request({url})
    expect(response.status).toBe(503)
    expect(response.retryAfterMs).toBe(5000)
  })

  it('does not follow redirects: the 3xx comes back as-is', async () => {
    let hits = 0
    const url = await httpServer((req, res) => {
      hits++
      if (req.url === '/target') {
        res.end('followed')
        return
      }

      res.writeHead(307, {location: '/target'})
      res.end()
    })
    const response = await client({token: TOKEN}).request({body: 'x', method: 'POST', url: `${url}/start`})
    expect(response.status).toBe(307)
    expect(response.headers.location).toBe('/target')
    expect(hits).toBe(1)
  })

  it('connection refused -> ERR_CONNECT with the URL (no query) in details', async () => {
    const port = await silentServer()
    await cleanups.pop()?.() // close it again, so the port refuses
    const error = await failure(client({token: TOKEN}).request({url: `http://127.0.0.1:${port}/events?x=1`}))
    expect(error.code).toBe('ERR_CONNECT')
    expect(error.message).toBe(`http://127.0.0.1:${port}/events: connection failed: connect ECONNREFUSED 127.0.0.1:${port}`)
    expect(error.details).toMatchObject({reason: 'ECONNREFUSED', url: `http://127.0.0.1:${port}/events`})
    expect(error.cause).toBeInstanceOf(Error)
    neverShowsToken(error)
  })

  it('a peer that closes the connection without answering -> ERR_CONNECT', async () => {
    const server = createNetServer((socket) => socket.on('data', () => socket.end()))
    const port = await listen(server)
    const error = await failure(client().request({url: `http://127.0.0.1:${port}/`}))
    expect(error.code).toBe('ERR_CONNECT')
    expect(error.message).toBe(`http://127.0.0.1:${port}/: connection failed: other side closed`)
  })

  it('a server that accepts and then says nothing -> ERR_TIMEOUT after the header timeout', async () => {
    const port = await silentServer()
    const error = await failure(client({headersTimeoutMs: 200, token: TOKEN}).request({method: 'POST', body: '{}', url: `http://127.0.0.1:${port}/poll`}))
    expect(error.code).toBe('ERR_TIMEOUT')
    expect(error.message).toBe(`http://127.0.0.1:${port}/poll: timed out waiting for the response headers`)
    expect(error.details).toMatchObject({reason: 'UND_ERR_HEADERS_TIMEOUT', url: `http://127.0.0.1:${port}/poll`})
    neverShowsToken(error)
  })

  it('a body that stalls -> ERR_TIMEOUT after the body timeout, with the status', async () => {
    const url = await httpServer((_req, res) => {
      res.writeHead(200, {'content-type': 'application/json'})
      res.write('{"sets":')
    })
    const error = await failure(client({bodyTimeoutMs: 200}).request({url}))
    expect(error.code).toBe('ERR_TIMEOUT')
    expect(error.message).toBe(`${url}/: timed out waiting for the response body`)
    expect(error.details).toMatchObject({status: 200})
  })

  it('a TLS handshake that never completes -> ERR_TIMEOUT after the connect timeout', async () => {
    const port = await silentServer()
    const error = await failure(client({connectTimeoutMs: 200}).request({url: `https://127.0.0.1:${port}/`}))
    expect(error.code).toBe('ERR_TIMEOUT')
    expect(error.message).toBe(`https://127.0.0.1:${port}/: timed out connecting`)
  })

  it('an oversize response (declared length) -> ERR_RESPONSE_TOO_LARGE', async () => {
    const url = await httpServer((_req, res) => res.end(Buffer.alloc(2048, 'a')))
    const error = await failure(client({maxResponseBytes: 1024}).request({url}))
    expect(error.code).toBe('ERR_RESPONSE_TOO_LARGE')
    expect(error.message).toBe(`${url}/: the response body is larger than 1024 bytes (HTTP 200); raise --max-response-bytes if this is expected`)
    expect(error.details).toMatchObject({limit: 1024, status: 200})
  })

  it('an oversize chunked response is cut as soon as it crosses the limit', async () => {
    let written = 0
    let closed = false
    const url = await httpServer((_req, res) => {
      res.writeHead(200, {'content-type': 'application/json'})
      res.on('close', () => (closed = true))
      const pump = (): void => {
        // Keep writing 4 KiB chunks until the client goes away (bounded so the test cannot spin).
        while (!closed && written < 64 * 1024 * 1024) {
          written += 4096
          if (!res.write(Buffer.alloc(4096, 'b'))) {
            res.once('drain', pump)
            return
          }
        }
      }

      pump()
    })
    const error = await failure(client({maxResponseBytes: 10_000}).request({url}))
    expect(error.code).toBe('ERR_RESPONSE_TOO_LARGE')
    expect(error.details).toMatchObject({limit: 10_000, status: 200})
    await new Promise((resolve) => setTimeout(resolve, 50))
    expect(closed).toBe(true)
    expect(written).toBeLessThan(64 * 1024 * 1024)
  })

  it('a response exactly at the limit is read', async () => {
    const url = await httpServer((_req, res) => res.end(Buffer.alloc(1024, 'c')))
    const response = await client({maxResponseBytes: 1024}).request({url})
    expect(response.body.length).toBe(1024)
    expect(DEFAULT_MAX_RESPONSE_BYTES).toBe(1024 * 1024)
  })

  it('an aborted signal -> ERR_ABORTED (before and during the request)', async () => {
    const port = await silentServer()
    const url = `http://127.0.0.1:${port}/poll`
    const early = await failure(client().request({signal: AbortSignal.abort(), url}))
    expect(early.code).toBe('ERR_ABORTED')
    expect(early.message).toBe(`request to ${url} was aborted`)

    const controller = new AbortController()
    const pending = client({headersTimeoutMs: 10_000}).request({signal: controller.signal, url})
    setTimeout(() => controller.abort(new PushpullError('ERR_ABORTED', 'interrupted by SIGINT')), 50)
    const late = await failure(pending)
    expect(late.code).toBe('ERR_ABORTED')
    expect(late.message).toBe(`request to ${url} was aborted`)
    expect(late.details).toEqual({url})
  })
})

describe('HttpClient TLS', () => {
  const ok: Handler = (_req, res) => res.end('tls ok')

  it('a self-signed certificate -> ERR_TLS with the reason; never a silent downgrade', async () => {
    const url = await httpsServer('localhost', ok)
    const error = await failure(client({token: TOKEN}).request({url}))
    expect(error.code).toBe('ERR_TLS')
    expect(error.message).toBe(`${url}/: TLS failed: self-signed certificate (DEPTH_ZERO_SELF_SIGNED_CERT); use --cacert FILE to trust a private CA`)
    expect(error.details).toMatchObject({reason: 'DEPTH_ZERO_SELF_SIGNED_CERT'})
    neverShowsToken(error)
  })

  it('the same server is trusted with caFile', async () => {
    const url = await httpsServer('localhost', ok)
    const response = await client({caFile: join(TLS_DIR, 'localhost.crt')}).request({url})
    expect(response.status).toBe(200)
    expect(response.body.toString()).toBe('tls ok')
  })

  it('and with insecure', async () => {
    const url = await httpsServer('localhost', ok)
    const response = await client({insecure: true}).request({url})
    expect(response.body.toString()).toBe('tls ok')
  })

  it('a hostname mismatch -> ERR_TLS even with the CA trusted', async () => {
    const url = await httpsServer('other-host', ok)
    const error = await failure(client({caFile: join(TLS_DIR, 'other-host.crt')}).request({url}))
    expect(error.code).toBe('ERR_TLS')
    expect(error.details).toMatchObject({reason: 'ERR_TLS_CERT_ALTNAME_INVALID'})
    expect(error.message).toContain("TLS failed: Hostname/IP does not match certificate's altnames")
  })

  it('an expired certificate -> ERR_TLS even with the CA trusted', async () => {
    const url = await httpsServer('expired', ok)
    const error = await failure(client({caFile: join(TLS_DIR, 'expired.crt')}).request({url}))
    expect(error.code).toBe('ERR_TLS')
    expect(error.message).toBe(`${url}/: TLS failed: certificate has expired (CERT_HAS_EXPIRED); use --cacert FILE to trust a private CA`)
  })

  it('a missing or non-PEM CA file -> ERR_CONFIG naming the file', () => {
    const missing = join(TLS_DIR, 'nope.crt')
    expect(() => createHttpClient({caFile: missing})).toThrow(expect.objectContaining({code: 'ERR_CONFIG', message: expect.stringMatching(new RegExp(`^cannot read the CA file ${missing}: ENOENT`))}))
    const notPem = join(TLS_DIR, 'README.md')
    expect(() => createHttpClient({caFile: notPem})).toThrow(expect.objectContaining({code: 'ERR_CONFIG', message: `the CA file ${notPem} holds no PEM certificate`}))
  })
})

describe('HttpClient input checks', () => {
  it('refuses URLs with credentials or token-like query parameters, without echoing them', async () => {
    const c = client()
    const withUser = await failure(c.request({url: 'http://alice:hunter2@127.0.0.1:1/events'}))
    expect(withUser.code).toBe('ERR_USAGE')
    expect(withUser.message).toBe('http://127.0.0.1:1/events: the URL carries credentials (user:password@); pass a bearer token with --token or --token-file instead')
    expect(withUser.message).not.toContain('hunter2')

    const withToken = await failure(c.request({url: `http://127.0.0.1:1/events?access_token=${TOKEN}`}))
    expect(withToken.code).toBe('ERR_USAGE')
    expect(withToken.message).toBe('http://127.0.0.1:1/events: the query parameter "access_token" looks like a credential; tokens are never sent in URLs, use --token or --token-file')
    neverShowsToken(withToken)

    expect(() => checkPeerUrl('ftp://127.0.0.1/x')).toThrow(expect.objectContaining({code: 'ERR_USAGE', message: 'ftp://127.0.0.1/x: only http:// and https:// URLs are supported here'}))
    expect(() => checkPeerUrl('not a url')).toThrow(expect.objectContaining({code: 'ERR_USAGE', message: 'the peer URL is not a valid absolute URL'}))
  })

  it('redactUrl keeps scheme, host and path only', () => {
    expect(redactUrl('https://u:p@example.com:8443/a/b?token=x#frag')).toBe('https://example.com:8443/a/b')
  })

  it('refuses a bad token or header without echoing the token', () => {
    let error: unknown
    try {
      createHttpClient({token: `${TOKEN}\r\nX-Injected: 1`})
    } catch (caught) {
      error = caught
    }

    expect(error).toMatchObject({code: 'ERR_USAGE', message: 'the bearer token is empty or contains spaces or control characters'})
    neverShowsToken(error as PushpullError)
    expect(() => createHttpClient({headers: {Authorization: `Bearer ${TOKEN}`}})).toThrow(
      expect.objectContaining({code: 'ERR_USAGE', message: 'the Authorization header is set by pushpull itself and cannot be overridden; use --token or --token-file for bearer tokens'}),
    )
    expect(() => createHttpClient({headers: {'Bad Name': 'x'}})).toThrow(expect.objectContaining({code: 'ERR_USAGE', message: '"Bad Name" is not a valid HTTP header name'}))
    expect(() => createHttpClient({headers: {'X-A': 'a\nb'}})).toThrow(expect.objectContaining({code: 'ERR_USAGE', message: 'the value of header X-A contains control characters'}))
  })

  it('refuses out-of-range limits with ERR_CONFIG', () => {
    expect(() => createHttpClient({maxResponseBytes: 0})).toThrow(expect.objectContaining({code: 'ERR_CONFIG', message: 'maxResponseBytes must be a positive integer, got 0'}))
    expect(() => createHttpClient({headersTimeoutMs: 1.5})).toThrow(expect.objectContaining({code: 'ERR_CONFIG', message: 'headersTimeoutMs must be a positive integer, got 1.5'}))
  })
})

describe('HttpClient with an injected dispatcher', () => {
  it('uses it, and leaves it open on close()', async () => {
    const agent = new MockAgent()
    agent.disableNetConnect()
    agent
      .get('https://peer.example')
      .intercept({method: 'POST', path: '/pushpull'})
      .reply(200, {ack: ['a']}, {headers: {'content-type': 'application/json', 'retry-after': 'Sun, 01 Jun 2025 12:00:10 GMT'}})
    const c = createHttpClient({dispatcher: agent, now: () => Date.parse('2025-06-01T12:00:00Z')})
    const response = await c.request({body: '{}', method: 'POST', url: 'https://peer.example/pushpull'})
    expect(response.status).toBe(200)
    expect(JSON.parse(response.body.toString())).toEqual({ack: ['a']})
    expect(response.retryAfterMs).toBe(10_000)
    await c.close()
    agent.get('https://peer.example').intercept({path: '/again'}).reply(204, '')
    expect((await c.request({url: 'https://peer.example/again'})).status).toBe(204)
    await agent.close()
  })
})
