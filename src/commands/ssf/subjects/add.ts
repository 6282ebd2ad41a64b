import {Args, Flags} from '@oclif/core'

import {SsfCommand} from '../../../cli/ssf-command.js'
import {ssfFlags} from '../../../cli/issuer-flag.js'
import {parseSubject, type SubjectIdentifier} from '../../../lib/subject.js'

export default class SsfSubjectsAdd extends SsfCommand<typeof SsfSubjectsAdd> {
  static override summary = 'Add a subject to an SSF stream.'
  static override description = 'POST {stream_id, subject, verified?} to the add_subject_endpoint. SUBJECT is FORMAT:VALUE (email:ana@example.com, opaque:abc) or a JSON subject identifier. 404 means no such stream, or a subject the transmitter does not recognise.'
  static override examples = ['<%= config.bin %> ssf subjects add f67e39a0 email:ana@example.com --issuer https://tx.example.com --token-file rx.token']
  static override args = {
    'stream-id': Args.string({description: 'The stream.', required: true}),
    subject: Args.string({description: 'Subject identifier: FORMAT:VALUE or JSON.', required: true}),
  }

  static override flags = {
    ...ssfFlags,
    verified: Flags.boolean({allowNo: true, description: 'Tell the transmitter the receiver has (or, with --no-verified, has not) verified the subject.'}),
  }

  public async run(): Promise<{stream_id: string; subject: SubjectIdentifier; added: true}> {
    const streamId = this.args['stream-id']
    const subject = parseSubject(this.args.subject)
    await this.withSsf(async ({ssf}) => ssf.addSubject(streamId, subject, this.flags.verified))
    if (!this.jsonEnabled()) this.log(`added the ${subject.format} subject to stream ${streamId}`)
    return {added: true, stream_id: streamId, subject}
  }
}
