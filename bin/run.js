#!/usr/bin/env node
// The pushpull launcher.
//
// Cold-start fast path: `pushpull decode TOKEN` (exactly one token argument, no flags, no
// PUSHPULL_* / OCLIF_* / DEBUG environment) is the most common invocation, and loading oclif costs
// more than the whole decode. For that one shape the launcher decodes with the same library and
// renderer the `decode` command uses, with the flag defaults read from oclif.manifest.json, and
// prints only when the SET decodes cleanly. Anything else, and every failure, goes to oclif as
// before, so help, flags, errors and exit codes are oclif's own. PUSHPULL_NO_FAST_PATH=1 turns
// the fast path off; test/e2e/cold-start.test.ts checks both paths print the same bytes and exit
// codes (PUSHPULL_FAST_PATH_MARK names a file the fast path writes when it served the command).
import {readFile, writeFile} from 'node:fs/promises'

const argv = process.argv.slice(2)

async function fastDecode(token) {
  let manifest
  try {
    manifest = JSON.parse(await readFile(new URL('../oclif.manifest.json', import.meta.url), 'utf8'))
  } catch {
    return false
  }

  const flags = manifest?.commands?.decode?.flags
  if (flags === undefined || flags['clock-tolerance'] === undefined || flags['max-set-bytes'] === undefined || flags.profile === undefined) return false
  try {
    const [{createVerifier}, {lintSet}, {renderSet}, {createTheme}] = await Promise.all([
      import('../dist/lib/verify.js'),
      import('../dist/lib/lint.js'),
      import('../dist/cli/render-set.js'),
      import('../dist/cli/theme.js'),
    ])
    // What buildVerifier makes of the default flags: no keys, no expected issuer or audience.
    const verifier = createVerifier({
      allowUnsigned: false,
      clockToleranceSec: flags['clock-tolerance'].default,
      keys: [],
      maxBytes: flags['max-set-bytes'].default,
    })
    const set = await verifier.verify(token)
    const findings = lintSet(set, {keyBits: set.key?.bits, profile: flags.profile.default})
    const theme = createTheme(false)
    const text = `${renderSet(set, findings, theme.out, {key: undefined, title: undefined})}\n`
    process.stderr.write(`${theme.err.yellow.bold('warning:')} no verification key given (--jwks, --verify-key or --secret): signatures are NOT checked; SETs are UNVERIFIED\n`)
    process.stdout.write(text)
    // Tests learn which path served the command from this file (never set in normal use).
    if (process.env.PUSHPULL_FAST_PATH_MARK) await writeFile(process.env.PUSHPULL_FAST_PATH_MARK, 'fast path\n')
    return true
  } catch {
    // Not a clean decode: oclif reports it, exactly as without the fast path.
    return false
  }
}

function fastPathApplies() {
  if (argv.length !== 2 || argv[0] !== 'decode' || argv[1].startsWith('-') || argv[1] === '') return false
  return !Object.keys(process.env).some(
    (name) => (name.startsWith('PUSHPULL_') && name !== 'PUSHPULL_FAST_PATH_MARK') || name.startsWith('OCLIF_') || name === 'DEBUG',
  )
}

if (!(fastPathApplies() && (await fastDecode(argv[1])))) {
  const {execute} = await import('@oclif/core')
  await execute({dir: import.meta.url})
}
