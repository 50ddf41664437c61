/**
 * Rule modes live in one table (src/core/modes.ts): no other source file
 * names a mode, and the user docs describe every mode of the table.
 */
import { readdirSync, readFileSync, statSync } from 'node:fs'
import { join, relative } from 'node:path'
import { describe, expect, it } from 'vitest'
import { DEFAULT_RULE_MODE, RULE_MODE_NAMES, RULE_MODES, modeOf } from '../../src/core/modes.js'

const ROOT = join(import.meta.dirname, '..', '..')

function files (dir: string): string[] {
  const out: string[] = []
  for (const name of readdirSync(dir)) {
    const path = join(dir, name)
    if (statSync(path).isDirectory()) {
      if (name !== 'pb') out.push(...files(path)) // generated code
    } else if (/\.(ts|js)$/.test(name)) out.push(path)
  }
  return out
}

describe('rule modes', () => {
  it('are named in src/core/modes.ts only (as string literals)', () => {
    const literal = new RegExp(`(['"\`])(${RULE_MODE_NAMES.map(m => m.replace(/[-]/g, '\\-')).join('|')})\\1`)
    const offenders = files(join(ROOT, 'src'))
      .filter(f => !f.endsWith(join('core', 'modes.ts')))
      .flatMap(f => readFileSync(f, 'utf8').split('\n').map((line, i) => ({ f, i, line })))
      .filter(({ line }) => literal.test(line))
      .map(({ f, i, line }) => `${relative(ROOT, f)}:${i + 1}: ${line.trim()}`)
    expect(offenders).toEqual([])
  })

  it('each have a row in the rules documentation', () => {
    const docs = readFileSync(join(ROOT, 'docs', 'rules.md'), 'utf8')
    for (const mode of RULE_MODE_NAMES) expect(docs, mode).toMatch(new RegExp(`^\\| \`${mode}\``, 'm'))
  })

  it('default to the first mode of the table, and each has every behaviour', () => {
    expect(DEFAULT_RULE_MODE).toBe(RULE_MODE_NAMES[0])
    expect(modeOf(undefined)).toBe(RULE_MODES[DEFAULT_RULE_MODE])
    const keys = Object.keys(RULE_MODES[DEFAULT_RULE_MODE]).sort()
    for (const mode of RULE_MODE_NAMES) expect(Object.keys(RULE_MODES[mode]).sort(), mode).toEqual(keys)
  })
})
