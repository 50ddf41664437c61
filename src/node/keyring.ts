/**
 * The mesh keyring: DIR/keyring.json (mode 0600) holds the mesh key this node
 * proves (`current`) and every key it accepts from peers (`accepted`), so the
 * mesh key can be rotated without downtime (protocols/auth/README.md §7):
 *
 *   {"version": 1, "current": "NEW…", "accepted": ["NEW…", "OLD…"]}
 *
 * - `current` is always accepted, listed in `accepted` or not; the file the
 *   `syncmesh key` commands write always lists it.
 * - Keys are trimmed, at least MIN_MESH_KEY_LENGTH characters, at most
 *   MAX_KEYS of them.
 *
 * How the keyring and the other key sources interact (README "Rotating the
 * mesh key"):
 *
 * - Without keyring.json, a node proves and accepts exactly one key: --key,
 *   else $SYNCMESH_KEY, else DIR/mesh.key (as before keyrings existed).
 * - With keyring.json, the keyring decides: the node proves its `current` and
 *   accepts its `accepted`; DIR/mesh.key is not read. A key given by --key /
 *   $SYNCMESH_KEY (or `key` in the library) must be one of the keyring's keys,
 *   else the node refuses to start (KEY_NOT_IN_KEYRING): a stale flag must
 *   neither bring back a retired key nor make the node prove a key its peers
 *   may no longer accept.
 * - A running node re-reads keyring.json on SIGHUP (`SyncNode.reloadKeys()`),
 *   without the start-up check, so the flag it was started with may since
 *   have been retired. Connections stay up: authentication happens once per
 *   connection.
 *
 * Only fingerprints (the first 8 hex digits of SHA-256 over the key's UTF-8
 * bytes) are ever printed or logged, never keys.
 */
import { createHash, randomBytes } from 'node:crypto'
import { chmod, open, readFile, rename, rm, stat } from 'node:fs/promises'
import { join } from 'node:path'
import { z } from 'zod'
import { ConfigError, ConflictError, InvalidInputError, NotFoundError } from '../core/errors.js'
import { MESH_KEY_FILE, resolveMeshKey } from './config.js'
import { MIN_MESH_KEY_LENGTH } from './constants.js'
import type { MeshKeyInfo } from '../core/types.js'

export const KEYRING_FILE = 'keyring.json'
/** Every accepted key costs one HMAC per verification; a rollover needs two. */
export const MAX_KEYS = 16
export const MAX_KEY_LENGTH = 1024
const FINGERPRINT_HEX = 8

const keySchema = z.string()
  .transform((s) => s.trim())
  .pipe(z.string()
    .min(MIN_MESH_KEY_LENGTH, `a mesh key must be at least ${MIN_MESH_KEY_LENGTH} characters (generate one with "syncmesh key gen")`)
    .max(MAX_KEY_LENGTH, `a mesh key must be at most ${MAX_KEY_LENGTH} characters`))

export const keyringSchema = z.object({
  version: z.literal(1),
  current: keySchema,
  accepted: z.array(keySchema).max(MAX_KEYS, `at most ${MAX_KEYS} accepted keys`)
}).strict()

export interface Keyring {
  /** The key this node proves. */
  current: string
  /** Every key this node accepts: `current` first, no duplicates. */
  accepted: string[]
}

/** The keys a node runs with. */
export interface MeshKeys extends Keyring {
  /** Where they came from: DIR/keyring.json, or the single key given at start. */
  source: 'keyring' | 'key'
  /** Something the operator should fix (e.g. keyring.json readable by others). */
  warning?: string
}

export type { MeshKeyInfo }

/** First 8 hex digits of SHA-256 over the key (trimmed) — safe to print and compare across machines. */
export function fingerprint (key: string): string {
  return createHash('sha256').update(key.trim(), 'utf8').digest('hex').slice(0, FINGERPRINT_HEX)
}

export function keyInfo (keys: MeshKeys): MeshKeyInfo {
  return { source: keys.source, current: fingerprint(keys.current), accepted: keys.accepted.map(fingerprint) }
}

/** One line for logs and messages, e.g. "proving 1a2b3c4d, accepting 1a2b3c4d, 9f8e7d6c". */
export function describeKeys (keys: Keyring): string {
  return `proving ${fingerprint(keys.current)}, accepting ${keys.accepted.map(fingerprint).join(', ')}`
}

/** `current` first, then the other accepted keys in their order, without duplicates. */
export function normalizeKeyring (current: string, accepted: string[]): Keyring {
  const c = current.trim()
  const rest = accepted.map((k) => k.trim()).filter((k) => k !== c)
  return { current: c, accepted: [c, ...new Set(rest)] }
}

/** The order MeshAuth wants: the proved key first, then every other accepted key. */
export function authKeys (keys: Keyring): string[] {
  return normalizeKeyring(keys.current, keys.accepted).accepted
}

/** Validate a key typed by an operator (trimmed; KEY_TOO_SHORT / KEY_TOO_LONG). */
export function checkKey (key: string): string {
  const k = key.trim()
  if (k.length < MIN_MESH_KEY_LENGTH) {
    throw new InvalidInputError(`the mesh key is too short (${k.length} characters, at least ${MIN_MESH_KEY_LENGTH} needed); generate one with "syncmesh key gen"`, 'KEY_TOO_SHORT')
  }
  if (k.length > MAX_KEY_LENGTH) {
    throw new InvalidInputError(`the mesh key is too long (${k.length} characters, at most ${MAX_KEY_LENGTH})`, 'KEY_TOO_LONG')
  }
  return k
}

export function keyringPath (dir: string): string {
  return join(dir, KEYRING_FILE)
}

/** DIR/keyring.json, or undefined when there is none. Throws ConfigError (KEYRING_INVALID) when it is malformed. */
export async function readKeyring (dir: string): Promise<Keyring | undefined> {
  const path = keyringPath(dir)
  let text: string
  try {
    text = await readFile(path, 'utf8')
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined
    throw new ConfigError(`cannot read ${path}: ${(err as Error).message}`, 'KEYRING_INVALID')
  }
  let raw: unknown
  try {
    raw = JSON.parse(text)
  } catch (err) {
    throw new ConfigError(`${path} is not valid JSON (${(err as Error).message}); fix it or rewrite it with "syncmesh key use KEY"`, 'KEYRING_INVALID')
  }
  const parsed = keyringSchema.safeParse(raw)
  if (!parsed.success) {
    const issue = parsed.error.issues[0]
    const where = issue?.path.length !== undefined && issue.path.length > 0 ? `${issue.path.join('.')}: ` : ''
    throw new ConfigError(`${path}: ${where}${issue?.message ?? 'invalid'}; expected {"version":1,"current":"KEY","accepted":["KEY",…]}`, 'KEYRING_INVALID')
  }
  const ring = normalizeKeyring(parsed.data.current, parsed.data.accepted)
  if (ring.accepted.length > MAX_KEYS) throw new ConfigError(`${path}: at most ${MAX_KEYS} keys`, 'KEYRING_INVALID')
  return ring
}

/** Write DIR/keyring.json atomically (temp file, fsync, rename), mode 0600. */
export async function writeKeyring (dir: string, keyring: Keyring): Promise<void> {
  const ring = normalizeKeyring(keyring.current, keyring.accepted)
  const parsed = keyringSchema.safeParse({ version: 1, ...ring })
  if (!parsed.success) throw new InvalidInputError(`refusing to write an invalid keyring: ${parsed.error.issues[0]?.message ?? 'invalid'}`, 'KEYRING_INVALID')
  const path = keyringPath(dir)
  const tmp = `${path}.${randomBytes(6).toString('hex')}.tmp`
  const fh = await open(tmp, 'wx', 0o600)
  try {
    await fh.writeFile(JSON.stringify({ version: 1, current: ring.current, accepted: ring.accepted }, null, 2) + '\n')
    await fh.sync()
  } catch (err) {
    await fh.close().catch(() => {})
    await rm(tmp, { force: true })
    throw err
  }
  await fh.close()
  try {
    await rename(tmp, path)
  } catch (err) {
    await rm(tmp, { force: true })
    throw err
  }
  await chmod(path, 0o600)
}

/** Whether keyring.json can be read by others than its owner (it should be 0600). */
export async function keyringTooOpen (dir: string): Promise<boolean> {
  try {
    return ((await stat(keyringPath(dir))).mode & 0o077) !== 0
  } catch {
    return false
  }
}

/**
 * The keys a node runs with (see the top of this file). `startKey` is the key
 * given at start (--key, $SYNCMESH_KEY, mesh.key or the library's `key`).
 * With `reload`, keyring.json must exist, and `startKey` need not be in it.
 */
export async function loadMeshKeys (dir: string, startKey: string, options: { reload?: boolean } = {}): Promise<MeshKeys> {
  const ring = await readKeyring(dir)
  if (ring === undefined) {
    if (options.reload === true) {
      throw new ConfigError(`no ${KEYRING_FILE} in ${dir}, so there is nothing to reload; the keys are unchanged (create it with "syncmesh key add KEY --data ${dir}")`, 'KEYRING_MISSING')
    }
    const key = startKey.trim()
    return { source: 'key', current: key, accepted: [key] }
  }
  if (options.reload !== true && !ring.accepted.includes(startKey.trim())) {
    throw new ConfigError(`the mesh key given at start (fingerprint ${fingerprint(startKey)}) is not in ${keyringPath(dir)} (${describeKeys(ring)}); the keyring decides which keys this node uses: drop --key / $SYNCMESH_KEY, or accept the key with "syncmesh key add KEY --data ${dir}"`, 'KEY_NOT_IN_KEYRING')
  }
  const keys: MeshKeys = { source: 'keyring', ...ring }
  if (await keyringTooOpen(dir)) keys.warning = `${keyringPath(dir)} can be read by other users; restrict it with "chmod 600 ${keyringPath(dir)}"`
  return keys
}

/**
 * The key `syncmesh start` hands to the node: --key, else $SYNCMESH_KEY, else
 * the keyring's current key when DIR/keyring.json exists, else DIR/mesh.key.
 */
export async function resolveStartKey (options: { flag?: string, env?: string, data: string }): Promise<string> {
  const given = (options.flag != null && options.flag !== '') || (options.env != null && options.env !== '')
  if (!given) {
    const ring = await readKeyring(options.data)
    if (ring !== undefined) return ring.current
  }
  return await resolveMeshKey(options)
}

// ---- edits (the `syncmesh key` commands) ---------------------------------

/**
 * The keyring to edit: DIR/keyring.json, else one seeded with the node's
 * single key (--key, $SYNCMESH_KEY, DIR/mesh.key), undefined when neither exists.
 */
export async function keyringToEdit (options: { flag?: string, env?: string, data: string }): Promise<{ ring: Keyring, existed: boolean } | undefined> {
  const ring = await readKeyring(options.data)
  if (ring !== undefined) return { ring, existed: true }
  let key: string
  try {
    key = await resolveMeshKey(options)
  } catch (err) {
    if ((err as ConfigError).code === 'KEY_MISSING') return undefined
    throw err
  }
  return { ring: { current: key, accepted: [key] }, existed: false }
}

export function missingCurrentKey (data: string): ConfigError {
  return new ConfigError(`${keyringPath(data)} does not exist yet and the node's current key is unknown: pass it with --key CURRENT_KEY (or set $SYNCMESH_KEY, or keep it in ${join(data, MESH_KEY_FILE)}), so it stays accepted`, 'KEY_MISSING')
}

/**
 * Find a key of the ring by the key itself or by its fingerprint (8 hex
 * digits; a key is at least 32 characters, so the two never collide).
 */
export function findKey (ring: Keyring, keyOrFingerprint: string): string | undefined {
  const wanted = keyOrFingerprint.trim()
  if (/^[0-9a-f]{8}$/i.test(wanted)) {
    const matches = ring.accepted.filter((k) => fingerprint(k) === wanted.toLowerCase())
    if (matches.length > 1) throw new ConflictError(`two keys have the fingerprint ${wanted}; name the key itself`, 'KEY_AMBIGUOUS')
    return matches[0]
  }
  return ring.accepted.find((k) => k === wanted)
}

/** Accept `key` as well. Returns the new ring and whether it changed. */
export function addKey (ring: Keyring, key: string): { ring: Keyring, changed: boolean } {
  const k = checkKey(key)
  if (ring.accepted.includes(k)) return { ring, changed: false }
  if (ring.accepted.length >= MAX_KEYS) {
    throw new ConflictError(`the keyring already holds ${MAX_KEYS} keys; remove retired ones with "syncmesh key rm KEY"`, 'KEYRING_FULL')
  }
  return { ring: normalizeKeyring(ring.current, [...ring.accepted, k]), changed: true }
}

/**
 * Prove `key` from now on (adding it when it is new, given in full). The old
 * current key stays accepted. `key` may be the fingerprint of an accepted key.
 */
export function useKey (ring: Keyring, keyOrFingerprint: string): { ring: Keyring, changed: boolean, added: boolean } {
  let k = findKey(ring, keyOrFingerprint)
  let added = false
  if (k === undefined) {
    if (/^[0-9a-f]{8}$/i.test(keyOrFingerprint.trim())) {
      throw new NotFoundError(`no key with fingerprint ${keyOrFingerprint.trim()} in the keyring; list them with "syncmesh key ls"`, 'KEY_NOT_FOUND')
    }
    const next = addKey(ring, keyOrFingerprint)
    ring = next.ring
    k = checkKey(keyOrFingerprint)
    added = true
  }
  if (k === ring.current) return { ring, changed: added, added }
  return { ring: normalizeKeyring(k, ring.accepted), changed: true, added }
}

/** Stop accepting `key` (or the key with that fingerprint). Refuses the current key. */
export function removeKey (ring: Keyring, keyOrFingerprint: string): { ring: Keyring, removed: string } {
  const k = findKey(ring, keyOrFingerprint)
  if (k === undefined) {
    throw new NotFoundError(`the keyring holds no such key${/^[0-9a-f]{8}$/i.test(keyOrFingerprint.trim()) ? ` (fingerprint ${keyOrFingerprint.trim()})` : ` (fingerprint ${fingerprint(keyOrFingerprint)})`}; list them with "syncmesh key ls"`, 'KEY_NOT_FOUND')
  }
  if (k === ring.current) {
    throw new ConflictError(`refusing to remove the current key ${fingerprint(k)}: this node proves it; switch first with "syncmesh key use NEW_KEY"`, 'KEY_IS_CURRENT')
  }
  return { ring: normalizeKeyring(ring.current, ring.accepted.filter((x) => x !== k)), removed: k }
}
