/**
 * The folders of src/ are layers, and imports point one way: down. A file
 * may import from its own folder and from folders below it, never from one
 * above (docs/architecture.md has the picture). A new folder must be given
 * its place here.
 */
import { readdirSync, readFileSync, statSync } from 'node:fs'
import { dirname, join, relative, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { describe, expect, it } from 'vitest'

const SRC = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..', 'src')

/** Bottom first. Files at the top of src/ are listed by name. */
export const LAYERS: string[][] = [
  ['core', 'wire', 'polyfill.ts'],
  ['store'],
  ['log'],
  ['registry'],
  ['rules'],
  ['network'],
  ['node'],
  ['connectors'],
  ['api'],
  ['cli'],
  ['index.ts']
]

function layerOf (path: string): number {
  const top = relative(SRC, path).split(/[\\/]/)[0].replace(/\.js$/, '.ts')
  const i = LAYERS.findIndex(l => l.includes(top))
  if (i === -1) throw new Error(`src/${top} has no place in LAYERS (test/unit/layers.test.ts): give it one`)
  return i
}

function sources (dir: string): string[] {
  const out: string[] = []
  for (const name of readdirSync(dir)) {
    const p = join(dir, name)
    if (statSync(p).isDirectory()) out.push(...sources(p))
    else if (/\.(c|m)?ts$/.test(name)) out.push(p)
  }
  return out
}

/** `… from './x'` (a clause over one line or many), `import './x'` and `import('./x')`. */
const IMPORT = /\bfrom\s*['"](\.{1,2}\/[^'"]+)['"]|(?:^|\n)\s*import\s*['"](\.{1,2}\/[^'"]+)['"]|\bimport\(\s*['"](\.{1,2}\/[^'"]+)['"]\s*\)/g

describe('layers', () => {
  it('every import in src/ points to the same layer or one below', () => {
    const upward: string[] = []
    for (const file of sources(SRC)) {
      const from = layerOf(file)
      const text = readFileSync(file, 'utf8')
      for (const m of text.matchAll(IMPORT)) {
        const spec = m[1] ?? m[2] ?? m[3]
        const target = resolve(dirname(file), spec)
        if (!target.startsWith(SRC)) continue
        const to = layerOf(target)
        if (to > from) upward.push(`${relative(SRC, file)} imports ${relative(SRC, target)} (layer ${LAYERS[to].join('/')} is above ${LAYERS[from].join('/')})`)
      }
    }
    expect(upward).toEqual([])
  })

  it('sees imports written over several lines, side-effect imports and dynamic ones', () => {
    const text = "import {\n  a,\n  b\n} from '../x/a.js'\nimport '../y/b.js'\nconst c = await import('../z/c.js')\nexport type { D } from './d.js'\n"
    expect([...text.matchAll(IMPORT)].map(m => m[1] ?? m[2] ?? m[3])).toEqual(['../x/a.js', '../y/b.js', '../z/c.js', './d.js'])
  })

  it('the generated wire code says so', () => {
    for (const file of sources(join(SRC, 'wire'))) {
      expect(readFileSync(file, 'utf8').slice(0, 200), relative(SRC, file)).toMatch(/generated .*do not edit/i)
    }
  })
})
