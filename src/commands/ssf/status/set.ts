import {Args, Flags} from '@oclif/core'

import {SsfCommand} from '../../../cli/ssf-command.js'
import {ssfFlags} from '../../../cli/issuer-flag.js'
import {renderStatus} from '../../../cli/ssf-render.js'
import {isPending, type Pending, STREAM_STATUSES, type StreamStatus} from '../../../lib/ssf/client.js'

export default class SsfStatusSet extends SsfCommand<typeof SsfStatusSet> {
  static override summary = 'Enable, pause or disable an SSF stream.'
  static override description = 'POST {stream_id, status, reason?} to the status endpoint. A paused stream holds events for later; a disabled one drops them. 202 means accepted but not applied yet.'
  static override examples = ['<%= config.bin %> ssf status set f67e39a0 paused --reason "maintenance" --issuer https://tx.example.com --token-file rx.token']
  static override args = {
    'stream-id': Args.string({description: 'The stream.', required: true}),
    status: Args.string({description: 'The new status.', options: [...STREAM_STATUSES], required: true}),
  }

  static override flags = {...ssfFlags, reason: Flags.string({description: 'Short text explaining the change (sent as "reason").'})}

  public async run(): Promise<StreamStatus | (Pending & {stream_id: string})> {
    const streamId = this.args['stream-id']
    const result = await this.withSsf(async ({ssf}) => ssf.setStatus(streamId, this.args.status, this.flags.reason))
    if (isPending(result)) {
      if (!this.jsonEnabled()) this.log(`stream ${streamId}: status change accepted, not applied yet (HTTP 202)`)
      return {...result, stream_id: streamId}
    }

    if (!this.jsonEnabled()) this.log(renderStatus(result))
    return result
  }
}
