import {PassThrough} from 'node:stream'

import {describe, expect, it, vi} from 'vitest'

import {completeTemplate, readSetInputs, streamOf, templateFromObject} from '../../src/cli/set-input.js'
import {isPushpullError} from '../../src/lib/errors.js'

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

async function collect(text: string, maxItemBytes?: number) {
  const items = []
  for await (const item of readSetInputs({maxItemBytes, stdin: streamOf(text)})) items.push(item)
  return items
}

async function inputFailure(text: string): Promise<{code: string; message: string}> {
  try {
    await collect(text)
  } catch (error) {
    if (isPushpullError(error)) return {code: error.code, message: error.message}
    throw error
  }

  throw new Error('expected a failure')
}

describe('multi-line JSON documents (O4: parsed once, not after every line)', () => {
  const event = (i: number) => ({event: 'caep.session-revoked', subject: `opaque:s-${i}`})

  it('parses a pretty-printed array of 20 000 lines once: one JSON.parse, every item yielded', async () => {
    // 5 000 objects over 20 000 lines (about 0.9 MiB, under the 1 MiB default). The old code
    // re-parsed the growing text after every line: 20 000 parses of up to 0.9 MiB each.
    const text = JSON.stringify(Array.from({length: 5000}, (_, i) => event(i)), undefined, 1)
    expect(text.split('\n').length).toBeGreaterThan(20_000)
    const parse = vi.spyOn(JSON, 'parse')
    try {
      const items = await collect(text)
      expect(items).toHaveLength(5000)
      expect(items[4999]).toMatchObject({kind: 'template', source: 'stdin line 1 item 5000', template: {sub_id: {format: 'opaque', id: 's-4999'}}})
      expect(parse).toHaveBeenCalledTimes(1)
    } finally {
      parse.mockRestore()
    }
  })

  it('handles brackets and escaped quotes inside strings, and several documents in a row', async () => {
    const tricky = {event: 'caep.session-revoked', payload: {reason_admin: {en: 'a } ] \\" [ { b'}}, subject: 'opaque:x'}
    const text = `${JSON.stringify(tricky, undefined, 2)}\n${JSON.stringify(event(1))}\na.b.c\n${JSON.stringify(event(2), undefined, 2)}\n`
    const items = await collect(text)
    expect(items.map((i) => i.source)).toEqual(['stdin line 1', 'stdin line 10', 'stdin line 11', 'stdin line 12'])
    expect(items[0]).toMatchObject({template: {events: {[REVOKED]: {reason_admin: {en: 'a } ] \\" [ { b'}}}}})
    expect(items[2]).toEqual({kind: 'token', source: 'stdin line 11', token: 'a.b.c'})
  })

  it('refuses a broken document as soon as it cannot become JSON, naming its first line', async () => {
    const ok = JSON.stringify(event(1))
    expect(await inputFailure(`${ok}\nhello\n${ok}\n`)).toEqual({code: 'ERR_USAGE', message: 'stdin line 2: not valid JSON and not a compact SET'})
    expect(await inputFailure(`${ok}\n{"event":\n"caep.session-revoked"}}\n`)).toEqual({code: 'ERR_USAGE', message: 'stdin line 2: not valid JSON and not a compact SET'})
    expect(await inputFailure('{"event": "caep\n.session-revoked"}\n')).toEqual({code: 'ERR_USAGE', message: 'stdin line 1: not valid JSON and not a compact SET'})
    expect(await inputFailure(`${ok}\n{"event":\n"caep.session-revoked",\n`)).toEqual({code: 'ERR_USAGE', message: 'stdin line 2: not valid JSON and not a compact SET'})
    expect(await inputFailure('{"a": 1} {"b": 2}\n')).toEqual({code: 'ERR_USAGE', message: 'stdin line 1: not valid JSON and not a compact SET'})
  })

  it('still bounds one document by maxItemBytes', async () => {
    const text = JSON.stringify(Array.from({length: 50}, (_, i) => event(i)), undefined, 2)
    await expect(collect(text, 1000)).rejects.toMatchObject({code: 'ERR_USAGE', message: 'stdin line 1: a JSON document over 1000 bytes'})
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
