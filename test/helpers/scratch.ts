/** Scratch directories for one test file, removed after its tests. */
import {mkdtempSync, rmSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'

import {afterAll} from 'vitest'

export interface Scratch {
  /** A new empty directory. */
  dir(): string
  /** A state database path in a new directory (the file does not exist yet). */
  statePath(): string
}

/** Call at the top level of a test file; `prefix` names the directories in the system temp folder. */
export function scratchDirs(prefix: string): Scratch {
  const dirs: string[] = []
  afterAll(() => {
    for (const dir of dirs) rmSync(dir, {force: true, recursive: true})
  })
  const dir = (): string => {
    const made = mkdtempSync(join(tmpdir(), prefix))
    dirs.push(made)
    return made
  }

  return {dir, statePath: () => join(dir(), 'state.db')}
}
