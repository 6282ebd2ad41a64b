import {format} from 'node:util'

import {Command, Errors, Flags, type Interfaces} from '@oclif/core'

import {isPushpullError, PushpullError} from '../lib/errors.js'
import {EXIT_CODE_OF, ExitCode} from './exit-codes.js'
import {writeOut} from './stdout.js'
import {createTheme, type Theme} from './theme.js'

export type BaseFlags<T extends typeof Command> = Interfaces.InferredFlags<(typeof BaseCommand)['baseFlags'] & T['flags']>
export type BaseArgs<T extends typeof Command> = Interfaces.InferredArgs<T['args']>

/**
 * Owns what every command shares: compact `--json`, `--no-color`, the exit-code table, and an
 * AbortSignal that SIGINT/SIGTERM abort. Commands stay glue: parse, call the library, render, return.
 */
export abstract class BaseCommand<T extends typeof Command> extends Command {
  static override baseFlags = {
    color: Flags.boolean({
      allowNo: true,
      default: true,
      description: 'Colour human output (off when not a TTY or when NO_COLOR is set).',
      helpGroup: 'GLOBAL',
    }),
  }

  static override enableJsonFlag = true

  protected flags!: BaseFlags<T>
  protected args!: BaseArgs<T>
  protected theme!: Theme

  private readonly abortController = new AbortController()
  private readonly onSignal = (signal: NodeJS.Signals): void => {
    if (this.abortController.signal.aborted) return
    this.abortController.abort(new PushpullError('ERR_ABORTED', `interrupted by ${signal}`))
  }

  /** Aborted on SIGINT or SIGTERM; pass it to every library call that waits. */
  protected get signal(): AbortSignal {
    return this.abortController.signal
  }

  public override async init(): Promise<void> {
    await super.init()
    const {args, flags} = await this.parse({
      args: this.ctor.args,
      baseFlags: (super.ctor as typeof BaseCommand).baseFlags,
      enableJsonFlag: this.ctor.enableJsonFlag,
      flags: this.ctor.flags,
      strict: this.ctor.strict,
    })
    this.flags = flags as BaseFlags<T>
    this.args = args as BaseArgs<T>
    this.theme = createTheme(!this.flags.color)
    process.on('SIGINT', this.onSignal)
    process.on('SIGTERM', this.onSignal)
  }

  /**
   * Human output goes straight to stdout (not through console.log, which test runners intercept),
   * so what a user sees is exactly what in-process tests capture.
   */
  public override log(message = '', ...args: unknown[]): void {
    const text = args.length > 0 ? format(message, ...args) : message
    writeOut(`${text}\n`)
  }

  /** `--json` output is compact: one JSON value per line, so streams are NDJSON. */
  protected override logJson(json: unknown): void {
    writeOut(`${JSON.stringify(json)}\n`)
  }

  /** One NDJSON record on stdout (streaming commands under --json). */
  protected emitJson(record: unknown): void {
    this.logJson(record)
  }

  /** Progress, warnings and notices: stderr, never stdout. */
  protected note(message: string): void {
    process.stderr.write(`${message}\n`)
  }

  protected warnLoud(message: string): void {
    process.stderr.write(`${this.theme.err.yellow.bold('warning:')} ${message}\n`)
  }

  protected override toErrorJson(error: unknown): unknown {
    if (isPushpullError(error)) {
      return {error: {code: error.code, message: error.message, exitCode: EXIT_CODE_OF[error.code], ...error.details}}
    }

    return {error: {code: exitCodeFor(error) === ExitCode.USAGE ? 'ERR_USAGE' : 'ERR_INTERNAL', message: (error as Error).message, exitCode: exitCodeFor(error)}}
  }

  protected override async catch(error: Error & {exitCode?: number}): Promise<unknown> {
    const code = exitCodeFor(error)
    process.exitCode = code
    if (this.jsonEnabled()) {
      this.logJson(this.toErrorJson(error))
      return undefined
    }

    if (isPushpullError(error, 'ERR_ABORTED')) {
      // Ctrl-C is the user's own doing, not an error: a short note, exit 130.
      this.note(/interrupt/i.test(error.message) ? error.message : `interrupted: ${error.message}`)
      return undefined
    }

    if (isPushpullError(error)) {
      throw new Errors.CLIError(`${error.message} [${error.code}]`, {exit: code})
    }

    if (error instanceof Errors.CLIError && error.oclif.exit !== code) {
      error.oclif.exit = code
    }

    return super.catch(error)
  }

  protected override async finally(error: Error | undefined): Promise<unknown> {
    process.off('SIGINT', this.onSignal)
    process.off('SIGTERM', this.onSignal)
    return super.finally(error)
  }
}

export function exitCodeFor(error: unknown): number {
  if (isPushpullError(error)) return EXIT_CODE_OF[error.code]
  // Every oclif parser error (unknown flag, bad option value, missing argument) carries `parse`;
  // some of them ignore the configured exitCodes, so map them here: all are usage errors.
  if (error instanceof Errors.CLIError && 'parse' in error) return ExitCode.USAGE
  const oclifExit = (error as {oclif?: {exit?: number}} | undefined)?.oclif?.exit
  if (typeof oclifExit === 'number') return oclifExit
  return ExitCode.BUG
}
