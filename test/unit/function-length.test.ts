/**
 * No function in src/ is longer than 80 lines (generated code aside): a
 * longer one is split along its concepts before it lands.
 */
import { readdirSync, readFileSync, statSync } from 'node:fs'
import { join, relative } from 'node:path'
import ts from 'typescript'
import { describe, expect, it } from 'vitest'

const ROOT = join(import.meta.dirname, '..', '..')
const MAX_LINES = 80

function files (dir: string): string[] {
  const out: string[] = []
  for (const name of readdirSync(dir)) {
    const path = join(dir, name)
    if (statSync(path).isDirectory()) {
      if (name !== 'pb') out.push(...files(path))
    } else if (name.endsWith('.ts')) out.push(path)
  }
  return out
}

function longFunctions (file: string): string[] {
  const source = ts.createSourceFile(file, readFileSync(file, 'utf8'), ts.ScriptTarget.Latest, true)
  const found: string[] = []
  const visit = (node: ts.Node): void => {
    if (ts.isFunctionLike(node) && 'body' in node && node.body !== undefined) {
      const first = source.getLineAndCharacterOfPosition(node.getStart()).line
      const last = source.getLineAndCharacterOfPosition(node.end).line
      const lines = last - first + 1
      const name = 'name' in node && node.name !== undefined ? node.name.getText(source) : '(anonymous)'
      if (lines > MAX_LINES) found.push(`${relative(ROOT, file)}:${first + 1} ${name}: ${lines} lines`)
    }
    ts.forEachChild(node, visit)
  }
  visit(source)
  return found
}

describe('function length', () => {
  it(`no function in src/ is over ${MAX_LINES} lines`, () => {
    expect(files(join(ROOT, 'src')).flatMap(longFunctions)).toEqual([])
  })
})
