import {Args} from '@oclif/core'

import {SsfCommand} from '../../../cli/ssf-command.js'
import {ssfFlags} from '../../../cli/issuer-flag.js'
import {redactStream, renderStream} from '../../../cli/ssf-render.js'
import {streamConfigFlags, streamInputFrom} from '../../../cli/ssf-stream-flags.js'
import {isPending, type Pending, type StreamConfig} from '../../../lib/ssf/client.js'

export default class SsfStreamsUpdate extends SsfCommand<typeof SsfStreamsUpdate> {
  static override summary = 'Update an SSF stream configuration (PATCH).'
  static override description = 'Change only the members given (PATCH): --event replaces the requested events, --poll/--push the delivery, --description the description. A 202 answer means the transmitter accepted the change but has not applied it yet: run "ssf streams get" later.'
  static override examples = ['<%= config.bin %> ssf streams update f67e39a0 --issuer https://tx.example.com --token-file rx.token --event caep.session-revoked --event ssf.verification']
  static override args = {'stream-id': Args.string({description: 'The stream to change.', required: true})}
  static override flags = {...ssfFlags, ...streamConfigFlags}

  public async run(): Promise<StreamConfig | (Pending & {stream_id: string})> {
    const streamId = this.args['stream-id']
    const input = {...(await streamInputFrom(this.flags, (m) => this.warnLoud(m), false)), stream_id: streamId}
    const result = await this.withSsf(async ({ssf}) => ssf.updateStream(input))
    if (isPending(result)) {
      if (!this.jsonEnabled()) this.log(`stream ${streamId}: change accepted, not applied yet (HTTP 202)`)
      return {...result, stream_id: streamId}
    }

    if (!this.jsonEnabled()) this.log(renderStream(result))
    return redactStream(result)
  }
}
