import {Args, Flags} from '@oclif/core'

import {SsfCommand} from '../../cli/ssf-command.js'
import {ssfFlags} from '../../cli/issuer-flag.js'
import {parseDuration, readCaFile} from '../../cli/transport-flags.js'
import {PushpullError} from '../../lib/errors.js'
import {JwksUrlKeySource} from '../../lib/keys.js'
import {DELIVERY_POLL} from '../../lib/ssf/metadata.js'
import {awaitVerification, DEFAULT_VERIFY_INTERVAL_MS, DEFAULT_VERIFY_TIMEOUT_MS, newVerificationState, type StreamUpdate, type VerificationOutcome} from '../../lib/ssf/verification.js'
import {sanitizeText} from '../../lib/text.js'
import {createHttpAgent} from '../../lib/transport/http.js'
import {createVerifier} from '../../lib/verify.js'

type VerifyResult = ({requested: true; verified: false} & {stream_id: string; state: string}) | ({requested: true; verified: true; stream_id: string} & VerificationOutcome)

const duration = Flags.custom<number>({
  async parse(input, _context, options) {
    return parseDuration(input, options.name)
  },
})

export default class SsfVerify extends SsfCommand<typeof SsfVerify> {
  static override summary = 'Ask the transmitter for a verification event and check that it arrives with our state.'
  static override description = `POSTs {stream_id, state} to the verification endpoint with a fresh random state, then polls the stream's RFC 8936 endpoint (delivery.endpoint_url, or --poll-url) until the verification SET arrives: it must verify with the transmitter's jwks_uri, come from the discovered issuer and carry the same state. The matching SET is acked; a verification SET with another state is answered with the setErr invalid_state. Every other SET is left unacknowledged for the stream's real consumer, and stream-updated events are shown as status changes.

For push streams, use --no-wait and watch "pushpull listen" for the verification event.`

  static override examples = [
    '<%= config.bin %> ssf verify f67e39a0 --issuer https://tx.example.com --token-file rx.token',
    '<%= config.bin %> ssf verify f67e39a0 --issuer https://tx.example.com --token-file rx.token --verify-timeout 1m --json',
    '<%= config.bin %> ssf verify f67e39a0 --issuer https://tx.example.com --token-file rx.token --no-wait',
  ]

  static override args = {'stream-id': Args.string({description: 'The stream to verify.', required: true})}

  static override flags = {
    ...ssfFlags,
    'allow-unsigned': Flags.boolean({default: false, description: 'Accept an unsigned verification SET (alg none); off by default.'}),
    interval: duration({description: `Pause between polls that brought nothing. [default: ${DEFAULT_VERIFY_INTERVAL_MS / 1000}s]`}),
    'poll-url': Flags.string({description: "Poll this RFC 8936 endpoint instead of the stream's delivery.endpoint_url.", helpValue: 'URL'}),
    state: Flags.string({description: 'Use this state instead of a fresh random one.'}),
    'verify-timeout': duration({description: `Give up when no verification SET with our state arrived within this long. [default: ${DEFAULT_VERIFY_TIMEOUT_MS / 1000}s]`}),
    wait: Flags.boolean({allowNo: true, default: true, description: 'Wait for the verification SET (--no-wait only requests it).'}),
  }

  public async run(): Promise<VerifyResult> {
    const streamId = this.args['stream-id']
    const state = this.flags.state ?? newVerificationState()
    return this.withSsf(
      async ({http, metadata, ssf}) => {
        let pollUrl = this.flags['poll-url']
        if (this.flags.wait && pollUrl === undefined) {
          const config = await ssf.getStream(streamId)
          if (config.delivery.method !== DELIVERY_POLL || config.delivery.endpoint_url === undefined) {
            throw new PushpullError('ERR_USAGE', `stream ${streamId} uses ${sanitizeText(config.delivery.method, 80)} delivery, which "ssf verify" cannot watch; run it with --no-wait and watch "pushpull listen" for the verification event`)
          }

          pollUrl = config.delivery.endpoint_url
        }

        await ssf.requestVerification(streamId, state)
        this.note(`verification requested on stream ${streamId} (state ${state})`)
        if (!this.flags.wait || pollUrl === undefined) {
          if (!this.jsonEnabled()) this.log(`requested a verification event with state ${state}; watch the stream for it`)
          return {requested: true, state, stream_id: streamId, verified: false}
        }

        if (metadata.jwks_uri === undefined && !this.flags['allow-unsigned']) {
          throw new PushpullError('ERR_PEER_PROTOCOL', 'the transmitter metadata has no jwks_uri, so its verification SET cannot be verified (use --allow-unsigned only for unsigned test transmitters)')
        }

        // The JWKS is fetched under the same TLS rules as the rest: --cacert, --insecure.
        const tlsFlagsGiven = this.flags.cacert !== undefined || this.flags.insecure
        const agent = metadata.jwks_uri !== undefined && tlsFlagsGiven ? createHttpAgent({ca: this.flags.cacert === undefined ? undefined : await readCaFile(this.flags.cacert), caFile: this.flags.cacert, insecure: this.flags.insecure}) : undefined
        const verifier = createVerifier({
          allowUnsigned: this.flags['allow-unsigned'],
          issuer: metadata.issuer,
          keys: metadata.jwks_uri === undefined ? [] : [new JwksUrlKeySource(metadata.jwks_uri, {dispatcher: agent})],
        })
        const outcome = await awaitVerification({
          client: http,
          intervalMs: this.flags.interval,
          onRejected: (report) => this.warnLoud(`answered ${report.jti} with ${report.err}: ${report.description}`),
          onStreamUpdated: (update: StreamUpdate) => this.note(`stream ${update.streamId ?? streamId} is now ${update.status}${update.reason === undefined ? '' : ` (${update.reason})`}`),
          pollUrl,
          signal: this.signal,
          state,
          streamId,
          timeoutMs: this.flags['verify-timeout'],
          verifier,
        }).finally(async () => agent?.close())
        if (!this.jsonEnabled()) {
          this.log(`${this.theme.out.green('verified')}: stream ${streamId} delivered verification SET ${sanitizeText(outcome.jti, 80)} from ${sanitizeText(outcome.iss, 200)} with our state${outcome.signed ? ', signature valid' : ' (UNSIGNED)'}; acked`)
        }

        return {...outcome, requested: true, stream_id: streamId, verified: true}
      },
      {requireJwks: false},
    )
  }
}
