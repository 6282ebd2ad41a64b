import {Args} from '@oclif/core'

import {SsfCommand} from '../../../cli/ssf-command.js'
import {ssfFlags} from '../../../cli/issuer-flag.js'
import {redactStream, renderStream} from '../../../cli/ssf-render.js'
import {streamConfigFlags, streamInputFrom} from '../../../cli/ssf-stream-flags.js'
import {isPending, type Pending, type StreamConfig} from '../../../lib/ssf/client.js'

export default class SsfStreamsReplace extends SsfCommand<typeof SsfStreamsReplace> {
  static override summary = 'Replace an SSF stream configuration (PUT).'
  static override description = 'Replace the Receiver-Supplied configuration (PUT): members not given are removed (no --event means no requested events; no --push means poll delivery). A 202 answer means the transmitter accepted the change but has not applied it yet: run "ssf streams get" later.'
  static override examples = ['<%= config.bin %> ssf streams replace f67e39a0 --issuer https://tx.example.com --token-file rx.token --event caep.session-revoked --event ssf.verification']
  static override args = {'stream-id': Args.string({description: 'The stream to change.', required: true})}
  static override flags = {...ssfFlags, ...streamConfigFlags}

  public async run(): Promise<StreamConfig | (Pending & {stream_id: string})> {
    const streamId = this.args['stream-id']
    const input = {...(await streamInputFrom(this.flags, (m) => this.warnLoud(m), true)), stream_id: streamId}
    const result = await this.withSsf(async ({ssf}) => ssf.replaceStream(input))
    if (isPending(result)) {
      if (!this.jsonEnabled()) this.log(`stream ${streamId}: change accepted, not applied yet (HTTP 202)`)
      return {...result, stream_id: streamId}
    }

    if (!this.jsonEnabled()) this.log(renderStream(result))
    return redactStream(result)
  }
}
