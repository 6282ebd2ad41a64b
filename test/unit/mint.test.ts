import {createPublicKey} from 'node:crypto'
import {mkdtempSync, writeFileSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'

import {describe, expect, it} from 'vitest'

import {isPushpullError} from '../../src/lib/errors.js'
import {generateKeyPair, readSigningKey, secretSigner, unsignedSigner} from '../../src/lib/keys.js'
import {buildClaims, mintSet} from '../../src/lib/mint.js'
import {decodeSetUnverified, generatePeerKey, verifySetSignature} from '../helpers/peers/set-token.js'

const NOW = 1_760_000_000_123
const EVENT = 'https://schemas.openid.net/secevent/caep/event-type/session-revoked'
const base = {events: {[EVENT]: {}}, iss: 'https://idp.example'}
const fixed = {now: () => NOW, randomUUID: () => '00000000-0000-4000-8000-000000000001'}

describe('buildClaims', () => {
  it('fills jti (a UUID v7 of the mint clock) and iat (now, in seconds) and keeps exactly the events given', () => {
    expect(buildClaims(base, fixed)).toEqual({events: {[EVENT]: {}}, iat: 1_760_000_000, iss: 'https://idp.example', jti: '00000000-0000-4000-8000-000000000001'})
    const a = buildClaims(base, {now: () => NOW})
    const b = buildClaims(base, {now: () => NOW})
    expect(a.jti).toMatch(/^[\da-f]{8}-[\da-f]{4}-7[\da-f]{3}-[89ab][\da-f]{3}-[\da-f]{12}$/)
    // The first 48 bits are the mint clock in milliseconds.
    expect(Number.parseInt(a.jti.replace('-', '').slice(0, 12), 16)).toBe(NOW)
    expect(a.jti).not.toBe(b.jti)
  })

  it('carries aud (one or many), txn, toe, sub_id, a given jti and iat', () => {
    const claims = buildClaims({...base, aud: ['a', 'b'], iat: 5, jti: 'j', sub_id: {email: 'ana@example.com', format: 'email'}, toe: 4, txn: 't'}, fixed)
    expect(claims).toMatchObject({aud: ['a', 'b'], iat: 5, jti: 'j', sub_id: {email: 'ana@example.com', format: 'email'}, toe: 4, txn: 't'})
    expect(buildClaims({...base, aud: ['only']}).aud).toBe('only')
    expect(buildClaims({...base, aud: 'one'}).aud).toBe('one')
    expect(buildClaims(base)).not.toHaveProperty('aud')
  })

  it('refuses a template that would not make a valid SET', () => {
    try {
      buildClaims({events: {}, iss: 'https://idp.example'})
      throw new Error('expected a failure')
    } catch (error) {
      expect(isPushpullError(error, 'ERR_USAGE')).toBe(true)
      expect((error as Error).message).toBe('cannot mint this SET: the SET "events" claim is empty; a SET carries at least one event')
    }
  })
})

describe('mintSet', () => {
  it('signs HS256 with typ secevent+jwt and kid; an independent verifier accepts it', async () => {
    const peer = generatePeerKey('HS256', 'h1')
    const minted = await mintSet(base, secretSigner(peer.secret as Buffer, {kid: 'h1'}), fixed)
    expect(minted.header).toEqual({alg: 'HS256', kid: 'h1', typ: 'secevent+jwt'})
    const decoded = decodeSetUnverified(minted.token)
    expect(decoded.header).toEqual({alg: 'HS256', kid: 'h1', typ: 'secevent+jwt'})
    expect(decoded.claims).toEqual(minted.claims)
    expect(verifySetSignature(minted.token, [peer])).toBe(true)
    expect(verifySetSignature(minted.token, [generatePeerKey('HS256', 'h1')])).toBe(false)
  })

  it('signs ES256 from a generated key; an independent verifier accepts it', async () => {
    const pair = await generateKeyPair('ES256', 'e1')
    const path = join(mkdtempSync(join(tmpdir(), 'pushpull-mint-')), 'k.pem')
    writeFileSync(path, pair.privatePem)
    const minted = await mintSet(base, await readSigningKey(path, {kid: 'e1'}))
    const publicKey = createPublicKey({format: 'jwk', key: pair.publicJwks.keys[0] as never})
    expect(verifySetSignature(minted.token, [{alg: 'ES256', kid: 'e1', publicKey}])).toBe(true)
  })

  it('mints unsigned SETs only with the unsigned signer: alg none and an empty signature', async () => {
    const minted = await mintSet(base, unsignedSigner(), fixed)
    expect(minted.token.endsWith('.')).toBe(true)
    expect(minted.token.split('.')).toHaveLength(3)
    expect(decodeSetUnverified(minted.token).header).toEqual({alg: 'none', typ: 'secevent+jwt'})
  })

  it('mints a batch with distinct jti values', async () => {
    const signer = secretSigner('s3cret')
    const tokens = await Promise.all(Array.from({length: 100}, async () => mintSet(base, signer)))
    expect(new Set(tokens.map((t) => t.claims.jti)).size).toBe(100)
  })

  it('encodes claims of every size exactly (small, multi-byte UTF-8, past the encode buffer, past its cap), interleaved', async () => {
    const peer = generatePeerKey('HS256', 'h1')
    const signer = secretSigner(peer.secret as Buffer, {kid: 'h1'})
    const notes = ['short', `${'ü€𝄞'.repeat(2000)}`, 'x'.repeat(100_000), 'after the big ones', 'é'.repeat(300)]
    for (const note of notes) {
      const minted = await mintSet({...base, extra: {note}}, signer, fixed)
      const payloadPart = minted.token.split('.')[1] as string
      expect(payloadPart).toBe(Buffer.from(JSON.stringify(minted.claims), 'utf8').toString('base64url'))
      expect(decodeSetUnverified(minted.token).claims.note).toBe(note)
      expect(verifySetSignature(minted.token, [peer])).toBe(true)
    }
  })

  it('refuses a signer without a key', async () => {
    await expect(mintSet(base, {alg: 'ES256'})).rejects.toThrow('the ES256 signer has no key')
  })
})
