/**
 * Transform modules: JavaScript (or TypeScript) code a rule names for what
 * include/exclude/rename cannot express.
 *
 * A rule's `transform` is a path resolved on each target node inside its
 * transforms directory (DATA_DIR/transforms unless the node is given another
 * one); a path that leaves the directory (also through a symlink) is refused,
 * so a rule replicated from another node can only run code that the operator
 * of this node put there.
 *
 * The module exports a function as its default export (or as `transform`):
 *
 *   export default function (record, context) {
 *     // record:  { collection, id, value }   the target record as include/exclude/rename shaped it
 *     // context: { rule, source: { platform, peerId, collection, id, value, version }, target: { platform, collection } }
 *     return { ...record.value, slug: slugify(record.value.title) }   // the new value
 *     // or: return null                                              // skip this record
 *   }
 *
 * It may be async (at most TRANSFORM_TIMEOUT_MS). What it returns must be a
 * JSON object of at most 1 MiB, or null. A throw, a timeout or anything else
 * returned is a transform error: the record is skipped and reported (status,
 * log, `transform-error` event), and sync goes on.
 *
 * Modules are loaded when a rule that names them becomes active and reloaded
 * when the file changes (checked whenever the registry changes and at start);
 * the module's content hash is part of the rule's fingerprint, so a changed
 * module re-evaluates the source data like a changed rule does.
 *
 * `.js`/`.mjs`/`.cjs` files are imported as they are. `.ts`/`.mts` files are
 * transpiled in memory (Node's own type stripping when available, else the
 * `typescript` package when installed); such a module may only import
 * `node:` built-ins — compile it to `.js` for anything else.
 */
import { createHash } from 'node:crypto'
import { readFile, realpath, stat } from 'node:fs/promises'
import { extname, isAbsolute, resolve, sep } from 'node:path'
import { pathToFileURL } from 'node:url'
import type { JsonObject, RecordVersion, Rule } from '../core/types.js'

/** Longest a transform may take for one record. */
export const TRANSFORM_TIMEOUT_MS = 5_000
/** Largest value a transform may return, serialized (as for any record). */
export const MAX_TRANSFORM_VALUE_BYTES = 1024 * 1024

export interface TransformRecord {
  collection: string
  id: string
  value: JsonObject
}

export interface TransformContext {
  rule: Pick<Rule, 'id' | 'mode' | 'from' | 'to'>
  source: { platform: string, peerId: string, collection: string, id: string, value: JsonObject, version: RecordVersion }
  target: { platform: string, collection: string }
}

export type TransformFunction = (record: TransformRecord, context: TransformContext) => unknown

export interface LoadedModule {
  /** As named in the rule. */
  spec: string
  /** Resolved real path. */
  path: string
  /** SHA-256 of the source, hex. */
  hash: string
  fn: TransformFunction
}

export type ModuleState = { ok: true, module: LoadedModule } | { ok: false, error: string }

interface CacheEntry {
  /** size:mtime of the file when it was read, or "missing" */
  signature: string
  state: ModuleState
}

export class ModuleCache {
  readonly dir: string
  private readonly entries = new Map<string, CacheEntry>()

  constructor (dir: string) {
    this.dir = resolve(dir)
  }

  /** The module for a rule's `transform`, once `refresh` has looked at it. */
  get (spec: string): ModuleState | undefined {
    return this.entries.get(spec)?.state
  }

  /**
   * (Re)load the modules named, when new or changed on disk. Returns true
   * when any of them changed (loaded, reloaded, or now failing).
   */
  async refresh (specs: Iterable<string>): Promise<boolean> {
    let changed = false
    for (const spec of new Set(specs)) {
      if (await this.refreshOne(spec)) changed = true
    }
    return changed
  }

  private async refreshOne (spec: string): Promise<boolean> {
    const prev = this.entries.get(spec)
    let path: string
    try {
      path = await this.resolve(spec)
    } catch (err) {
      return this.set(spec, 'unresolvable', { ok: false, error: (err as Error).message }, prev)
    }
    let signature: string
    try {
      const info = await stat(path)
      signature = `${info.size}:${info.mtimeMs}`
    } catch {
      return this.set(spec, 'missing', { ok: false, error: `transform module "${spec}" not found in ${this.dir}; put the file there on every target node` }, prev)
    }
    if (prev !== undefined && prev.signature === signature) return false
    let source: Buffer
    try {
      source = await readFile(path)
    } catch (err) {
      return this.set(spec, signature, { ok: false, error: `cannot read transform module ${path}: ${(err as Error).message}` }, prev)
    }
    const hash = createHash('sha256').update(source).digest('hex')
    if (prev?.state.ok === true && prev.state.module.hash === hash && prev.state.module.path === path) {
      prev.signature = signature
      return false
    }
    try {
      const fn = await importFunction(path, source, hash)
      return this.set(spec, signature, { ok: true, module: { spec, path, hash, fn } }, prev)
    } catch (err) {
      return this.set(spec, signature, { ok: false, error: `transform module ${spec} cannot be loaded: ${(err as Error).message}` }, prev)
    }
  }

  private set (spec: string, signature: string, state: ModuleState, prev: CacheEntry | undefined): boolean {
    this.entries.set(spec, { signature, state })
    if (prev === undefined) return true
    if (prev.state.ok && state.ok) return prev.state.module.hash !== state.module.hash
    if (!prev.state.ok && !state.ok) return prev.state.error !== state.error
    return true
  }

  /** Resolve `spec` inside the transforms directory, refusing anything that leaves it. */
  async resolve (spec: string): Promise<string> {
    const target = isAbsolute(spec) ? resolve(spec) : resolve(this.dir, spec)
    const outside = new Error(`transform module "${spec}" is outside the transforms directory ${this.dir}; modules are only loaded from there`)
    if (!target.startsWith(this.dir + sep)) throw outside
    let real: string
    let realDir: string
    try {
      real = await realpath(target)
      realDir = await realpath(this.dir)
    } catch {
      return target // missing: reported by the caller
    }
    if (!real.startsWith(realDir + sep)) throw outside
    return real
  }
}

async function importFunction (path: string, source: Buffer, hash: string): Promise<TransformFunction> {
  const ext = extname(path).toLowerCase()
  let url: string
  if (ext === '.ts' || ext === '.mts') {
    const js = await transpile(source.toString('utf8'), path)
    url = `data:text/javascript;base64,${Buffer.from(js).toString('base64')}`
  } else if (ext === '.js' || ext === '.mjs' || ext === '.cjs') {
    // the hash makes a changed file a new module (ESM caches by URL)
    url = `${pathToFileURL(path).href}?v=${hash}`
  } else {
    throw new Error(`unsupported file type "${ext}"; use .js, .mjs, .cjs, .ts or .mts`)
  }
  const mod = await import(url) as { default?: unknown, transform?: unknown }
  const candidates = [mod.default, mod.transform, (mod.default as { transform?: unknown } | undefined)?.transform]
  const fn = candidates.find(c => typeof c === 'function')
  if (fn === undefined) throw new Error('it exports no function; export one as the default export or as "transform"')
  return fn as TransformFunction
}

async function transpile (source: string, path: string): Promise<string> {
  const nodeModule = await import('node:module') as { stripTypeScriptTypes?: (code: string, options?: { mode?: string }) => string }
  if (typeof nodeModule.stripTypeScriptTypes === 'function') {
    return nodeModule.stripTypeScriptTypes(source, { mode: 'transform' })
  }
  let ts: typeof import('typescript')
  try {
    ts = (await import('typescript')).default
  } catch {
    throw new Error(`TypeScript modules need Node.js 22.13+ or the "typescript" package; compile ${path} to .js instead`)
  }
  const out = ts.transpileModule(source, {
    fileName: path,
    compilerOptions: { module: ts.ModuleKind.ESNext, target: ts.ScriptTarget.ES2022 },
    reportDiagnostics: false
  })
  return out.outputText
}

export type TransformOutcome = { ok: true, value: JsonObject | null } | { ok: false, error: string }

/** Run a transform on one record: its new value, null (skip), or the error that makes it skip. */
export async function runTransform (module: LoadedModule, record: TransformRecord, context: TransformContext, timeoutMs = TRANSFORM_TIMEOUT_MS): Promise<TransformOutcome> {
  let out: unknown
  let timer: ReturnType<typeof setTimeout> | undefined
  try {
    // the module gets copies: it cannot change what other rules see
    const result = module.fn(structuredClone(record), structuredClone(context))
    if (result instanceof Promise || (typeof result === 'object' && result !== null && typeof (result as { then?: unknown }).then === 'function')) {
      out = await Promise.race([
        result,
        new Promise((_resolve, reject) => {
          timer = setTimeout(() => reject(new Error(`timed out after ${timeoutMs} ms`)), timeoutMs)
        })
      ])
    } else {
      out = result
    }
  } catch (err) {
    return { ok: false, error: describeError(err) }
  } finally {
    if (timer !== undefined) clearTimeout(timer)
  }
  if (out === null) return { ok: true, value: null }
  if (out === undefined) return { ok: false, error: 'returned nothing (undefined); return the new value, or null to skip the record' }
  if (typeof out !== 'object' || Array.isArray(out)) {
    return { ok: false, error: `returned ${Array.isArray(out) ? 'an array' : typeof out}; return a JSON object, or null to skip the record` }
  }
  let text: string
  try {
    text = JSON.stringify(out)
  } catch (err) {
    return { ok: false, error: `returned a value that is not JSON (${(err as Error).message})` }
  }
  const size = Buffer.byteLength(text)
  if (size > MAX_TRANSFORM_VALUE_BYTES) return { ok: false, error: `returned ${size} bytes; a record value is at most ${MAX_TRANSFORM_VALUE_BYTES} bytes` }
  return { ok: true, value: JSON.parse(text) as JsonObject }
}

function describeError (err: unknown): string {
  if (err instanceof Error) return `${err.name !== 'Error' ? err.name + ': ' : ''}${err.message}`.slice(0, 1000)
  return `threw ${typeof err === 'string' ? JSON.stringify(err.slice(0, 200)) : String(err)}`
}
