/**
 * The rules that target this node, compiled and indexed by (source peer,
 * source collection) so that each incoming entry finds its rules in O(1).
 * Rebuilt whenever the registry changes.
 */
import type { Registry } from '../registry/registry.js'
import type { Rule } from '../node/types.js'
import { compileRule } from './engine.js'
import type { CompiledRule } from './engine.js'

export interface RuleProblem {
  ruleId: string
  message: string
}

export class RuleSet {
  private bySource = new Map<string, CompiledRule[]>()
  private active = new Map<string, CompiledRule>()
  problems: RuleProblem[] = []

  /** Recompute from the registry. Returns the rules that are new or changed. */
  rebuild (registry: Registry, localName: string): CompiledRule[] {
    const next = new Map<string, CompiledRule>()
    const problems: RuleProblem[] = []
    const changed: CompiledRule[] = []
    for (const rule of registry.rules()) {
      if (rule.to.platform !== localName) continue
      const source = registry.platform(rule.from.platform)
      if (source === undefined) {
        problems.push({ ruleId: rule.id, message: `source platform "${rule.from.platform}" is not in the registry yet` })
        continue
      }
      const prev = this.active.get(rule.id)
      if (prev !== undefined && prev.sourcePeer === source.peerId && sameRule(prev.rule, rule)) {
        next.set(rule.id, prev)
        continue
      }
      try {
        const compiled = compileRule(rule, source.peerId)
        next.set(rule.id, compiled)
        changed.push(compiled)
      } catch (err) {
        problems.push({ ruleId: rule.id, message: (err as Error).message })
      }
    }
    const index = new Map<string, CompiledRule[]>()
    for (const c of next.values()) {
      const k = sourceKey(c.sourcePeer, c.rule.from.collection)
      const list = index.get(k)
      if (list === undefined) index.set(k, [c])
      else list.push(c)
    }
    this.active = next
    this.bySource = index
    this.problems = problems
    return changed
  }

  forEntry (origin: string, collection: string): CompiledRule[] | undefined {
    return this.bySource.get(sourceKey(origin, collection))
  }

  get (ruleId: string): CompiledRule | undefined {
    return this.active.get(ruleId)
  }

  all (): CompiledRule[] {
    return [...this.active.values()]
  }
}

function sourceKey (peer: string, collection: string): string {
  return `${peer}\x00${collection}`
}

function sameRule (a: Rule, b: Rule): boolean {
  return JSON.stringify(a) === JSON.stringify(b)
}
