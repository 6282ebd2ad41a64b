import {Args} from '@oclif/core'

import {SsfCommand} from '../../../cli/ssf-command.js'
import {ssfFlags} from '../../../cli/issuer-flag.js'

export default class SsfStreamsDelete extends SsfCommand<typeof SsfStreamsDelete> {
  static override summary = 'Delete an SSF stream.'
  static override description = 'DELETE on the configuration endpoint with stream_id (the transmitter answers 204).'
  static override examples = ['<%= config.bin %> ssf streams delete f67e39a0 --issuer https://tx.example.com --token-file rx.token']
  static override args = {'stream-id': Args.string({description: 'The stream to delete.', required: true})}
  static override flags = {...ssfFlags}

  public async run(): Promise<{stream_id: string; deleted: true}> {
    const streamId = this.args['stream-id']
    await this.withSsf(async ({ssf}) => ssf.deleteStream(streamId))
    if (!this.jsonEnabled()) this.log(`deleted stream ${streamId}`)
    return {deleted: true, stream_id: streamId}
  }
}
