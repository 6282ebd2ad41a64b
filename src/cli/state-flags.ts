/**
 * The shared state flags (send, poll, ack, listen, stream, demo) and the ledger they open.
 *
 *   static override flags = {...stateFlags, ...}
 *   const ledger = openStateLedger(this.flags)     // ledger.close() in finally
 *
 * `--state PATH` (env PUSHPULL_STATE; default `$XDG_STATE_HOME/pushpull/state.db`, else
 * `~/.local/state/pushpull/state.db`) is the durable SQLite ledger: what we still have to send,
 * what we still owe each peer. `--memory-state` keeps the ledger in process memory instead
 * (demos, tests, benchmarks): nothing survives the process.
 */
import {homedir} from 'node:os'

import {Flags} from '@oclif/core'

import {Ledger, type LedgerOptions} from '../lib/ledger.js'
import {defaultStatePath, MemoryLedgerStorage, openLedger} from '../lib/store.js'

const group = 'STATE'

export const stateFlags = {
  'memory-state': Flags.boolean({
    default: false,
    description: 'Keep the ledger (outbox, owed acks) in memory only: nothing survives this process. For demos and tests.',
    exclusive: ['state'],
    helpGroup: group,
  }),
  state: Flags.string({
    description: 'State database (SQLite) holding unacknowledged SETs and owed acks. [default: $XDG_STATE_HOME/pushpull/state.db, else ~/.local/state/pushpull/state.db]',
    env: 'PUSHPULL_STATE',
    exclusive: ['memory-state'],
    helpGroup: group,
    helpValue: 'PATH',
  }),
}

export interface StateFlagValues {
  'memory-state'?: boolean
  state?: string
}

export type StateLedgerOptions = Omit<LedgerOptions, 'storage'> & {
  /** Environment used for the default path (tests inject one). Default process.env. */
  env?: Readonly<Record<string, string | undefined>>
  /** Home directory used for the default path. Default os.homedir(). */
  homedir?: string
}

/** Where the flags put the state database, or undefined for --memory-state. */
export function statePathFrom(flags: StateFlagValues, options: Pick<StateLedgerOptions, 'env' | 'homedir'> = {}): string | undefined {
  if (flags['memory-state'] === true) return undefined
  if (flags.state !== undefined && flags.state !== '') return defaultStatePath({PUSHPULL_STATE: flags.state}, options.homedir ?? homedir())
  return defaultStatePath(options.env ?? process.env, options.homedir ?? homedir())
}

/**
 * Open the ledger the flags describe. Throws ERR_STATE_LOCKED (another pushpull holds the file),
 * ERR_STATE_CORRUPT or ERR_STATE_IO, each naming the file. Close it with `ledger.close()`.
 */
export function openStateLedger(flags: StateFlagValues, options: StateLedgerOptions = {}): Ledger {
  const {env, homedir: home, ...ledgerOptions} = options
  const path = statePathFrom(flags, {env, homedir: home})
  if (path === undefined) return new Ledger({...ledgerOptions, storage: new MemoryLedgerStorage()})
  return openLedger({...ledgerOptions, path})
}
