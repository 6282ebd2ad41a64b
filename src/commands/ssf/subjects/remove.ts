import {Args} from '@oclif/core'

import {SsfCommand} from '../../../cli/ssf-command.js'
import {ssfFlags} from '../../../cli/issuer-flag.js'
import {parseSubject, type SubjectIdentifier} from '../../../lib/subject.js'

export default class SsfSubjectsRemove extends SsfCommand<typeof SsfSubjectsRemove> {
  static override summary = 'Remove a subject from an SSF stream.'
  static override description = 'POST {stream_id, subject} to the remove_subject_endpoint (the transmitter answers 204). SUBJECT is FORMAT:VALUE or a JSON subject identifier.'
  static override examples = ['<%= config.bin %> ssf subjects remove f67e39a0 email:ana@example.com --issuer https://tx.example.com --token-file rx.token']
  static override args = {
    'stream-id': Args.string({description: 'The stream.', required: true}),
    subject: Args.string({description: 'Subject identifier: FORMAT:VALUE or JSON.', required: true}),
  }

  static override flags = {...ssfFlags}

  public async run(): Promise<{stream_id: string; subject: SubjectIdentifier; removed: true}> {
    const streamId = this.args['stream-id']
    const subject = parseSubject(this.args.subject)
    await this.withSsf(async ({ssf}) => ssf.removeSubject(streamId, subject))
    if (!this.jsonEnabled()) this.log(`removed the ${subject.format} subject from stream ${streamId}`)
    return {removed: true, stream_id: streamId, subject}
  }
}
