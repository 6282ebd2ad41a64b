/**
 * Synchronous JWS signature primitives on node:crypto, for the keys pushpull uses every day.
 *
 * jose 6 goes through WebCrypto: every operation is a job on libuv's thread pool plus several
 * promise hops, which costs a multiple of the raw `node:crypto` rate for one SET at a time (see
 * docs/toolchain.md). Here a (KeyObject, alg) pair is turned once into a closure that calls
 * `crypto.verify` / `crypto.sign` / `crypto.hash` (HMAC) directly.
 *
 * The fast path covers exactly the keys whose jose verdict it can reproduce: public (or private,
 * for signing) RSA keys of 2048 bits or more for RS256 and PS256, P-256 / P-384 keys for ES256 /
 * ES384, Ed25519 keys for EdDSA, and non-empty secrets for HS256 (HMAC from precomputed pads with
 * the one-shot `crypto.hash`, see `createHmacSha256`). For anything else (an `rsa-pss`
 * key with parameters, a short RSA key, a private key offered for verification ...) the factories
 * return `undefined` and the caller uses jose, so its errors stay exactly jose's.
 */
import * as nodeCrypto from 'node:crypto'
import {constants, createHash, createHmac, type KeyObject, sign, timingSafeEqual, verify} from 'node:crypto'

/** Checks `signature` over the ASCII `signingInput` (`<header>.<payload>`). Never throws. */
export type FastVerify = (signingInput: string, signature: Buffer) => boolean
/** Signs the ASCII `signingInput` and returns the raw JWS signature bytes. */
export type FastSign = (signingInput: string) => Buffer
/**
 * Checks the base64url signature part `signaturePart` (already known to be valid base64url) over
 * `signingInput`. Same verdict as `FastVerify` on the decoded bytes. Never throws for HS256.
 */
export type FastVerifyEncoded = (signingInput: string, signaturePart: string) => boolean
/** Signs the ASCII `signingInput` and returns the JWS signature part (base64url). */
export type FastSignEncoded = (signingInput: string) => string

/** The smallest RSA modulus jose accepts for RS256 / PS256 (and so do we). */
export const MIN_RSA_BITS = 2048

/** ES256 / ES384 signatures are r || s (IEEE P1363), 2 x 32 and 2 x 48 bytes. */
const ECDSA = {ES256: {bytes: 64, curve: 'prime256v1', hash: 'sha256'}, ES384: {bytes: 96, curve: 'secp384r1', hash: 'sha384'}} as const
const PSS_SALT_BYTES = 32

type Usage = 'sign' | 'verify'

function rsaFits(key: KeyObject): boolean {
  const bits = key.asymmetricKeyDetails?.modulusLength
  return key.asymmetricKeyType === 'rsa' && bits !== undefined && bits >= MIN_RSA_BITS
}

/** True when the fast path reproduces jose for this key, algorithm and usage. */
export function fastPathCovers(key: KeyObject, alg: string, usage: Usage): boolean {
  if (alg === 'HS256') return key.type === 'secret' && (key.symmetricKeySize ?? 0) > 0
  if (key.type !== (usage === 'verify' ? 'public' : 'private')) return false
  switch (alg) {
    case 'RS256':
    case 'PS256': {
      return rsaFits(key)
    }

    case 'ES256':
    case 'ES384': {
      return key.asymmetricKeyType === 'ec' && key.asymmetricKeyDetails?.namedCurve === ECDSA[alg].curve
    }

    case 'EdDSA': {
      return key.asymmetricKeyType === 'ed25519'
    }

    default: {
      return false
    }
  }
}

// --- HMAC-SHA256 (RFC 2104) from precomputed pads ---------------------------------------------

/**
 * `crypto.hash`, the one-shot digest (Node >= 20.12 and >= 21.7); undefined on older runtimes, where
 * HMACs go through `createHmac`.
 */
const oneShotHash: typeof nodeCrypto.hash | undefined = (nodeCrypto as Partial<typeof nodeCrypto>).hash

/** SHA-256 block size (the HMAC key is padded to it) and digest size, in bytes. */
const SHA256_BLOCK_BYTES = 64
const SHA256_BYTES = 32
/** The per-key message buffer starts this large (a typical SET) and grows on demand. */
const INITIAL_SCRATCH_BYTES = 2048
/**
 * Largest signing input the per-key buffer grows to hold (the default SET size limit, 64 KiB);
 * a longer one is MACed with `createHmac` instead (the same MAC), so one huge SET does not keep a
 * huge buffer alive for the life of the key.
 */
export const MAX_HMAC_SCRATCH_BYTES = 64 * 1024

/** HMAC-SHA256 under one secret, over the latin1 bytes of an (ASCII) signing input. */
export interface HmacSha256 {
  /** The MAC in unpadded base64url (43 characters). */
  encoded(input: string): string
  /** The MAC bytes (32). */
  bytes(input: string): Buffer
  /** Which implementation this instance uses. */
  readonly implementation: 'one-shot-hash' | 'createHmac'
}

export interface HmacSha256Options {
  /**
   * Compute the MAC from precomputed inner and outer pads with the one-shot `crypto.hash` (two
   * hashes, no Hmac object per call). Default: whenever this runtime has `crypto.hash`. `false`
   * forces `createHmac`, which gives the same MAC; `true` on a runtime without `crypto.hash` is
   * ignored.
   */
  oneShot?: boolean
}

/**
 * HMAC-SHA256 keyed once. With `crypto.hash` the key is turned into the RFC 2104 pads here (a key
 * longer than the 64-byte block is hashed first); each MAC is then
 * `H((K ^ opad) || H((K ^ ipad) || message))`: the message is written after the inner pad in a
 * buffer this instance keeps (calls are synchronous, so they never overlap), and the inner digest
 * after the outer pad. The inner digest travels as a latin1 ('binary') string, which node returns
 * faster than a Buffer.
 * Exactly the MAC `createHmac('sha256', secret)` computes (test/unit/crypto-fast.test.ts).
 */
export function createHmacSha256(secret: Buffer, options: HmacSha256Options = {}): HmacSha256 {
  const key = Buffer.from(secret)
  const hash = options.oneShot === false ? undefined : oneShotHash
  if (hash === undefined) {
    return {
      bytes: (input) => createHmac('sha256', key).update(input, 'latin1').digest(),
      encoded: (input) => createHmac('sha256', key).update(input, 'latin1').digest('base64url'),
      implementation: 'createHmac',
    }
  }

  const digest: typeof nodeCrypto.hash = hash
  const blockKey = key.length > SHA256_BLOCK_BYTES ? createHash('sha256').update(key).digest() : key
  /** (K ^ ipad) || message. */
  let inner = Buffer.alloc(SHA256_BLOCK_BYTES + INITIAL_SCRATCH_BYTES)
  /** (K ^ opad) || inner digest. */
  const outer = Buffer.alloc(SHA256_BLOCK_BYTES + SHA256_BYTES)
  for (let i = 0; i < SHA256_BLOCK_BYTES; i++) {
    const byte = blockKey[i] ?? 0
    inner[i] = byte ^ 0x36
    outer[i] = byte ^ 0x5c
  }

  /** Writes the outer hash input; false when the message is too long for the buffer (use createHmac). */
  function prepare(input: string): boolean {
    const needed = SHA256_BLOCK_BYTES + input.length
    if (needed > inner.length) {
      if (input.length > MAX_HMAC_SCRATCH_BYTES) return false
      const grown = Buffer.alloc(Math.min(Math.max(needed, inner.length * 2), SHA256_BLOCK_BYTES + MAX_HMAC_SCRATCH_BYTES))
      inner.copy(grown, 0, 0, SHA256_BLOCK_BYTES)
      inner = grown
    }

    // latin1 writes one byte per UTF-16 unit, as createHmac's update(input, 'latin1') does.
    const written = inner.write(input, SHA256_BLOCK_BYTES, 'latin1')
    outer.write(digest('sha256', inner.subarray(0, SHA256_BLOCK_BYTES + written), 'binary'), SHA256_BLOCK_BYTES, 'latin1')
    return true
  }

  return {
    bytes: (input) => (prepare(input) ? digest('sha256', outer, 'buffer') : createHmac('sha256', key).update(input, 'latin1').digest()),
    encoded: (input) => (prepare(input) ? digest('sha256', outer, 'base64url') : createHmac('sha256', key).update(input, 'latin1').digest('base64url')),
    implementation: 'one-shot-hash',
  }
}

/** Length of an HS256 MAC in unpadded base64url (32 bytes). */
const HS256_ENCODED_LENGTH = 43

/**
 * True when the two 43-character strings are equal, in time independent of where they differ
 * (no early exit, as `===` would have).
 */
function sameEncodedMac(a: string, b: string): boolean {
  let diff = 0
  for (let i = 0; i < HS256_ENCODED_LENGTH; i++) diff |= a.charCodeAt(i) ^ b.charCodeAt(i)
  return diff === 0
}

/**
 * HS256 on the encoded signature part: the MAC is encoded once (cheaper than decoding the peer's
 * part, allocating a Buffer and comparing bytes) and compared in constant time. Equal strings mean
 * equal bytes. A part that differs may still decode to the same bytes (non-zero spare bits in the
 * last character, which jose's decoder ignores), so a mismatch is settled on the decoded bytes
 * exactly as the byte verifier does. `options` choose the HMAC implementation (`createHmacSha256`);
 * the verdict is the same with either.
 */
export function createHs256EncodedVerifier(secret: Buffer, options: HmacSha256Options = {}): FastVerifyEncoded {
  const hmac = createHmacSha256(secret, options)
  return (input, signaturePart) => {
    const mac = hmac.encoded(input)
    if (signaturePart.length === HS256_ENCODED_LENGTH && sameEncodedMac(mac, signaturePart)) return true
    const signature = Buffer.from(signaturePart, 'base64url')
    return signature.length === SHA256_BYTES && timingSafeEqual(Buffer.from(mac, 'base64url'), signature)
  }
}

function makeVerify(key: KeyObject, alg: string): FastVerify {
  switch (alg) {
    case 'HS256': {
      const hmac = createHmacSha256(key.export())
      return (input, signature) => {
        // Length first: timingSafeEqual throws on different lengths.
        if (signature.length !== SHA256_BYTES) return false
        return timingSafeEqual(hmac.bytes(input), signature)
      }
    }

    case 'ES256':
    case 'ES384': {
      const {bytes, hash} = ECDSA[alg]
      const options = {dsaEncoding: 'ieee-p1363' as const, key}
      return (input, signature) => signature.length === bytes && verify(hash, Buffer.from(input, 'latin1'), options, signature)
    }

    case 'PS256': {
      const options = {key, padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: PSS_SALT_BYTES}
      return (input, signature) => verify('sha256', Buffer.from(input, 'latin1'), options, signature)
    }

    case 'RS256': {
      return (input, signature) => verify('sha256', Buffer.from(input, 'latin1'), key, signature)
    }

    default: {
      // EdDSA (Ed25519): no separate digest.
      return (input, signature) => verify(null, Buffer.from(input, 'latin1'), key, signature)
    }
  }
}

function makeSign(key: KeyObject, alg: string): FastSign {
  switch (alg) {
    case 'HS256': {
      const hmac = createHmacSha256(key.export())
      return (input) => hmac.bytes(input)
    }

    case 'ES256':
    case 'ES384': {
      const options = {dsaEncoding: 'ieee-p1363' as const, key}
      const {hash} = ECDSA[alg]
      return (input) => sign(hash, Buffer.from(input, 'latin1'), options)
    }

    case 'PS256': {
      const options = {key, padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: PSS_SALT_BYTES}
      return (input) => sign('sha256', Buffer.from(input, 'latin1'), options)
    }

    case 'RS256': {
      return (input) => sign('sha256', Buffer.from(input, 'latin1'), key)
    }

    default: {
      return (input) => sign(null, Buffer.from(input, 'latin1'), key)
    }
  }
}

/**
 * What a worker thread needs to check signatures for (key, alg) exactly as `fastVerifierFor`
 * does: plain data and KeyObjects only, so it survives `postMessage` (src/lib/verify-pool.ts).
 */
export type FastVerifyParams =
  | {kind: 'hmac'; secret: Buffer}
  | {kind: 'signature'; hash: string | null; key: KeyObject; dsaEncoding?: 'ieee-p1363'; padding?: number; saltLength?: number; bytes?: number}

/** The parameters of the fast verifier for (key, alg); `undefined` when the fast path does not cover it. */
export function fastVerifyParamsFor(key: KeyObject, alg: string): FastVerifyParams | undefined {
  if (!fastPathCovers(key, alg, 'verify')) return undefined
  switch (alg) {
    case 'HS256': {
      return {kind: 'hmac', secret: key.export()}
    }

    case 'ES256':
    case 'ES384': {
      return {bytes: ECDSA[alg].bytes, dsaEncoding: 'ieee-p1363', hash: ECDSA[alg].hash, key, kind: 'signature'}
    }

    case 'PS256': {
      return {hash: 'sha256', key, kind: 'signature', padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: PSS_SALT_BYTES}
    }

    case 'RS256': {
      return {hash: 'sha256', key, kind: 'signature'}
    }

    default: {
      return {hash: null, key, kind: 'signature'}
    }
  }
}

const verifiers = new WeakMap<KeyObject, Map<string, FastVerify | null>>()
const signers = new WeakMap<KeyObject, Map<string, FastSign | null>>()
const encodedVerifiers = new WeakMap<KeyObject, Map<string, FastVerifyEncoded | null>>()
const encodedSigners = new WeakMap<KeyObject, Map<string, FastSignEncoded | null>>()

function cached<F>(cache: WeakMap<KeyObject, Map<string, F | null>>, key: KeyObject, alg: string, usage: Usage, make: (key: KeyObject, alg: string) => F): F | undefined {
  let byAlg = cache.get(key)
  if (byAlg === undefined) {
    byAlg = new Map()
    cache.set(key, byAlg)
  }

  let entry = byAlg.get(alg)
  if (entry === undefined) {
    entry = fastPathCovers(key, alg, usage) ? make(key, alg) : null
    byAlg.set(alg, entry)
  }

  return entry ?? undefined
}

/**
 * A synchronous verifier for (key, alg), built once per pair and cached; `undefined` when the
 * fast path does not cover the key (use jose then). The signing input must be ASCII, as a
 * compact JWS's always is.
 */
export function fastVerifierFor(key: KeyObject, alg: string): FastVerify | undefined {
  return cached(verifiers, key, alg, 'verify', makeVerify)
}

/** A synchronous signer for (private key or secret, alg); `undefined` when not covered (use jose). */
export function fastSignerFor(key: KeyObject, alg: string): FastSign | undefined {
  return cached(signers, key, alg, 'sign', makeSign)
}

function makeEncodedVerify(key: KeyObject, alg: string): FastVerifyEncoded {
  if (alg === 'HS256') return createHs256EncodedVerifier(key.export())
  const bytes = makeVerify(key, alg)
  return (input, signaturePart) => bytes(input, Buffer.from(signaturePart, 'base64url'))
}

function makeEncodedSign(key: KeyObject, alg: string): FastSignEncoded {
  if (alg === 'HS256') {
    const hmac = createHmacSha256(key.export())
    return (input) => hmac.encoded(input)
  }

  const bytes = makeSign(key, alg)
  return (input) => bytes(input).toString('base64url')
}

/**
 * Like `fastVerifierFor`, taking the signature part as it is in the token (valid base64url). For
 * HS256 this skips decoding the part on the accepting path; the verdict is the same.
 */
export function fastEncodedVerifierFor(key: KeyObject, alg: string): FastVerifyEncoded | undefined {
  return cached(encodedVerifiers, key, alg, 'verify', makeEncodedVerify)
}

/** Like `fastSignerFor`, returning the base64url signature part. */
export function fastEncodedSignerFor(key: KeyObject, alg: string): FastSignEncoded | undefined {
  return cached(encodedSigners, key, alg, 'sign', makeEncodedSign)
}
