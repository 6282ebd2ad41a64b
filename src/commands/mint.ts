import {Args} from '@oclif/core'

import {BaseCommand} from '../cli/base-command.js'
import {completeTemplate, readSetInputs, setInputFlags} from '../cli/set-input.js'
import {buildSigner, signFlags} from '../cli/sign-flags.js'
import {stdinIsTty} from '../cli/stdin.js'
import {PushpullError} from '../lib/errors.js'
import {checkEventPayload} from '../lib/events.js'
import {errorsOf, formatFinding} from '../lib/findings.js'
import {mintSet} from '../lib/mint.js'

/** One `--json` line per minted SET. */
export interface MintedRecord {
  jti: string
  token: string
  claims: Record<string, unknown>
}

export default class Mint extends BaseCommand<typeof Mint> {
  static override args = {
    file: Args.string({description: 'Event file(s): a claims object with "events", or {"event", "subject", "payload"}; NDJSON for several; "-" for stdin.', ignoreStdin: true, required: false}),
  }

  static override description = `Build and sign Security Event Tokens; prints one compact token per line.

Input comes from event files, NDJSON on stdin (one object per line), or flags (--event, --subject,
--set). A file or line holds either a full claims object with "events", or
{"event": "<short name or URI>", "subject": <shorthand or object>, "payload": {...}}. "jti" is a
time-ordered UUID (version 7) and "iat" is now unless given; the subject becomes the top-level "sub_id". Payloads are
checked against the event catalog: missing required members fail, unusual values warn. Unsigned
SETs (alg "none") only with --unsigned.`

  static override examples = [
    {
      command:
        '<%= config.bin %> mint --secret s3cret --iss https://idp.example --aud https://rp.example --event caep.credential-change --subject email:ana@example.com --set change_type=update --set credential_type=password',
      description: 'An HS256 SET from flags',
    },
    {command: '<%= config.bin %> keys generate --out keys --force && <%= config.bin %> mint --signing-key keys/private.jwk.json --iss https://idp.example --event caep.session-revoked --subject email:ana@example.com --count 3 --json', description: 'Three distinct SETs, as JSON lines'},
    {command: 'echo \'{"event":"risc.account-disabled","subject":"email:ana@example.com","payload":{"reason":"hijacking"}}\' | <%= config.bin %> mint --unsigned --iss https://idp.example', description: 'NDJSON on stdin, unsigned (tests only)'},
  ]

  static override flags = {...signFlags, ...setInputFlags}

  static override strict = false

  public async run(): Promise<void> {
    const {argv} = await this.parse(Mint)
    const files = argv.map(String)
    const flags = this.flags
    if (files.length === 0 && flags.event === undefined && stdinIsTty()) {
      throw new PushpullError('ERR_USAGE', 'nothing to mint: give --event, event files, or NDJSON on stdin')
    }

    const signer = await buildSigner(flags, (message) => this.warnLoud(message))
    if (signer.alg === 'none') this.warnLoud('minting UNSIGNED SETs (alg "none"): receivers refuse them unless told to accept unsigned SETs')
    const defaults = {aud: flags.aud, iss: flags.iss, txn: flags.txn}
    const inputs = readSetInputs({assignments: flags.set, count: flags.count, event: flags.event, files, subject: flags.subject})
    let minted = 0
    for await (const item of inputs) {
      if (this.signal.aborted) throw this.signal.reason
      if (item.kind === 'token') {
        throw new PushpullError('ERR_USAGE', `${item.source}: holds a ready-made compact SET; mint builds new SETs (send passes tokens through)`)
      }

      const template = completeTemplate(item.template, defaults, item.source)
      for (const [uri, payload] of Object.entries(template.events)) {
        const findings = checkEventPayload(uri, payload)
        const errors = errorsOf(findings)
        if (errors.length > 0) {
          throw new PushpullError('ERR_EVENT_INVALID', `${item.source}: ${errors.map((f) => formatFinding(f)).join('; ')}`, {details: {findings: errors}})
        }

        if (minted === 0) for (const warning of findings) this.warnLoud(`${item.source}: ${formatFinding(warning)}`)
      }

      const set = await mintSet(template, signer)
      minted++
      if (this.jsonEnabled()) this.emitJson({claims: set.claims, jti: set.claims.jti, token: set.token} satisfies MintedRecord)
      else process.stdout.write(`${set.token}\n`)
    }

    if (minted === 0) throw new PushpullError('ERR_USAGE', 'the input held nothing to mint')
  }
}
