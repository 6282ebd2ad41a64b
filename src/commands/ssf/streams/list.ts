import {SsfCommand} from '../../../cli/ssf-command.js'
import {ssfFlags} from '../../../cli/issuer-flag.js'
import {redactStream, renderStreamList} from '../../../cli/ssf-render.js'
import type {StreamConfig} from '../../../lib/ssf/client.js'

export default class SsfStreamsList extends SsfCommand<typeof SsfStreamsList> {
  static override summary = 'List the SSF streams the transmitter holds for this receiver.'
  static override description = 'GET on the configuration endpoint without stream_id. Every configuration is checked: "iss" must be the discovered issuer, "aud" and "events_delivered" must be present.'
  static override examples = ['<%= config.bin %> ssf streams list --issuer https://tx.example.com --token-file rx.token', '<%= config.bin %> ssf streams list --issuer https://tx.example.com --json']
  static override flags = {...ssfFlags}

  public async run(): Promise<StreamConfig[]> {
    const streams = await this.withSsf(async ({ssf}) => ssf.listStreams())
    if (!this.jsonEnabled()) this.log(renderStreamList(streams))
    return streams.map(redactStream)
  }
}
