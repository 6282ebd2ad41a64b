import {Args} from '@oclif/core'

import {SsfCommand} from '../../../cli/ssf-command.js'
import {ssfFlags} from '../../../cli/issuer-flag.js'
import {redactStream, renderStream} from '../../../cli/ssf-render.js'
import type {StreamConfig} from '../../../lib/ssf/client.js'

export default class SsfStreamsGet extends SsfCommand<typeof SsfStreamsGet> {
  static override summary = 'Show one SSF stream configuration.'
  static override description = 'GET on the configuration endpoint with stream_id. 404 means the transmitter has no such stream for this receiver.'
  static override examples = ['<%= config.bin %> ssf streams get f67e39a0 --issuer https://tx.example.com --token-file rx.token']
  static override args = {'stream-id': Args.string({description: 'The stream_id the transmitter assigned.', required: true})}
  static override flags = {...ssfFlags}

  public async run(): Promise<StreamConfig> {
    const config = await this.withSsf(async ({ssf}) => ssf.getStream(this.args['stream-id']))
    if (!this.jsonEnabled()) this.log(renderStream(config))
    return redactStream(config)
  }
}
