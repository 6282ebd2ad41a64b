import {Args, Flags} from '@oclif/core'

import {BaseCommand} from '../../cli/base-command.js'
import {issuerFlags} from '../../cli/issuer-flag.js'
import {renderMetadata} from '../../cli/ssf-render.js'
import {httpClientOptionsFrom, transportFlags} from '../../cli/transport-flags.js'
import {discoverTransmitter, metadataUrl, type TransmitterMetadata} from '../../lib/ssf/metadata.js'
import {createHttpClient} from '../../lib/transport/http.js'

export default class SsfDiscover extends BaseCommand<typeof SsfDiscover> {
  static override summary = 'Fetch and check an SSF transmitter\'s metadata (/.well-known/ssf-configuration).'
  static override description = `Fetches the transmitter configuration of ISSUER: for https://tx.example/t1 that is https://tx.example/.well-known/ssf-configuration/t1 (with --legacy-risc, risc-configuration). The document's "issuer" must be identical to ISSUER, every URL in it must be https, and a jwks_uri must be present (unless --allow-unsigned): otherwise nothing of it is used.

Shows the endpoints, the delivery methods, the JWKS URL and the authorization schemes. --json prints the validated metadata.`

  static override examples = [
    '<%= config.bin %> ssf discover https://tx.example.com',
    '<%= config.bin %> ssf discover https://tx.example.com/tenant1 --json',
    '<%= config.bin %> ssf discover http://127.0.0.1:8080 --allow-http',
  ]

  static override args = {
    issuer: Args.string({description: 'Issuer identifier of the transmitter (an https URL).', required: true}),
  }

  static override flags = {
    ...transportFlags,
    'allow-http': issuerFlags['allow-http'],
    'allow-unsigned': Flags.boolean({default: false, description: 'Accept metadata without a jwks_uri (the transmitter sends unsigned SETs).', helpGroup: 'SSF'}),
    'legacy-risc': issuerFlags['legacy-risc'],
  }

  public async run(): Promise<TransmitterMetadata> {
    const options = await httpClientOptionsFrom(this.flags, {userAgent: `pushpull/${this.config.version}`, warn: (m) => this.warnLoud(m)})
    delete options.token
    const client = createHttpClient(options)
    try {
      this.note(`GET ${metadataUrl(this.args.issuer, {legacy: this.flags['legacy-risc']})}`)
      const metadata = await discoverTransmitter(this.args.issuer, {
        allowHttp: this.flags['allow-http'],
        client,
        legacy: this.flags['legacy-risc'],
        requireJwks: !this.flags['allow-unsigned'],
        signal: this.signal,
      })
      if (!this.jsonEnabled()) this.log(renderMetadata(metadata))
      return metadata
    } finally {
      await client.close()
    }
  }
}
