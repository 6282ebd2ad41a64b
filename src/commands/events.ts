import {Args, Flags} from '@oclif/core'
import Table from 'cli-table3'

import {BaseCommand} from '../cli/base-command.js'
import {PushpullError} from '../lib/errors.js'
import {type EventFamily, type EventMember, type EventType, eventTypesOf, findEventType, unknownEventTypeError} from '../lib/events.js'

export default class Events extends BaseCommand<typeof Events> {
  static override summary = 'List the CAEP, RISC and SSF event types, or show one type with its members.'

  static override description = [
    'Without NAME, prints a table of every known event type: short name, family, URI and required members. With NAME, prints that type\'s description and each member with its type, whether it is required, and its allowed values.',
    'NAME can be a short name (caep.session-revoked), a full event-type URI, or the bare name (session-revoked) when only one family defines it. --json prints the catalog data: an array of event types, or the one type.',
  ].join('\n\n')

  static override examples = [
    '<%= config.bin %> events',
    '<%= config.bin %> events --family risc',
    '<%= config.bin %> events caep.credential-change',
    '<%= config.bin %> events session-revoked --json',
  ]

  static override args = {
    name: Args.string({description: 'Event type: short name (caep.credential-change), bare name, or full URI.', required: false}),
  }

  static override flags = {
    // Checked in run() rather than with `options`: oclif exits 1 for an invalid option, we want 2.
    family: Flags.string({description: 'Only event types of this family: caep, risc or ssf.', helpValue: 'caep|risc|ssf'}),
  }

  public async run(): Promise<EventType | EventType[]> {
    const family = parseFamily(this.flags.family)
    const name = this.args.name
    if (name === undefined) {
      const types = eventTypesOf(family)
      if (!this.jsonEnabled()) writeOut(renderCatalog(types))
      return types
    }

    const type = findEventType(name)
    if (type === undefined) throw unknownEventTypeError(name)
    if (family !== undefined && type.family !== family) {
      throw new PushpullError('ERR_USAGE', `${type.shortName} is a ${type.family} event, not ${family}; drop --family or pick another name`)
    }

    if (!this.jsonEnabled()) writeOut(this.renderType(type))
    return type
  }

  private renderType(type: EventType): string {
    const bold = this.theme.out.bold
    const lines = [
      `${bold(type.shortName)}${type.deprecated === true ? ' (deprecated)' : ''}`,
      type.uri,
      '',
      type.description,
      '',
    ]
    if (type.members.length === 0) {
      lines.push('Members: none defined (the payload is {}).')
      return lines.join('\n')
    }

    const table = new Table({head: ['member', 'type', 'required', 'allowed values', 'description'], style: {head: [], border: []}, wordWrap: true, colWidths: [20, 8, 10, 30, 50]})
    for (const member of type.members) table.push([member.name, member.type, member.required ? 'yes' : 'no', allowedValues(member), member.description])
    lines.push(table.toString())
    return lines.join('\n')
  }
}

const FAMILIES: readonly EventFamily[] = ['caep', 'risc', 'ssf']

function parseFamily(value: string | undefined): EventFamily | undefined {
  if (value === undefined) return undefined
  const family = FAMILIES.find((candidate) => candidate === value.toLowerCase())
  if (family === undefined) throw new PushpullError('ERR_USAGE', `--family must be one of ${FAMILIES.join(', ')}, got "${value}"`)
  return family
}

/** Human output goes straight to stdout (oclif's `log` goes through console.log). */
function writeOut(text: string): void {
  process.stdout.write(`${text}\n`)
}

function allowedValues(member: EventMember): string {
  if (member.values === undefined) return member.shape === 'localized' ? '{"<lang>": "<text>"}' : member.shape === 'strings' ? 'array of strings' : 'any'
  return member.open === true ? `${member.values.join(', ')} (or agreed)` : member.values.join(', ')
}

function renderCatalog(types: readonly EventType[]): string {
  const table = new Table({head: ['short name', 'family', 'URI', 'required members'], style: {head: [], border: []}})
  for (const type of types) {
    const required = type.members.filter((member) => member.required).map((member) => member.name)
    table.push([`${type.shortName}${type.deprecated === true ? ' (deprecated)' : ''}`, type.family, type.uri, required.join(', ') || '-'])
  }

  return table.toString()
}
