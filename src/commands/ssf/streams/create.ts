import {SsfCommand} from '../../../cli/ssf-command.js'
import {ssfFlags} from '../../../cli/issuer-flag.js'
import {redactStream, renderStream} from '../../../cli/ssf-render.js'
import {streamConfigFlags, streamInputFrom} from '../../../cli/ssf-stream-flags.js'
import type {StreamConfig} from '../../../lib/ssf/client.js'

export default class SsfStreamsCreate extends SsfCommand<typeof SsfStreamsCreate> {
  static override summary = 'Create an SSF stream (poll by default, or push with --push URL).'
  static override description = `POST to the configuration endpoint. With --poll (the default) the transmitter assigns the poll endpoint, which is printed: use it with "pushpull poll". With --push URL the transmitter will push to URL; --push-token registers the Authorization header it must send (the listener then requires it).

The answer is checked: "iss" must equal the discovered issuer, "aud" and "events_delivered" must be present, and the delivery method must be the one asked for. 409 means the transmitter allows one stream per receiver and one exists.`

  static override examples = [
    '<%= config.bin %> ssf streams create --issuer https://tx.example.com --token-file rx.token --poll --event caep.session-revoked',
    '<%= config.bin %> ssf streams create --issuer https://tx.example.com --token-file rx.token --push https://rx.example.com/events --push-token-file push.token',
  ]

  static override flags = {...ssfFlags, ...streamConfigFlags}

  public async run(): Promise<StreamConfig> {
    const input = await streamInputFrom(this.flags, (m) => this.warnLoud(m), true)
    const config = await this.withSsf(async ({ssf}) => ssf.createStream(input))
    if (!this.jsonEnabled()) {
      this.log(renderStream(config))
      if (config.delivery.method === 'urn:ietf:rfc:8936' && config.delivery.endpoint_url !== undefined) {
        this.note(`poll it with: pushpull poll ${config.delivery.endpoint_url} --issuer ${config.iss}${this.flags['allow-http'] ? ' --allow-http' : ''} (plus the bearer token: --token-file FILE)`)
      }
    }

    return redactStream(config)
  }
}
