/**
 * Run commands in-process (oclif Config loaded once per test file) and end-to-end (async spawn of
 * bin/run.js). Both return stdout, stderr and the exit code the process would have.
 */
import {spawn} from 'node:child_process'
import {dirname, join} from 'node:path'
import {Readable} from 'node:stream'
import {fileURLToPath} from 'node:url'

import {type Command, Config} from '@oclif/core'
import {captureOutput} from '@oclif/test'

import {exitCodeFor} from '../../src/cli/base-command.js'
import {setInputStream} from '../../src/cli/stdin.js'

export const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..')
export const BIN = join(ROOT, 'bin', 'run.js')

let config: Config | undefined

export interface CliResult {
  stdout: string
  stderr: string
  exitCode: number
  error?: Error
  result?: unknown
}

type CommandClass = {run(argv?: string[], config?: Config): Promise<unknown>} & typeof Command

export async function runCommand(cmd: CommandClass, argv: string[], options: {stdin?: string | Readable} = {}): Promise<CliResult> {
  config ??= await Config.load({root: ROOT})
  if (options.stdin !== undefined) {
    setInputStream(typeof options.stdin === 'string' ? Readable.from([Buffer.from(options.stdin)]) : options.stdin)
  }

  const before = process.exitCode
  process.exitCode = undefined
  try {
    const output = await captureOutput(async () => cmd.run(argv, config))
    const exitCode = output.error ? exitCodeFor(output.error) : Number(process.exitCode ?? 0)
    return {error: output.error, exitCode, result: output.result, stderr: output.stderr, stdout: output.stdout}
  } finally {
    setInputStream(undefined)
    process.exitCode = before
  }
}

/** Parse each non-empty stdout line as JSON (NDJSON output). */
export function jsonLines(stdout: string): unknown[] {
  return stdout
    .split('\n')
    .filter((line) => line.trim() !== '')
    .map((line) => JSON.parse(line) as unknown)
}

export interface SpawnOptions {
  stdin?: string
  env?: Record<string, string | undefined>
  timeoutMs?: number
  cwd?: string
}

/** Spawn bin/run.js (built code) asynchronously; never spawnSync against an in-process peer. */
export async function spawnCli(argv: string[], options: SpawnOptions = {}): Promise<CliResult & {signal: NodeJS.Signals | null}> {
  const child = spawn(process.execPath, [BIN, ...argv], {
    cwd: options.cwd ?? ROOT,
    env: {...process.env, NO_COLOR: '1', ...options.env},
    stdio: ['pipe', 'pipe', 'pipe'],
  })
  let stdout = ''
  let stderr = ''
  child.stdout.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk))
  child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk))
  child.stdin.end(options.stdin ?? '')
  const timer = setTimeout(() => child.kill('SIGKILL'), options.timeoutMs ?? 15_000)
  const [code, signal] = await new Promise<[number | null, NodeJS.Signals | null]>((resolve) =>
    child.on('close', (c, s) => resolve([c, s])),
  )
  clearTimeout(timer)
  return {exitCode: code ?? -1, signal, stderr, stdout}
}
