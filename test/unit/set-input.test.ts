import {PassThrough} from 'node:stream'

import {describe, expect, it} from 'vitest'

import {completeTemplate, readSetInputs, templateFromObject} from '../../src/cli/set-input.js'

const REVOKED = 'https://schemas.openid.net/secevent/caep/event-type/session-revoked'

describe('readSetInputs', () => {
  it('yields stdin items lazily, before the stream ends (send and stream consume long pipes)', async () => {
    const stdin = new PassThrough()
    const inputs = readSetInputs({stdin})
    stdin.write(`${JSON.stringify({event: 'caep.session-revoked', subject: 'opaque:1'})}\n`)
    const first = await inputs.next()
    expect(first.value).toMatchObject({kind: 'template', source: 'stdin line 1', template: {events: {[REVOKED]: {}}, sub_id: {format: 'opaque', id: '1'}}})
    stdin.write('a.b.c\n')
    expect((await inputs.next()).value).toEqual({kind: 'token', source: 'stdin line 2', token: 'a.b.c'})
    stdin.end()
    expect((await inputs.next()).done).toBe(true)
  })

  it('repeats a template --count times and applies --set to {event} objects', async () => {
    const items = []
    for await (const item of readSetInputs({assignments: ['reason=hijacking'], count: 3, event: 'risc.account-disabled'})) items.push(item)
    expect(items).toHaveLength(3)
    expect(items[0]).toMatchObject({kind: 'template', template: {events: {'https://schemas.openid.net/secevent/risc/event-type/account-disabled': {reason: 'hijacking'}}}})
  })
})

describe('templateFromObject / completeTemplate', () => {
  it('keeps unknown claims of a full claims object as extra claims', () => {
    const template = templateFromObject({custom: 1, events: {[REVOKED]: {}}, iss: 'i'}, 'x')
    expect(template).toEqual({events: {[REVOKED]: {}}, extra: {custom: 1}, iss: 'i'})
  })

  it('lets flags win over the input and requires an issuer', () => {
    const template = templateFromObject({aud: 'in', event: 'caep.session-revoked', iss: 'in', txn: 'in'}, 'x')
    expect(completeTemplate(template, {aud: ['flag'], iss: 'flag'}, 'x')).toMatchObject({aud: ['flag'], iss: 'flag', txn: 'in'})
    expect(completeTemplate(template, {}, 'x')).toMatchObject({aud: 'in', iss: 'in'})
    expect(() => completeTemplate(templateFromObject({event: 'caep.session-revoked'}, 'x'), {}, 'x')).toThrow('x: no issuer; pass --iss or put "iss" in the input')
  })

  it('refuses unknown members and wrong types', () => {
    expect(() => templateFromObject({event: 'caep.session-revoked', extra: 1}, 'f')).toThrow('f: unknown member "extra" (expected event, subject, payload, iss, aud, jti, iat, txn, toe)')
    expect(() => templateFromObject({event: 'caep.session-revoked', iat: 'now'}, 'f')).toThrow('f: "iat" has the wrong type')
    expect(() => templateFromObject({event: 'caep.session-revoked', payload: []}, 'f')).toThrow('f: "payload" must be a JSON object')
    expect(() => templateFromObject({events: {[REVOKED]: {}}}, 'f', {assignments: ['a=b']})).toThrow('f: --set applies to {"event": ...} inputs, not to full claims objects')
  })
})
