/** What every `pushpull ssf ...` management command shares: discovery, the client, cleanup. */
import type {Command} from '@oclif/core'

import {BaseCommand} from './base-command.js'
import {connectSsf, type SsfConnection} from './issuer-flag.js'

export abstract class SsfCommand<T extends typeof Command> extends BaseCommand<T> {
  /** Discover the transmitter in `--issuer`, run `use` with a management client, close it. */
  protected async withSsf<R>(use: (connection: SsfConnection) => Promise<R>, options: {requireJwks?: boolean} = {}): Promise<R> {
    const flags = this.flags as unknown as Parameters<typeof connectSsf>[0]
    const connection = await connectSsf(flags, {
      requireJwks: options.requireJwks ?? false,
      signal: this.signal,
      userAgent: `pushpull/${this.config.version}`,
      warn: (message) => this.warnLoud(message),
    })
    try {
      return await use(connection)
    } finally {
      await connection.close()
    }
  }
}
