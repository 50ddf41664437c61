/**
 * syncmesh key add | use | rm | ls | reload — the mesh keyring
 * (DIR/keyring.json, src/node/keyring.ts). The edit commands change the file
 * only; a running node picks the change up on SIGHUP or `syncmesh key reload`.
 * Keys are never printed, only their fingerprints.
 */
import type { Command } from 'commander'
import {
  addKey, describeKeys, fingerprint, keyInfo, keyringPath, keyringToEdit, missingCurrentKey, removeKey, useKey, writeKeyring
} from '../../node/keyring.js'
import type { Keyring, MeshKeyInfo } from '../../node/keyring.js'
import { addClientOptions, addJsonOption, connect, readStdin, UsageError } from '../common.js'
import type { ClientOptions, JsonOption } from '../common.js'
import { printJson, printLine } from '../output.js'

interface EditOptions extends JsonOption {
  data: string
  key?: string
}

const DATA_HELP = 'data directory of the node whose keyring.json to edit'
const CURRENT_HELP = "the node's current mesh key, needed only while DIR has no keyring.json (default: $SYNCMESH_KEY, else DIR/mesh.key)"
const KEY_ARG_HELP = 'a mesh key, its fingerprint (8 hex digits, for a key already in the keyring), or "-" to read the key from stdin'

/** KEY as typed, or the first line of stdin for "-". */
async function keyArgument (value: string): Promise<string> {
  if (value !== '-') return value
  const text = (await readStdin()).split(/\r?\n/).find((line) => line.trim() !== '')
  if (text == null) throw new UsageError('KEY is "-" but stdin holds no key; pipe it in, e.g. syncmesh key add - < new.key')
  return text
}

function env (): string | undefined {
  const v = process.env.SYNCMESH_KEY
  return v != null && v !== '' ? v : undefined
}

async function load (opts: EditOptions): Promise<{ ring: Keyring, existed: boolean }> {
  const found = await keyringToEdit({ flag: opts.key, env: env(), data: opts.data })
  if (found === undefined) throw missingCurrentKey(opts.data)
  return found
}

function info (ring: Keyring): MeshKeyInfo {
  return keyInfo({ source: 'keyring', ...ring })
}

async function report (opts: EditOptions, ring: Keyring, changed: boolean, summary: string): Promise<void> {
  if (opts.json === true) {
    await printJson({ changed, file: keyringPath(opts.data), ...info(ring) })
    return
  }
  await printLine(summary)
  await printLine(`keyring: ${describeKeys(ring)}`)
  if (changed) await printLine(`a running node uses it after "kill -HUP <pid>" or "syncmesh key reload --data ${opts.data}"`)
}

export function registerKeyringCommands (key: Command): void {
  addJsonOption(
    key.command('add')
      .description('accept KEY as well (DIR/keyring.json); the node keeps proving its current key')
      .argument('<key>', KEY_ARG_HELP)
      .requiredOption('--data <dir>', DATA_HELP)
      .option('--key <current>', CURRENT_HELP)
  ).action(async (value: string, opts: EditOptions) => {
    const k = await keyArgument(value)
    const { ring, existed } = await load(opts)
    const next = addKey(ring, k)
    if (next.changed || !existed) await writeKeyring(opts.data, next.ring)
    await report(opts, next.ring, next.changed || !existed, next.changed ? `accepted ${fingerprint(k)}` : `${fingerprint(k)} was already accepted`)
  })

  addJsonOption(
    key.command('use')
      .description('prove KEY from now on (it is accepted too if it was not); the old current key stays accepted')
      .argument('<key>', KEY_ARG_HELP)
      .requiredOption('--data <dir>', DATA_HELP)
      .option('--key <current>', CURRENT_HELP)
  ).action(async (value: string, opts: EditOptions) => {
    const k = await keyArgument(value)
    // without a keyring, the key the node runs with must be known so that it stays accepted
    const found = await load(opts)
    const next = useKey(found.ring, k)
    const changed = next.changed || !found.existed
    if (changed) await writeKeyring(opts.data, next.ring)
    const fp = fingerprint(next.ring.current)
    await report(opts, next.ring, changed, next.changed ? `now proving ${fp}${next.added ? ' (added)' : ''}` : `${fp} is already the current key`)
  })

  addJsonOption(
    key.command('rm')
      .description('stop accepting KEY; the current key cannot be removed')
      .argument('<key>', KEY_ARG_HELP)
      .requiredOption('--data <dir>', DATA_HELP)
      .option('--key <current>', CURRENT_HELP)
  ).action(async (value: string, opts: EditOptions) => {
    const k = await keyArgument(value)
    const { ring } = await load(opts)
    const next = removeKey(ring, k)
    await writeKeyring(opts.data, next.ring)
    await report(opts, next.ring, true, `removed ${fingerprint(next.removed)}`)
  })

  addJsonOption(
    key.command('ls')
      .description("list the node's mesh keys as fingerprints (first 8 hex digits of their SHA-256), never the keys")
      .requiredOption('--data <dir>', 'data directory of the node')
      .option('--key <current>', CURRENT_HELP)
  ).action(async (opts: EditOptions) => {
    const found = await keyringToEdit({ flag: opts.key, env: env(), data: opts.data })
    if (found === undefined) throw missingCurrentKey(opts.data)
    const keys = keyInfo({ source: found.existed ? 'keyring' : 'key', ...found.ring })
    if (opts.json === true) {
      await printJson({ ...keys, ...(found.existed ? { file: keyringPath(opts.data) } : {}) })
      return
    }
    for (const fp of keys.accepted) await printLine(`${fp}  ${fp === keys.current ? 'current (proved and accepted)' : 'accepted'}`)
    if (!found.existed) await printLine(`(no ${keyringPath(opts.data)}: the node runs with this single key)`)
  })

  addJsonOption(addClientOptions(
    key.command('reload')
      .description('make a running node re-read DIR/keyring.json now (as SIGHUP does); prints the keys it then uses')
  )).action(async (opts: ClientOptions & JsonOption) => {
    const client = await connect(opts)
    const keys = await client.reloadKeys()
    if (opts.json === true) {
      await printJson(keys)
      return
    }
    await printLine(`proving ${keys.current}, accepting ${keys.accepted.join(', ')}`)
  })
}
