/**
 * The bench runs for many minutes; a `npm run build` (or `npm test`) started
 * meanwhile would swap dist/ under the nodes it starts, and a run could mix
 * two builds or catch one half-written. So the bench copies dist/src once,
 * at its start, into a temp dir (with the package.json and a symlink to
 * node_modules, so imports resolve as from the repository) and starts every
 * node from that copy. The copy is deleted at exit.
 */
import { createHash } from 'node:crypto'
import { existsSync, rmSync } from 'node:fs'
import { cp, copyFile, mkdtemp, readdir, readFile, symlink } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { ROOT } from '../lib/cluster.js'

let snapshotDir: string | undefined

/** Copy the current build; returns the path of the copy's CLI entry point and a SHA-256 over its .js and .cjs files (names and contents). */
export async function snapshotBuild (): Promise<{ cli: string, hash: string }> {
  const src = join(ROOT, 'dist', 'src')
  if (!existsSync(join(src, 'cli', 'bin.cjs'))) throw new Error(`no build in ${src}: run "npm run build" first (npm run bench does)`)
  const dir = await mkdtemp(join(tmpdir(), 'syncmesh-bench-build-'))
  snapshotDir = dir
  process.on('exit', removeSnapshot)
  await cp(src, join(dir, 'dist', 'src'), { recursive: true })
  await copyFile(join(ROOT, 'package.json'), join(dir, 'package.json'))
  await symlink(join(ROOT, 'node_modules'), join(dir, 'node_modules'), 'dir')
  return { cli: join(dir, 'dist', 'src', 'cli', 'bin.cjs'), hash: await hashJs(join(dir, 'dist', 'src')) }
}

async function hashJs (dir: string): Promise<string> {
  const h = createHash('sha256')
  const files = (await readdir(dir, { recursive: true })).filter(f => f.endsWith('.js') || f.endsWith('.cjs')).sort()
  for (const f of files) h.update(f).update('\0').update(await readFile(join(dir, f))).update('\0')
  return h.digest('hex').slice(0, 16)
}

export function removeSnapshot (): void {
  if (snapshotDir === undefined) return
  try { rmSync(snapshotDir, { recursive: true, force: true }) } catch {}
  snapshotDir = undefined
}
