import {Args} from '@oclif/core'

import {SsfCommand} from '../../../cli/ssf-command.js'
import {ssfFlags} from '../../../cli/issuer-flag.js'
import {renderStatus} from '../../../cli/ssf-render.js'
import type {StreamStatus} from '../../../lib/ssf/client.js'

export default class SsfStatusGet extends SsfCommand<typeof SsfStatusGet> {
  static override summary = 'Show the status of an SSF stream (enabled, paused or disabled).'
  static override description = 'GET on the status endpoint with stream_id.'
  static override examples = ['<%= config.bin %> ssf status get f67e39a0 --issuer https://tx.example.com --token-file rx.token']
  static override args = {'stream-id': Args.string({description: 'The stream.', required: true})}
  static override flags = {...ssfFlags}

  public async run(): Promise<StreamStatus> {
    const status = await this.withSsf(async ({ssf}) => ssf.getStatus(this.args['stream-id']))
    if (!this.jsonEnabled()) this.log(renderStatus(status))
    return status
  }
}
