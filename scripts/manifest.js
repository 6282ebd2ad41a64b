#!/usr/bin/env node
// Writes oclif.manifest.json from the built commands, so the CLI does not import every command
// module at start-up just to list them. Run by `npm run build`; the file is not committed.
import {writeFileSync} from 'node:fs'
import {dirname, join} from 'node:path'
import {fileURLToPath} from 'node:url'

import {Plugin} from '@oclif/core'

const root = join(dirname(fileURLToPath(import.meta.url)), '..')
const plugin = new Plugin({errorOnManifestCreate: true, ignoreManifest: true, respectNoCacheDefault: true, root, type: 'core'})
await plugin.load()
writeFileSync(join(root, 'oclif.manifest.json'), `${JSON.stringify(plugin.manifest)}\n`)
console.error(`wrote oclif.manifest.json (${Object.keys(plugin.manifest.commands).length} commands)`)
