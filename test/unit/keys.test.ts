import {mkdtempSync, readFileSync, writeFileSync} from 'node:fs'
import {createServer, type IncomingMessage, type Server, type ServerResponse} from 'node:http'
import {tmpdir} from 'node:os'
import {join} from 'node:path'

import {calculateJwkThumbprint} from 'jose'
import {afterAll, afterEach, beforeAll, describe, expect, it} from 'vitest'

import {isPushpullError, isTransient, setErrCodeOf} from '../../src/lib/errors.js'
import {
  generateKeyPair,
  JwksUrlKeySource,
  readSigningKey,
  readVerificationKeys,
  StaticKeySource,
} from '../../src/lib/keys.js'
import {createVerifier} from '../../src/lib/verify.js'
import {ROOT} from '../helpers/cli.js'
import {generatePeerKey, importEs256, makeSetClaims, privateJwk, privatePem, publicJwks, publicPem, signSet} from '../helpers/peers/set-token.js'
import {listenLoopback, unusedPort} from '../helpers/ports.js'

const dir = mkdtempSync(join(tmpdir(), 'pushpull-keys-'))
const write = (name: string, text: string): string => {
  const path = join(dir, name)
  writeFileSync(path, text)
  return path
}

async function failure(promise: Promise<unknown>): Promise<{code: string; message: string}> {
  try {
    await promise
  } catch (error) {
    if (isPushpullError(error)) return {code: error.code, message: error.message}
    throw error
  }

  throw new Error('expected a failure')
}

const peer = generatePeerKey('ES256', 'k1')

async function verifiesWith(path: string, token: string): Promise<boolean> {
  const verifier = createVerifier({keys: [new StaticKeySource(await readVerificationKeys(path))]})
  return (await verifier.verify(token)).verified
}

describe('verification keys from files', () => {
  const token = signSet(makeSetClaims(), peer)

  it('reads an SPKI PEM, a PKCS#8 private PEM (public half), a JWK and a JWKS', async () => {
    expect(await verifiesWith(write('spki.pem', publicPem(peer)), token)).toBe(true)
    expect(await verifiesWith(write('pkcs8.pem', privatePem(peer)), token)).toBe(true)
    expect(await verifiesWith(write('one.jwk.json', JSON.stringify(publicJwks([peer]).keys[0])), token)).toBe(true)
    expect(await verifiesWith(write('jwks.json', JSON.stringify(publicJwks([generatePeerKey('ES256', 'k0'), peer]))), token)).toBe(true)
  })

  it('reads the public key of an X.509 certificate', async () => {
    const tlsKey = importEs256(readFileSync(join(ROOT, 'test/fixtures/tls/localhost.key'), 'utf8'), 'tls')
    const signed = signSet(makeSetClaims(), tlsKey)
    expect(await verifiesWith(join(ROOT, 'test/fixtures/tls/localhost.crt'), signed)).toBe(true)
    expect(await failure(verifiesWith(join(ROOT, 'test/fixtures/tls/other-host.crt'), signed))).toMatchObject({code: 'ERR_SET_SIGNATURE'})
  })

  it('skips keys not meant for signatures', async () => {
    const jwk = {...publicJwks([peer]).keys[0], use: 'enc'}
    expect(await failure(readVerificationKeys(write('enc.json', JSON.stringify({keys: [jwk]}))))).toEqual({
      code: 'ERR_KEY_INVALID',
      message: `${join(dir, 'enc.json')}: the JWKS holds no signature keys`,
    })
  })

  it.each([
    ['missing.pem', undefined, 'no such file'],
    ['garbage.txt', 'hello', 'neither PEM nor JSON (JWK or JWKS)'],
    ['bad.pem', '-----BEGIN PUBLIC KEY-----\nQUFBQUFBQUFBQUFB\n-----END PUBLIC KEY-----\n', 'not a usable PEM public key, certificate or private key'],
    ['empty-jwks.json', '{"keys":[]}', 'the JWKS holds no signature keys'],
    ['other.json', '{"foo":1}', 'neither a JWK (no "kty") nor a JWKS (no "keys" array)'],
    ['bad-jwk.json', '{"kty":"EC","crv":"P-256","x":"AAAA","y":"QUFBQUFBQUFBQUFB","kid":"zz"}', 'a JWK (kid "zz") cannot be used: EC key not understood'],
    ['array.json', '[1]', 'not a JWK or JWKS object'],
  ])('refuses %s, naming the file and never the key material', async (name, text, what) => {
    const path = text === undefined ? join(dir, name) : write(name, text)
    const result = await failure(readVerificationKeys(path))
    expect(result).toEqual({code: 'ERR_KEY_INVALID', message: `${path}: ${what}`})
    expect(result.message).not.toContain('QUFB')
  })
})

describe('keys per JWKS file (O3)', () => {
  const jwk = publicJwks([peer]).keys[0]
  const many = (n: number) => JSON.stringify({keys: Array.from({length: n}, () => jwk)})

  it('accepts up to 100 keys by default and refuses 101, naming the file and the limit', async () => {
    expect(await readVerificationKeys(write('jwks-100.json', many(100)))).toHaveLength(100)
    const path = write('jwks-101.json', many(101))
    expect(await failure(readVerificationKeys(path))).toEqual({code: 'ERR_KEY_INVALID', message: `${path}: the JWKS holds 101 keys, over the limit of 100`})
  })

  it('honours a smaller maxKeys', async () => {
    const path = write('jwks-3.json', many(3))
    expect(await readVerificationKeys(path, {maxKeys: 3})).toHaveLength(3)
    expect(await failure(readVerificationKeys(path, {maxKeys: 2}))).toEqual({code: 'ERR_KEY_INVALID', message: `${path}: the JWKS holds 3 keys, over the limit of 2`})
  })
})

describe('signing keys', () => {
  it('reads a private JWK with its alg and kid', async () => {
    const signer = await readSigningKey(write('priv.jwk.json', JSON.stringify(privateJwk(peer))))
    expect(signer).toMatchObject({alg: 'ES256', kid: 'k1'})
  })

  it('reads a PKCS#8 PEM; the kid defaults to the RFC 7638 thumbprint', async () => {
    const signer = await readSigningKey(write('priv.pem', privatePem(peer)))
    const thumbprint = await calculateJwkThumbprint(publicJwks([peer]).keys[0] as never)
    expect(signer).toMatchObject({alg: 'ES256', kid: thumbprint})
    expect((await readSigningKey(join(dir, 'priv.pem'), {kid: 'mine'})).kid).toBe('mine')
  })

  it('refuses public keys and algorithms that do not fit', async () => {
    const pub = write('pub.pem', publicPem(peer))
    expect(await failure(readSigningKey(pub))).toEqual({code: 'ERR_KEY_INVALID', message: `${pub}: holds a public key or certificate; signing needs a private key`})
    const pubJwk = write('pub.jwk.json', JSON.stringify(publicJwks([peer]).keys[0]))
    expect(await failure(readSigningKey(pubJwk))).toEqual({code: 'ERR_KEY_INVALID', message: `${pubJwk}: holds a public JWK; signing needs a private key (with "d")`})
    const priv = join(dir, 'priv.pem')
    expect(await failure(readSigningKey(priv, {alg: 'RS256'}))).toEqual({code: 'ERR_KEY_INVALID', message: `${priv}: the key cannot sign with RS256`})
    expect(await failure(readSigningKey(priv, {alg: 'ES512'}))).toEqual({
      code: 'ERR_USAGE',
      message: 'algorithm "ES512" is not supported; use one of RS256, PS256, ES256, ES384, EdDSA, HS256',
    })
  })
})

describe('generateKeyPair', () => {
  it.each(['RS256', 'PS256', 'ES256', 'ES384', 'EdDSA'])('generates %s', async (alg) => {
    const pair = await generateKeyPair(alg)
    expect(pair.alg).toBe(alg)
    expect(pair.kid).toBe(await calculateJwkThumbprint(pair.publicJwks.keys[0] as never))
    expect(pair.privateJwk).toMatchObject({alg, kid: pair.kid, use: 'sig'})
    expect(pair.privateJwk.d).toEqual(expect.any(String))
    expect(pair.publicJwks.keys).toHaveLength(1)
    expect(pair.publicJwks.keys[0]).not.toHaveProperty('d')
    expect(pair.privatePem.startsWith('-----BEGIN PRIVATE KEY-----')).toBe(true)
  })

  it('uses a given kid and refuses unknown algorithms', async () => {
    expect((await generateKeyPair('ES256', 'tx-1')).kid).toBe('tx-1')
    expect(await failure(generateKeyPair('HS256'))).toEqual({
      code: 'ERR_USAGE',
      message: 'cannot generate a key pair for "HS256"; use one of RS256, PS256, ES256, ES384, EdDSA',
    })
  })
})

describe('JWKS from a URL', () => {
  let server: Server
  let base: string
  let handler: (req: IncomingMessage, res: ServerResponse) => void = (_req, res) => res.end()
  let hits = 0

  beforeAll(async () => {
    server = createServer((req, res) => {
      hits++
      handler(req, res)
    })
    base = `http://127.0.0.1:${await listenLoopback(server)}`
  })

  afterAll(async () => {
    server.closeAllConnections()
    await new Promise((resolve) => server.close(resolve))
  })

  afterEach(() => {
    hits = 0
  })

  const serveJson = (value: unknown) => (_req: IncomingMessage, res: ServerResponse) => {
    res.setHeader('content-type', 'application/json')
    res.end(JSON.stringify(value))
  }

  it('fetches once and verifies with it', async () => {
    handler = serveJson(publicJwks([peer]))
    const source = new JwksUrlKeySource(`${base}/jwks.json`)
    const verifier = createVerifier({keys: [source]})
    for (let i = 0; i < 3; i++) expect((await verifier.verify(signSet(makeSetClaims(), peer))).verified).toBe(true)
    expect(hits).toBe(1)
  })

  it('refetches on an unknown kid at most once per cooldown (injected clock)', async () => {
    let now = 1_000_000
    const next = generatePeerKey('ES256', 'k2')
    handler = serveJson(publicJwks([peer]))
    const source = new JwksUrlKeySource(`${base}/jwks.json`, {cooldownMs: 30_000, now: () => now})
    const verifier = createVerifier({keys: [source]})
    expect((await verifier.verify(signSet(makeSetClaims(), peer))).verified).toBe(true)
    expect(hits).toBe(1)

    // The transmitter rotates its key; within the cooldown the unknown kid causes no fetch.
    handler = serveJson(publicJwks([peer, next]))
    now += 10_000
    expect(await failure(verifier.verify(signSet(makeSetClaims(), next)))).toEqual({code: 'ERR_SET_KID_UNKNOWN', message: `no key with kid "k2" in ${base}/jwks.json`})
    expect(hits).toBe(1)

    // After the cooldown one refetch finds it, even with several SETs asking at once.
    now += 20_000
    const results = await Promise.all([1, 2, 3].map(async () => verifier.verify(signSet(makeSetClaims(), next))))
    expect(results.every((r) => r.verified)).toBe(true)
    expect(hits).toBe(2)

    // An unknown kid right after a refetch fetches nothing.
    now += 1000
    expect(await failure(verifier.verify(signSet(makeSetClaims(), generatePeerKey('ES256', 'k3'))))).toMatchObject({code: 'ERR_SET_KID_UNKNOWN'})
    expect(hits).toBe(2)
  })

  async function fetchFailure(options: ConstructorParameters<typeof JwksUrlKeySource>[1] = {}, path = '/jwks.json') {
    const source = new JwksUrlKeySource(`${base}${path}`, options)
    try {
      await createVerifier({keys: [source]}).verify(signSet(makeSetClaims(), peer))
    } catch (error) {
      if (!isPushpullError(error)) throw error
      expect(isTransient(error)).toBe(true)
      expect(setErrCodeOf(error)).toBeUndefined()
      return {code: error.code, message: error.message}
    }

    throw new Error('expected a failure')
  }

  it('reports HTML as ERR_JWKS_FETCH (transient)', async () => {
    handler = (_req, res) => {
      res.setHeader('content-type', 'text/html')
      res.end('<html>login</html>')
    }

    expect(await fetchFailure()).toEqual({code: 'ERR_JWKS_FETCH', message: `JWKS ${base}/jwks.json: the server answered with HTML, not a JWKS`})
  })

  it('reports a body that is not JSON, an error status, and a JSON that is not a JWKS', async () => {
    handler = (_req, res) => res.end('not json')
    expect(await fetchFailure()).toEqual({code: 'ERR_JWKS_FETCH', message: `JWKS ${base}/jwks.json: the body is not JSON`})
    handler = (_req, res) => {
      res.statusCode = 503
      res.end()
    }

    expect(await fetchFailure()).toEqual({code: 'ERR_JWKS_FETCH', message: `JWKS ${base}/jwks.json: HTTP status 503`})
    handler = serveJson({keys: []})
    expect(await fetchFailure()).toEqual({code: 'ERR_JWKS_FETCH', message: `JWKS ${base}/jwks.json: ${base}/jwks.json: the JWKS holds no signature keys`})
  })

  it('refuses an oversize body, declared or streamed', async () => {
    handler = serveJson({keys: [], pad: 'x'.repeat(5000)})
    expect(await fetchFailure({maxBytes: 1000})).toEqual({code: 'ERR_JWKS_FETCH', message: `JWKS ${base}/jwks.json: the body (5020 bytes) is over the 1000-byte limit`})
    handler = (_req, res) => {
      res.write('{"keys":[')
      const timer = setInterval(() => res.write(`"${'x'.repeat(500)}",`), 1)
      res.on('close', () => clearInterval(timer))
    }

    expect(await fetchFailure({maxBytes: 4000})).toEqual({code: 'ERR_JWKS_FETCH', message: `JWKS ${base}/jwks.json: the body is over the 4000-byte limit`})
  })

  it('refuses a JWKS with more keys than maxKeys (default 100) as ERR_JWKS_FETCH (O3)', async () => {
    const jwk = publicJwks([peer]).keys[0]
    handler = serveJson({keys: Array.from({length: 101}, () => jwk)})
    expect(await fetchFailure()).toEqual({code: 'ERR_JWKS_FETCH', message: `JWKS ${base}/jwks.json: ${base}/jwks.json: the JWKS holds 101 keys, over the limit of 100`})
    handler = serveJson({keys: [jwk, jwk, jwk]})
    expect(await fetchFailure({maxKeys: 2})).toEqual({code: 'ERR_JWKS_FETCH', message: `JWKS ${base}/jwks.json: ${base}/jwks.json: the JWKS holds 3 keys, over the limit of 2`})
    const source = new JwksUrlKeySource(`${base}/jwks.json`, {maxKeys: 3})
    expect((await createVerifier({keys: [source]}).verify(signSet(makeSetClaims(), peer))).verified).toBe(true)
  })

  it('times out on a server that does not answer', async () => {
    handler = () => undefined
    expect(await fetchFailure({timeoutMs: 150})).toEqual({code: 'ERR_JWKS_FETCH', message: `JWKS ${base}/jwks.json: no answer within 150 ms`})
  })

  it('reports a server that is down, and does not hammer it within the cooldown', async () => {
    const port = await unusedPort()
    let now = 0
    const source = new JwksUrlKeySource(`http://127.0.0.1:${port}/jwks.json`, {now: () => now})
    const verifier = createVerifier({keys: [source]})
    const first = await failure(verifier.verify(signSet(makeSetClaims(), peer)))
    expect(first.code).toBe('ERR_JWKS_FETCH')
    expect(first.message).toMatch(new RegExp(`^JWKS http://127.0.0.1:${port}/jwks.json: fetch failed`))
    now += 1000
    expect(await failure(verifier.verify(signSet(makeSetClaims(), peer)))).toEqual(first)
    expect(source.fetchCount).toBe(1)
    now += 30_000
    await failure(verifier.verify(signSet(makeSetClaims(), peer)))
    expect(source.fetchCount).toBe(2)
  })

  it('refuses URLs that are not http(s)', () => {
    expect(() => new JwksUrlKeySource('file:///etc/passwd')).toThrow('the JWKS URL must be http(s), not file:')
    expect(() => new JwksUrlKeySource('nope')).toThrow('the JWKS URL "nope" is not a URL')
  })
})
