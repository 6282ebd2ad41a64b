import {readFileSync} from 'node:fs'
import type {IncomingMessage, Server, ServerResponse} from 'node:http'
import {connect, type Socket} from 'node:net'
import {join} from 'node:path'

import {Agent, request} from 'undici'
import {afterEach, describe, expect, it} from 'vitest'

import {PushpullError} from '../../src/lib/errors.js'
import {
  checkBearer,
  checkContentType,
  checkHostAndOrigin,
  checkMethod,
  closeHttpServer,
  createHttpServer,
  type HttpServerOptions,
  listenHttpServer,
  readBody,
  rejectTokenInQuery,
  requestPath,
  sendJson,
  sendSetError,
  servedHosts,
} from '../../src/lib/transport/http-server.js'
import {ROOT} from '../helpers/cli.js'

const TOKEN = 'listener-s3cret-token'
const LIMIT = 1024

const cleanups: Array<() => Promise<void>> = []
afterEach(async () => {
  while (cleanups.length > 0) await cleanups.pop()?.()
})

type Handler = (req: IncomingMessage, res: ServerResponse) => Promise<void> | void

async function serve(handler: Handler, options: HttpServerOptions = {}): Promise<{port: number; server: Server}> {
  const server = createHttpServer(options, handler)
  const address = await listenHttpServer(server, 0, '127.0.0.1')
  cleanups.push(async () => closeHttpServer(server, 100))
  return {port: address.port, server}
}

interface RawResponse {
  status: number
  head: string
  body: string
  closedAfterMs: number
}

/**
 * Speak HTTP by hand: write `parts` (each after `gapMs`), then wait for the server to answer and
 * close. Returns the raw status line, headers and body.
 */
async function raw(port: number, parts: Array<string | Buffer>, gapMs = 0): Promise<RawResponse> {
  const socket: Socket = connect(port, '127.0.0.1')
  const started = Date.now()
  let data = ''
  socket.setEncoding('utf8').on('data', (chunk: string) => (data += chunk))
  socket.on('error', () => {})
  const closed = new Promise<void>((resolve) => socket.on('close', () => resolve()))
  await new Promise<void>((resolve) => socket.once('connect', () => resolve()))
  for (const part of parts) {
    if (socket.destroyed || data !== '') break
    socket.write(part)
    if (gapMs > 0) await new Promise((resolve) => setTimeout(resolve, gapMs))
  }

  const timer = setTimeout(() => socket.destroy(), 10_000)
  await closed
  clearTimeout(timer)
  const [head = '', body = ''] = data.split('\r\n\r\n')
  const status = Number(/^HTTP\/1\.1 (\d{3})/.exec(head)?.[1] ?? 0)
  return {body, closedAfterMs: Date.now() - started, head, status}
}

/** A handler shaped like the future `listen` endpoints, composed from the building blocks. */
const endpoint: Handler = async (req, res) => {
  rejectTokenInQuery(req)
  checkHostAndOrigin(req, {allowedHosts: servedHosts('127.0.0.1', Number(req.socket.localPort))})
  checkMethod(req, ['POST'])
  checkBearer(req, TOKEN)
  const type = checkContentType(req, ['application/json', 'application/secevents+json'])
  const body = await readBody(req, {maxBytes: LIMIT})
  sendJson(res, 200, {path: requestPath(req), size: body.length, type})
}

async function post(port: number, headers: Record<string, string>, body: string | undefined, path = '/pushpull', method = 'POST') {
  const response = await request(`http://127.0.0.1:${port}${path}`, {body, headers, method: method as 'POST'})
  const text = await response.body.text()
  return {body: text, headers: response.headers, json: text === '' ? undefined : (JSON.parse(text) as Record<string, unknown>), status: response.statusCode}
}

const good = {authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json'}

describe('request guards on a real server', () => {
  it('accepts a good request, including application/json; charset=utf-8', async () => {
    const {port} = await serve(endpoint)
    const plain = await post(port, good, '{"ack":[]}')
    expect(plain.status).toBe(200)
    expect(plain.json).toEqual({path: '/pushpull', size: 10, type: 'application/json'})
    const charset = await post(port, {...good, 'content-type': 'Application/JSON; Charset="UTF-8"'}, '{}')
    expect(charset.status).toBe(200)
    expect(charset.json).toMatchObject({type: 'application/json'})
    const multi = await post(port, {...good, 'content-type': 'application/secevents+json'}, '{}')
    expect(multi.json).toMatchObject({type: 'application/secevents+json'})
  })

  it('405 with Allow for a wrong method', async () => {
    const {port} = await serve(endpoint)
    const response = await post(port, good, undefined, '/pushpull', 'PUT')
    expect(response.status).toBe(405)
    expect(response.headers.allow).toBe('POST')
    expect(response.headers['content-type']).toBe('application/json')
    expect(response.headers['content-language']).toBe('en')
    expect(response.json).toEqual({description: 'method PUT is not allowed here; use POST', err: 'invalid_request'})
  })

  it('415 for a wrong, missing or non-UTF-8 content type, without reading the body', async () => {
    const {port} = await serve(endpoint)
    const text = await post(port, {...good, 'content-type': 'text/plain'}, '{}')
    expect(text.status).toBe(415)
    expect(text.json).toEqual({description: 'Content-Type "text/plain" is not accepted here; send application/json or application/secevents+json (UTF-8)', err: 'invalid_request'})
    const jwt = await post(port, {...good, 'content-type': 'application/secevent+jwt'}, 'a.b.c')
    expect(jwt.status).toBe(415)
    const latin = await post(port, {...good, 'content-type': 'application/json; charset=iso-8859-1'}, '{}')
    expect(latin.status).toBe(415)
    const none = await post(port, {authorization: good.authorization}, undefined)
    expect(none.status).toBe(415)
    expect(none.json).toMatchObject({description: 'no Content-Type is not accepted here; send application/json or application/secevents+json (UTF-8)'})
  })

  it('401 with WWW-Authenticate for a missing or wrong bearer token, never echoing it', async () => {
    const {port} = await serve(endpoint)
    const missing = await post(port, {'content-type': 'application/json'}, '{}')
    expect(missing.status).toBe(401)
    expect(missing.headers['www-authenticate']).toBe('Bearer realm="pushpull"')
    expect(missing.json).toEqual({description: 'a bearer token is required (Authorization: Bearer ...)', err: 'authentication_failed'})

    const wrong = await post(port, {...good, authorization: 'Bearer not-the-token'}, '{}')
    expect(wrong.status).toBe(401)
    expect(wrong.headers['www-authenticate']).toBe('Bearer realm="pushpull", error="invalid_token"')
    expect(wrong.json).toEqual({description: 'the bearer token is not valid', err: 'authentication_failed'})
    expect(wrong.body).not.toContain('not-the-token')

    const prefix = await post(port, {...good, authorization: `Bearer ${TOKEN}x`}, '{}')
    expect(prefix.status).toBe(401)
    const basic = await post(port, {...good, authorization: `Basic ${Buffer.from(`u:${TOKEN}`).toString('base64')}`}, '{}')
    expect(basic.status).toBe(401)
    const lowerScheme = await post(port, {...good, authorization: `bearer ${TOKEN}`}, '{}')
    expect(lowerScheme.status).toBe(200)
  })

  it('a token in the query string is refused (400) and never echoed, even when it is right', async () => {
    const {port} = await serve(endpoint)
    for (const name of ['access_token', 'token', 'Access_Token']) {
      const response = await post(port, good, '{}', `/pushpull?${name}=${TOKEN}`)
      expect(response.status).toBe(400)
      expect(response.json).toEqual({
        description: `tokens are not accepted in the query string ("${name}" was refused and ignored); send Authorization: Bearer instead`,
        err: 'invalid_request',
      })
      expect(response.body).not.toContain(TOKEN)
    }

    const other = await post(port, good, '{}', '/pushpull?stream=abc')
    expect(other.status).toBe(200)
    expect(other.json).toMatchObject({path: '/pushpull'})
  })

  it('a foreign Host is refused with 421 (DNS rebinding)', async () => {
    const {port} = await serve(endpoint)
    const foreign = await post(port, {...good, host: `attacker.example:${port}`}, '{}')
    expect(foreign.status).toBe(421)
    expect(foreign.json).toEqual({description: `Host "attacker.example:${port}" is not served here`, err: 'invalid_request'})
    const wrongPort = await post(port, {...good, host: `127.0.0.1:${port + 1}`}, '{}')
    expect(wrongPort.status).toBe(421)
    for (const host of [`localhost:${port}`, `LOCALHOST:${port}`, `[::1]:${port}`, `127.0.0.1:${port}`]) {
      expect((await post(port, {...good, host}, '{}')).status, host).toBe(200)
    }
  })

  it('a request carrying a browser Origin is refused with 403 unless allowed', async () => {
    const {port} = await serve(endpoint)
    const page = await post(port, {...good, origin: 'https://evil.example'}, '{}')
    expect(page.status).toBe(403)
    expect(page.json).toEqual({description: 'requests from web pages (with an Origin header) are refused', err: 'access_denied'})
    const nullOrigin = await post(port, {...good, origin: 'null'}, '{}')
    expect(nullOrigin.status).toBe(403)

    const {port: port2} = await serve(async (req, res) => {
      checkHostAndOrigin(req, {allowedHosts: servedHosts('127.0.0.1', port2), allowedOrigins: ['https://console.example']})
      sendJson(res, 200, {})
    })
    expect((await post(port2, {origin: 'https://console.example'}, '{}')).status).toBe(200)
    expect((await post(port2, {origin: 'https://console.example.evil'}, '{}')).status).toBe(403)
  })
})

describe('readBody limits', () => {
  it('413 from Content-Length alone, answered before any body byte is sent', async () => {
    const {port} = await serve(endpoint)
    const response = await raw(port, [
      `POST /pushpull HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nAuthorization: Bearer ${TOKEN}\r\nContent-Type: application/json\r\nContent-Length: 10485760\r\n\r\n`,
    ])
    expect(response.status).toBe(413)
    expect(response.head.toLowerCase()).toContain('connection: close')
    expect(JSON.parse(response.body)).toEqual({description: `the request body is larger than the limit of ${LIMIT} bytes`, err: 'invalid_request'})
  })

  it('413 as soon as a chunked body crosses the limit; the rest is never read', async () => {
    let received = 0
    const {port} = await serve(async (req, res) => {
      req.on('data', (chunk: Buffer) => (received += chunk.length))
      await endpoint(req, res)
    })
    const chunk = Buffer.alloc(512, 'x')
    const frame = Buffer.concat([Buffer.from(`${chunk.length.toString(16)}\r\n`), chunk, Buffer.from('\r\n')])
    const head = `POST /pushpull HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nAuthorization: Bearer ${TOKEN}\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n`
    // Up to 200 frames (100 KiB), one every 5 ms; `raw` stops writing once the server answers.
    const response = await raw(port, [head, ...Array.from({length: 200}, () => frame)], 5)
    expect(response.status).toBe(413)
    expect(JSON.parse(response.body)).toMatchObject({description: `the request body is larger than the limit of ${LIMIT} bytes`})
    // The reader stopped at the crossing chunk, far from the 100 KiB offered.
    expect(received).toBeGreaterThan(LIMIT)
    expect(received).toBeLessThan(LIMIT + 64 * 1024)
  })

  it('a body exactly at the limit is read; readBody rejects with ERR_LIMIT_EXCEEDED and status 413', async () => {
    const {port} = await serve(endpoint)
    const exact = await post(port, good, 'x'.repeat(LIMIT))
    expect(exact.json).toMatchObject({size: LIMIT})
    let caught: unknown
    const {port: port2} = await serve(async (req, res) => {
      try {
        await readBody(req, {maxBytes: 4})
      } catch (error) {
        caught = error
      }

      sendJson(res, 200, {})
    })
    await post(port2, {}, 'hello')
    expect(caught).toBeInstanceOf(PushpullError)
    expect(caught).toMatchObject({code: 'ERR_LIMIT_EXCEEDED', details: {limit: 4, status: 413}, message: 'the request body is larger than the limit of 4 bytes'})
  })

  it('readBody with timeoutMs answers 408 when the body stalls', async () => {
    const {port} = await serve(async (req, res) => {
      await readBody(req, {maxBytes: LIMIT, timeoutMs: 150})
      sendJson(res, 200, {})
    })
    const response = await raw(port, [`POST / HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{"sets":`])
    expect(response.status).toBe(408)
    expect(JSON.parse(response.body)).toEqual({description: 'the request body did not arrive within 150 ms', err: 'invalid_request'})
  })
})

describe('server timeouts (node answers 408)', () => {
  const quick: HttpServerOptions = {connectionsCheckingIntervalMs: 50, headersTimeoutMs: 300, requestTimeoutMs: 600}

  it('408 for a body that stalls half way, and the handler never sees a body', async () => {
    let bodies = 0
    const {port} = await serve(async (req, res) => {
      await readBody(req, {maxBytes: LIMIT})
      bodies++
      sendJson(res, 200, {})
    }, quick)
    const response = await raw(port, [`POST / HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{"sets":{`])
    expect(response.status).toBe(408)
    expect(bodies).toBe(0)
    expect(response.closedAfterMs).toBeGreaterThanOrEqual(500)
  })

  it('408 for headers sent one byte at a time past the header timeout', async () => {
    let handled = 0
    const {port} = await serve(() => {
      handled++
    }, quick)
    const head = `GET / HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nX-Slow: ${'a'.repeat(200)}\r\n\r\n`
    const response = await raw(port, [...head], 10)
    expect(response.status).toBe(408)
    expect(handled).toBe(0)
  })

  it('refuses inconsistent timeouts up front', () => {
    expect(() => createHttpServer({headersTimeoutMs: 5000, requestTimeoutMs: 1000}, () => {})).toThrow(
      expect.objectContaining({code: 'ERR_CONFIG', message: 'the header timeout (5000 ms) cannot be longer than the request timeout (1000 ms)'}),
    )
    expect(() => createHttpServer({maxHeadersCount: 0}, () => {})).toThrow(expect.objectContaining({code: 'ERR_CONFIG', message: 'maxHeadersCount must be a positive integer, got 0'}))
  })

  it('431 for headers over maxHeaderSize', async () => {
    const {port} = await serve(() => {}, {maxHeaderSize: 1024})
    const response = await raw(port, [`GET / HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nX-Big: ${'a'.repeat(4096)}\r\n\r\n`])
    expect(response.status).toBe(431)
  })
})

describe('responses and errors', () => {
  it('sendSetError sends the RFC 8935 shape with Content-Language: en', async () => {
    const {port} = await serve((_req, res) => sendSetError(res, 400, 'invalid_key', 'signature does not verify'))
    const response = await post(port, {}, '')
    expect(response.status).toBe(400)
    expect(response.headers['content-language']).toBe('en')
    expect(response.headers['content-type']).toBe('application/json')
    expect(response.json).toEqual({description: 'signature does not verify', err: 'invalid_key'})
  })

  it('a handler that throws something unexpected gets a 500 without internals', async () => {
    const {port} = await serve(async () => {
      throw new Error('/secret/path/db.sqlite is broken')
    })
    const response = await post(port, {}, '')
    expect(response.status).toBe(500)
    expect(response.json).toEqual({description: 'internal error', err: 'invalid_request'})
  })

  it('serves https with the given certificate', async () => {
    const tls = {
      cert: readFileSync(join(ROOT, 'test/fixtures/tls/localhost.crt')),
      key: readFileSync(join(ROOT, 'test/fixtures/tls/localhost.key')),
    }
    const {port} = await serve((_req, res) => sendJson(res, 200, {secure: true}), {tls})
    const dispatcher = new Agent({connect: {ca: tls.cert}})
    try {
      const response = await request(`https://127.0.0.1:${port}/`, {dispatcher})
      expect(response.statusCode).toBe(200)
      expect(await response.body.json()).toEqual({secure: true})
    } finally {
      await dispatcher.close()
    }
  })

  it('listenHttpServer reports an address in use as ERR_CONFIG', async () => {
    const {port} = await serve(() => {})
    const second = createHttpServer({}, () => {})
    await expect(listenHttpServer(second, port, '127.0.0.1')).rejects.toMatchObject({
      code: 'ERR_CONFIG',
      message: `cannot listen on 127.0.0.1:${port}: the address is already in use`,
    })
  })
})

describe('servedHosts', () => {
  it('lists the loopback names for a loopback bind, plus configured names', () => {
    expect(servedHosts('127.0.0.1', 8935, ['pushpull.test'])).toEqual(['localhost:8935', '127.0.0.1:8935', '[::1]:8935', 'pushpull.test:8935'])
  })

  it('lists the bound address alone for a specific non-loopback bind', () => {
    expect(servedHosts('192.0.2.10', 80)).toEqual(['192.0.2.10:80'])
    expect(servedHosts('2001:db8::1', 443)).toEqual(['[2001:db8::1]:443'])
  })

  it('includes loopback and every interface address for a wildcard bind', () => {
    const hosts = servedHosts('0.0.0.0', 9000)
    expect(hosts).toContain('localhost:9000')
    expect(hosts).toContain('127.0.0.1:9000')
  })
})
