/** `stream` against pushpull's own listener with WebSocket sessions (the `listen --ws` code path). */
import {mkdtempSync, rmSync, writeFileSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'

import {afterAll, describe, expect, it} from 'vitest'

import Stream from '../../src/commands/stream.js'
import {generateKeyPair, readSigningKey, StaticKeySource, verificationKeysFromJson} from '../../src/lib/keys.js'
import {Ledger} from '../../src/lib/ledger.js'
import {mintSet} from '../../src/lib/mint.js'
import {SetReceiver} from '../../src/lib/receiver.js'
import {createListener, type ListenerEvent} from '../../src/lib/server.js'
import {attachListenerSessions} from '../../src/lib/session-server.js'
import {MemoryLedgerStorage} from '../../src/lib/store/memory.js'
import {createVerifier} from '../../src/lib/verify.js'
import {jsonLines, runCommand} from '../helpers/cli.js'

const dir = mkdtempSync(join(tmpdir(), 'pp-stream-listen-'))
afterAll(() => rmSync(dir, {force: true, recursive: true}))

describe('stream against listen --ws', () => {
  it('SETs both ways with acks, per token identity; the listener reports them with binding ws', async () => {
    const streamKey = await generateKeyPair('ES256', 'stream-k')
    const listenKey = await generateKeyPair('ES256', 'listen-k')
    writeFileSync(join(dir, 'stream.jwk.json'), JSON.stringify(streamKey.privateJwk))
    writeFileSync(join(dir, 'listen.jwks.json'), JSON.stringify(listenKey.publicJwks))
    const ledger = new Ledger({storage: new MemoryLedgerStorage()})
    const events: ListenerEvent[] = []
    const verifier = createVerifier({keys: [new StaticKeySource(verificationKeysFromJson(streamKey.publicJwks, 'stream key'))]})
    const listener = createListener({ledger, onEvent: (e) => events.push(e), port: 0, receiver: new SetReceiver({ledger, verifier}), tokens: [{name: 'alice', token: 'alice-token'}]})
    const {url} = await listener.listen()
    const sessions = attachListenerSessions(listener)
    try {
      writeFileSync(join(dir, 'listen.jwk.json'), JSON.stringify(listenKey.privateJwk))
      const listenSigner = await readSigningKey(join(dir, 'listen.jwk.json'))
      const toStream = await mintSet({events: {'https://schemas.openid.net/secevent/risc/event-type/account-disabled': {reason: 'hijacking'}}, iss: 'https://rx.example', sub_id: {email: 'ana@example.com', format: 'email'}}, listenSigner)
      listener.emit([{jti: toStream.claims.jti, token: toStream.token}])
      const result = await runCommand(Stream, [
        `${url.replace('http', 'ws')}/pushpull`,
        '--memory-state',
        '--token',
        'alice-token',
        '--signing-key',
        join(dir, 'stream.jwk.json'),
        '--verify-key',
        join(dir, 'listen.jwks.json'),
        '--iss',
        'https://tx.example',
        '--event',
        'caep.session-revoked',
        '--subject',
        'email:ben@example.com',
        '--count',
        '2',
        '--duration',
        '1s',
        '--json',
      ], {stdin: ''})
      expect(result.exitCode).toBe(0)
      const records = jsonLines(result.stdout) as Array<Record<string, unknown>>
      expect(records.filter((r) => r.type === 'ack')).toHaveLength(2)
      expect(records.at(-1)).toMatchObject({ackedByPeer: 2, acksSent: 1, received: 1, type: 'summary'})
      expect(records.find((r) => r.type === 'set')).toMatchObject({event: 'risc.account-disabled', jti: toStream.claims.jti, verified: true})
      const received = events.filter((e) => e.type === 'set')
      expect(received.map((e) => e.type === 'set' && [e.peer, e.binding, e.status])).toEqual([
        ['token:alice', 'ws', 'new'],
        ['token:alice', 'ws', 'new'],
      ])
      expect(ledger.stats('token:alice')[0]?.outbox.acked).toBe(1)
      expect(ledger.stats('token:alice')[0]?.inbox.accepted).toBe(2)
    } finally {
      await sessions.close()
      await listener.close()
      ledger.close()
    }
  })
})
