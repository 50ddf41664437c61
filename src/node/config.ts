/**
 * The node's data directory: identity, config file and mesh key.
 *
 *   DIR/config.json    name, region, network and webhook settings (validated at start), mode 0600
 *   DIR/identity.key   Ed25519 private key (libp2p protobuf encoding), mode 0600
 *   DIR/mesh.key       optional mesh key, read when neither --key nor $SYNCMESH_KEY is given
 *   DIR/db/            LevelDB: logs, records, registry, peers
 *   DIR/api.json       {"url","token"} of the running node, mode 0600
 */
import { randomBytes } from 'node:crypto'
import { chmod, mkdir, readFile, writeFile, stat, open } from 'node:fs/promises'
import { join } from 'node:path'
import { generateKeyPair, privateKeyFromProtobuf, privateKeyToProtobuf } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import type { PrivateKey } from '@libp2p/interface'
import { z } from 'zod'
import { ConfigError, ConflictError, InvalidInputError } from '../core/errors.js'
import { MIN_MESH_KEY_LENGTH } from './constants.js'
import { parseAllowEntry } from '../rules/webhook-policy.js'
import { NAME_PATTERN } from '../store/names.js'

export { NAME_PATTERN }
/** Limits of maxClockAheadMs: 1 s to 1 day. */
export const MIN_CLOCK_AHEAD_MS = 1000
export const MAX_CLOCK_AHEAD_MS = 86_400_000

/** An entry of "webhooks.allow" (see src/rules/webhook-policy.ts), checked at start. */
export const webhookAllowEntry = z.string().max(300).superRefine((text, ctx) => {
  try {
    parseAllowEntry(text)
  } catch (err) {
    ctx.addIssue({ code: 'custom', message: (err as Error).message })
  }
})

/** Node-local webhook settings: never replicated. */
export const webhooksConfigSchema = z.object({
  /** Hosts, addresses and ranges this node may POST webhooks to; "*" = any public address. */
  allow: z.array(webhookAllowEntry).max(1000).optional(),
  /** Secret name → value: what the rules' "secretRef" names. */
  secrets: z.record(z.string().regex(NAME_PATTERN, 'a secret name: letters, digits, "_", "." or "-", at most 64 characters'), z.string().min(16, 'at least 16 characters (e.g. the output of "openssl rand -hex 32")').max(256)).optional(),
  /** Attempts per change before it is given up and the next one is delivered. */
  maxAttempts: z.number().int().min(1).max(1000).optional(),
  /** Seconds one request (connect, send, answer) may take. */
  timeout: z.number().min(1).max(60).optional()
}).strict()

export const configSchema = z.object({
  version: z.literal(1),
  name: z.string().regex(NAME_PATTERN, 'a platform name: letters, digits, "_", "." or "-", at most 64 characters'),
  region: z.string().regex(NAME_PATTERN).optional(),
  listen: z.array(z.string()).optional(),
  announce: z.array(z.string()).optional(),
  bootstrap: z.array(z.string()).optional(),
  api: z.string().optional(),
  targetConnections: z.number().int().min(0).max(1000).optional(),
  maxConnections: z.number().int().min(1).max(10000).optional(),
  mdns: z.boolean().optional(),
  admins: z.array(z.string().min(1)).max(1000).optional(),
  /** Log level of `syncmesh start` (flag --log-level wins). */
  logLevel: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).optional(),
  /** Log format of `syncmesh start`: JSON lines, or human-readable lines (flag --log-format wins). */
  logFormat: z.enum(['json', 'pretty']).optional(),
  /** Entries received stamped further ahead of this node's clock are refused (ms; default 60000). */
  maxClockAheadMs: z.number().int().min(MIN_CLOCK_AHEAD_MS).max(MAX_CLOCK_AHEAD_MS).optional(),
  /** EXPERIMENTAL: carry rules by rule streams (protocols/sync/streams.md); every node of a mesh needs the same setting (flag --streams, default false). */
  streams: z.boolean().optional(),
  /** EXPERIMENTAL, with streams: which rule streams this node stores and forwards, "all" (default) or only those it can read, "audience" (flag --relay). */
  relay: z.enum(['all', 'audience']).optional(),
  webhooks: webhooksConfigSchema.optional()
}).strict()

export type NodeConfig = z.infer<typeof configSchema>

export const CONFIG_FILE = 'config.json'
export const IDENTITY_FILE = 'identity.key'
export const MESH_KEY_FILE = 'mesh.key'
export const API_FILE = 'api.json'
export const DB_DIR = 'db'

async function exists (path: string): Promise<boolean> {
  try {
    await stat(path)
    return true
  } catch {
    return false
  }
}

export interface InitResult {
  peerId: string
  name: string
  region?: string
  data: string
}

/** Create a new node directory. Refuses a directory that already holds a node. */
export async function initDataDir (options: { data: string, name: string, region?: string }): Promise<InitResult> {
  const { data, name, region } = options
  if (!NAME_PATTERN.test(name)) {
    throw new InvalidInputError(`invalid node name "${name}": use letters, digits, "_", "." or "-" (at most 64 characters)`, 'INVALID_NAME')
  }
  if (region != null && !NAME_PATTERN.test(region)) {
    throw new InvalidInputError(`invalid region "${region}": use letters, digits, "_", "." or "-" (at most 64 characters)`, 'INVALID_NAME')
  }
  if (await exists(join(data, CONFIG_FILE)) || await exists(join(data, IDENTITY_FILE))) {
    throw new ConflictError(`${data} already holds a syncmesh node; use it with "syncmesh start --data ${data}" or choose another directory`, 'NODE_EXISTS')
  }
  await mkdir(data, { recursive: true, mode: 0o700 })
  const key = await generateKeyPair('Ed25519')
  // 'wx': fail rather than overwrite if another init raced us
  const fh = await open(join(data, IDENTITY_FILE), 'wx', 0o600)
  try {
    await fh.writeFile(privateKeyToProtobuf(key))
    await fh.sync()
  } finally {
    await fh.close()
  }
  const config: NodeConfig = { version: 1, name, ...(region != null ? { region } : {}) }
  await writeFile(join(data, CONFIG_FILE), JSON.stringify(config, null, 2) + '\n', { mode: 0o600, flag: 'wx' })
  return { peerId: peerIdFromPrivateKey(key).toString(), name, ...(region != null ? { region } : {}), data }
}

/** Files of the data directory that only the node's user may read. */
const PRIVATE_FILES = [IDENTITY_FILE, MESH_KEY_FILE, API_FILE, CONFIG_FILE, 'keyring.json', 'api-tokens.json']

/**
 * Make the data directory private to the node's user, as ssh does with its
 * own directory: a directory (or db/) that group or others may read or enter
 * is set to 0700, a key or config file they may read to 0600. Returns what
 * was changed, for the log; throws DATA_DIR_PERMISSIONS when it cannot be
 * fixed (e.g. the directory belongs to another user).
 */
export async function secureDataDir (data: string): Promise<string[]> {
  if (process.platform === 'win32') return []
  const fixed: string[] = []
  const fix = async (path: string, dir: boolean): Promise<void> => {
    let mode: number
    try {
      const st = await stat(path)
      if (st.isDirectory() !== dir) return
      mode = st.mode & 0o777
    } catch {
      return // absent: created private later
    }
    if ((mode & 0o077) === 0) return
    const want = dir ? 0o700 : 0o600
    try {
      await chmod(path, want)
    } catch (err) {
      throw new ConfigError(`${path} has mode ${mode.toString(8).padStart(4, '0')}: other users may read the node's data, and it cannot be changed to ${want.toString(8).padStart(4, '0')} (${(err as Error).message}); run "chmod ${want.toString(8)} ${path}" as its owner`, 'DATA_DIR_PERMISSIONS')
    }
    fixed.push(`${path}: ${mode.toString(8).padStart(4, '0')} → ${want.toString(8).padStart(4, '0')}`)
  }
  await fix(data, true)
  await fix(join(data, DB_DIR), true)
  for (const f of PRIVATE_FILES) await fix(join(data, f), false)
  return fixed
}

/** The node's config: DATA/config.json, or `file` (start --config FILE). */
export async function loadConfig (data: string, file?: string): Promise<NodeConfig> {
  const path = file ?? join(data, CONFIG_FILE)
  let text: string
  try {
    text = await readFile(path, 'utf8')
  } catch {
    if (file !== undefined) throw new ConfigError(`cannot read the config file ${file}; check the path given to --config`, 'CONFIG_NOT_FOUND')
    throw new ConfigError(`no syncmesh node in ${data} (${CONFIG_FILE} missing); create one with "syncmesh init --data ${data} --name NAME"`, 'NODE_NOT_FOUND')
  }
  let raw: unknown
  try {
    raw = JSON.parse(text)
  } catch (err) {
    throw new ConfigError(`${path} is not valid JSON (${(err as Error).message}); fix or restore it`)
  }
  const parsed = configSchema.safeParse(raw)
  if (!parsed.success) {
    const issue = parsed.error.issues[0]
    throw new ConfigError(`${path}: ${issue?.path.join('.') ?? ''}: ${issue?.message ?? 'invalid'}; fix the file`)
  }
  return parsed.data
}

export async function loadIdentity (data: string): Promise<PrivateKey> {
  const path = join(data, IDENTITY_FILE)
  let bytes: Uint8Array
  try {
    bytes = await readFile(path)
  } catch {
    throw new ConfigError(`no identity in ${data} (${IDENTITY_FILE} missing); create the node with "syncmesh init --data ${data} --name NAME"`, 'NODE_NOT_FOUND')
  }
  try {
    return privateKeyFromProtobuf(bytes)
  } catch (err) {
    throw new ConfigError(`${path} is not a valid identity key (${(err as Error).message}); restore it from a backup`)
  }
}

/** A new random mesh key: 32 bytes of entropy, hex. */
export function generateMeshKey (): string {
  return randomBytes(32).toString('hex')
}

export function validateMeshKey (key: string): string {
  const trimmed = key.trim()
  if (trimmed.length < MIN_MESH_KEY_LENGTH) {
    throw new ConfigError(`the mesh key is too short (${trimmed.length} characters, at least ${MIN_MESH_KEY_LENGTH} needed); generate one with "syncmesh key gen"`, 'KEY_TOO_SHORT')
  }
  return trimmed
}

/** --key, else $SYNCMESH_KEY, else DIR/mesh.key. */
export async function resolveMeshKey (options: { flag?: string, env?: string, data: string }): Promise<string> {
  if (options.flag != null && options.flag !== '') return validateMeshKey(options.flag)
  if (options.env != null && options.env !== '') return validateMeshKey(options.env)
  const path = join(options.data, MESH_KEY_FILE)
  let text: string
  try {
    text = await readFile(path, 'utf8')
  } catch {
    throw new ConfigError(`no mesh key: pass --key, set SYNCMESH_KEY, or write it to ${path} (generate one with "syncmesh key gen")`, 'KEY_MISSING')
  }
  return validateMeshKey(text)
}

export interface ApiFile {
  url: string
  token: string
}

export async function writeApiFile (data: string, api: ApiFile): Promise<void> {
  const path = join(data, API_FILE)
  await writeFile(path, JSON.stringify(api) + '\n', { mode: 0o600 })
  // writeFile's mode only applies on creation
  await chmod(path, 0o600)
}

export async function readApiFile (data: string): Promise<ApiFile> {
  const path = join(data, API_FILE)
  let raw: unknown
  try {
    raw = JSON.parse(await readFile(path, 'utf8'))
  } catch {
    throw new ConfigError(`cannot read ${path}: is the node running? Start it with "syncmesh start --data ${data}", or pass --api URL --token TOKEN`, 'NODE_NOT_RUNNING')
  }
  const parsed = z.object({ url: z.string(), token: z.string() }).safeParse(raw)
  if (!parsed.success) throw new ConfigError(`${path} is malformed; restart the node to rewrite it`, 'NODE_NOT_RUNNING')
  return parsed.data
}
