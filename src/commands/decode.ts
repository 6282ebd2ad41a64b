import {Args, Flags} from '@oclif/core'

import {BaseCommand} from '../cli/base-command.js'
import {EXIT_CODE_OF} from '../cli/exit-codes.js'
import {issuerFlags, openVerification} from '../cli/issuer-flag.js'
import {renderSet} from '../cli/render-set.js'
import {readAllText, stdinIsTty} from '../cli/stdin.js'
import {verifyFlags} from '../cli/verify-flags.js'
import {PushpullError, toPushpullError} from '../lib/errors.js'
import {shortNameOf} from '../lib/events.js'
import {errorsOf, type Finding, formatFinding} from '../lib/findings.js'
import {LINT_PROFILES, type LintProfile, lintSet} from '../lib/lint.js'
import {extractTokens, type TokenEntry} from '../lib/set.js'
import {sanitizeText} from '../lib/text.js'
import type {SetVerifier, VerifiedSet} from '../lib/verify.js'

/** One `--json` line per SET. */
export interface DecodedRecord {
  index: number
  key?: string
  verified: boolean
  unsigned: boolean
  unverifiedReason?: string
  header: Record<string, unknown>
  claims: Record<string, unknown>
  events: Array<{uri: string; shortName?: string}>
  findings: Finding[]
}

/** One `--json` line per SET that failed. */
export interface FailedRecord {
  index: number
  key?: string
  error: {code: string; message: string; exitCode: number}
}

export default class Decode extends BaseCommand<typeof Decode> {
  static override args = {
    token: Args.string({
      description: 'A compact SET, or "-" (the default) to read stdin: one or many tokens separated by whitespace, or a JSON document (Communication Object, RFC 8936 poll response) whose "sets" are decoded.',
      // oclif would otherwise read piped stdin into a missing argument; the command reads stdin itself.
      ignoreStdin: true,
      required: false,
    }),
  }

  static override description = `Decode, verify and lint Security Event Tokens.

Prints the header, the claims with readable times, each event with its short name, the subject,
lint findings (SSF 1.0 profile) and a VERIFIED or UNVERIFIED label. Without --jwks, --verify-key or
--secret the signature is NOT checked and the SET is labelled UNVERIFIED. A SET that fails
verification exits 6 naming the reason; with several SETs each is reported and the exit code is
non-zero if any failed.`

  static override examples = [
    {command: '<%= config.bin %> decode "$(cat test/fixtures/rfc8935-push-example.jwt)"', description: 'Decode a token without verifying it'},
    {command: 'cat test/fixtures/rfc8935-push-example.jwt | <%= config.bin %> decode --json', description: 'Tokens from stdin, one JSON line per SET'},
    {
      command: '<%= config.bin %> keys generate --out keys --force && <%= config.bin %> mint --signing-key keys/private.jwk.json --iss https://idp.example --aud https://rp.example --event caep.session-revoked --subject email:ana@example.com | <%= config.bin %> decode --jwks keys/jwks.json --expect-iss https://idp.example',
      description: 'Verify with a JWKS file and an expected issuer',
    },
    {command: '<%= config.bin %> decode < test/fixtures/poll-response.json', description: 'Decode every SET of an RFC 8936 poll response (or a Communication Object)'},
    {
      command: '<%= config.bin %> decode --issuer https://tx.example.com "$TOKEN"',
      description: "Verify with an SSF transmitter's discovered jwks_uri and expect it as the issuer",
    },
  ]

  static override flags = {
    ...verifyFlags,
    ...issuerFlags,
    'max-input-bytes': Flags.integer({default: 16 * 1024 * 1024, description: 'Largest standard input accepted, in bytes.', min: 1}),
    profile: Flags.string({default: 'ssf', description: 'Lint profile: ssf (SSF 1.0) or caep-interop (also RS256 with a key of at least 2048 bits).', options: [...LINT_PROFILES]}),
    strict: Flags.boolean({default: false, description: 'Make lint findings of severity error fail the SET (ERR_SET_LINT, exit 6).'}),
  }

  public async run(): Promise<void> {
    const entries = await this.readEntries()
    const verification = await openVerification(this.flags, {signal: this.signal, userAgent: `pushpull/${this.config.version}`, warn: (m) => this.warnLoud(m)})
    try {
      await this.decodeAll(entries, verification.verifier)
    } finally {
      await verification.close()
    }
  }

  private async decodeAll(entries: TokenEntry[], verifier: SetVerifier): Promise<void> {
    this.verifier = verifier
    if (!verifier.hasKeys) {
      this.warnLoud('no verification key given (--jwks, --verify-key or --secret): signatures are NOT checked; SETs are UNVERIFIED')
    }

    const json = this.jsonEnabled()
    const single = entries.length === 1
    const failures: Array<{entry: TokenEntry; error: PushpullError}> = []
    for (const entry of entries) {
      const title = single ? undefined : `SET ${entry.index + 1} of ${entries.length}`
      let set: VerifiedSet
      let findings: Finding[]
      try {
        ;({findings, set} = await this.check(entry))
      } catch (error_) {
        const error = toPushpullError(error_)
        if (single) throw error
        failures.push({entry, error})
        if (json) {
          this.emitJson({error: {code: error.code, exitCode: EXIT_CODE_OF[error.code], message: error.message}, index: entry.index, ...(entry.key === undefined ? {} : {key: entry.key})} satisfies FailedRecord)
        } else {
          process.stdout.write(`${this.theme.out.bold(title ?? '')}${entry.key === undefined ? '' : ` (sets key ${sanitizeText(entry.key)})`}\n${this.theme.out.red.bold('FAILED')} ${error.message} [${error.code}]\n\n`)
        }

        continue
      }

      if (json) {
        this.emitJson({
          claims: set.claims,
          events: Object.keys(set.claims.events).map((uri) => ({shortName: shortNameOf(uri), uri})),
          findings,
          header: set.header,
          index: entry.index,
          ...(entry.key === undefined ? {} : {key: entry.key}),
          unsigned: set.unsigned,
          ...(set.unverifiedReason === undefined ? {} : {unverifiedReason: set.unverifiedReason}),
          verified: set.verified,
        } satisfies DecodedRecord)
      } else {
        process.stdout.write(`${renderSet(set, findings, this.theme.out, {key: entry.key, title})}\n${single ? '' : '\n'}`)
      }
    }

    const first = failures[0]
    if (first) {
      const summary = failures.map(({entry, error}) => `SET ${entry.index + 1}: ${error.code}`).join(', ')
      throw new PushpullError(first.error.code, `${failures.length} of ${entries.length} SETs failed (${summary}); first: ${first.error.message}`, {
        details: {failed: failures.length, total: entries.length},
      })
    }
  }

  private async readEntries(): Promise<TokenEntry[]> {
    const {token} = this.args
    if (token !== undefined && token !== '-') return [{index: 0, token}]
    if (token === undefined && stdinIsTty()) {
      throw new PushpullError('ERR_USAGE', 'no token: give one as an argument or pipe tokens (or a JSON document with "sets") on stdin')
    }

    const entries = extractTokens(await readAllText(undefined, this.flags['max-input-bytes']))
    if (entries.length === 0) throw new PushpullError('ERR_USAGE', 'standard input holds no token')
    return entries
  }

  private verifier: SetVerifier | undefined

  private async check(entry: TokenEntry): Promise<{set: VerifiedSet; findings: Finding[]}> {
    if (entry.error) throw entry.error
    if (!this.verifier) throw new PushpullError('ERR_INTERNAL', 'the verifier was not built')
    const set = await this.verifier.verify(entry.token)
    if (entry.key !== undefined && entry.key !== set.claims.jti) {
      throw new PushpullError('ERR_SET_CLAIMS', `the "sets" key "${sanitizeText(entry.key, 200)}" does not equal the SET's jti "${sanitizeText(set.claims.jti, 200)}"`)
    }

    const findings = lintSet(set, {keyBits: set.key?.bits, profile: this.flags.profile as LintProfile})
    const errors = errorsOf(findings)
    if (this.flags.strict && errors.length > 0) {
      throw new PushpullError('ERR_SET_LINT', `the SET breaks the ${this.flags.profile} profile (--strict): ${errors.map((f) => sanitizeText(formatFinding(f))).join('; ')}`, {
        details: {findings: errors},
      })
    }

    return {findings, set}
  }
}
