/**
 * The rules that target this node, compiled and indexed by (source peer,
 * source collection) so that each incoming entry finds its rules in O(1).
 * Rebuilt whenever the registry changes (and when transform modules load).
 *
 * Also derived from the registry here:
 *   - which local collections are the source of some rule (their rule-written
 *     records are logged in this node's own log, so chains of rules work);
 *   - which local collections are mirror targets (local writes are refused;
 *     no other rule may write into them).
 */
import type { Registry } from '../registry/registry.js'
import type { Rule } from '../core/types.js'
import { compileRule, ruleFingerprint } from './engine.js'
import type { CompiledRule } from './engine.js'
import type { ModuleCache } from './modules.js'
import { targetsPlatform } from './targets.js'
import type { PlatformIdentity } from './targets.js'
import { modeOf } from '../core/modes.js'

export interface RuleProblem {
  ruleId: string
  message: string
}

export interface RebuildOptions {
  /** This node's region when the registry does not have its platform entry yet. */
  region?: string
  /** Loaded transform modules; rules naming a module not loaded yet stay inactive (and are reported). */
  modules?: ModuleCache
}

export class RuleSet {
  /** Source peer → source collection → the rules reading it. */
  private bySource = new Map<string, Map<string, CompiledRule[]>>()
  private active = new Map<string, CompiledRule>()
  private mirrors = new Map<string, Rule>()
  private publishedCollections = new Set<string>()
  private wantedModules: string[] = []
  private pausedRules: Rule[] = []
  problems: RuleProblem[] = []

  /** Recompute from the registry. Returns the rules that are new or changed. */
  rebuild (registry: Registry, localName: string, options: RebuildOptions = {}): CompiledRule[] {
    const next = new Map<string, CompiledRule>()
    const problems: RuleProblem[] = []
    const changed: CompiledRule[] = []
    const published = new Set<string>()
    const wanted = new Set<string>()
    const known = registry.platform(localName)
    const local: PlatformIdentity = known !== undefined ? known : { name: localName, ...(options.region !== undefined ? { region: options.region } : {}) }
    const mirrorOf = new Map<string, Rule>()
    const paused: Rule[] = []
    const rules = registry.rules()
    for (const rule of rules) {
      if (rule.from.platform === localName) published.add(rule.from.collection)
      if (!targetsPlatform(rule.to, rule.from.platform, local)) continue
      if (modeOf(rule.mode).exact && !mirrorOf.has(rule.to.collection)) mirrorOf.set(rule.to.collection, rule)
    }
    for (const rule of rules) {
      if (!targetsPlatform(rule.to, rule.from.platform, local)) continue
      const mirror = mirrorOf.get(rule.to.collection)
      if (mirror !== undefined && mirror.id !== rule.id) {
        problems.push({ ruleId: rule.id, message: `collection "${rule.to.collection}" is the target of mirror rule ${mirror.id} here; a mirror target takes no other rule: remove one of the two rules or give this one another target collection` })
        continue
      }
      if (rule.paused === true) {
        // applies nothing here until resumed (a paused mirror still keeps its target read-only)
        paused.push(rule)
        continue
      }
      const source = registry.platform(rule.from.platform)
      if (source === undefined) {
        problems.push({ ruleId: rule.id, message: `source platform "${rule.from.platform}" is not in the registry yet` })
        continue
      }
      let module
      if (rule.transform !== undefined) {
        wanted.add(rule.transform)
        const state = options.modules?.get(rule.transform)
        if (state === undefined) {
          problems.push({ ruleId: rule.id, message: `loading transform module "${rule.transform}"` })
          continue
        }
        if (!state.ok) {
          problems.push({ ruleId: rule.id, message: state.error })
          continue
        }
        module = state.module
      }
      const prev = this.active.get(rule.id)
      if (prev !== undefined && prev.sourcePeer === source.peerId && prev.localName === localName && prev.module === module &&
        prev.fingerprint === ruleFingerprint(rule, module?.hash) && JSON.stringify(prev.rule) === JSON.stringify(rule)) {
        next.set(rule.id, prev)
        continue
      }
      try {
        const compiled = compileRule(rule, source.peerId, { localName, ...(module !== undefined ? { module } : {}) })
        next.set(rule.id, compiled)
        changed.push(compiled)
      } catch (err) {
        problems.push({ ruleId: rule.id, message: (err as Error).message })
      }
    }
    const index = new Map<string, Map<string, CompiledRule[]>>()
    for (const c of next.values()) {
      let byCollection = index.get(c.sourcePeer)
      if (byCollection === undefined) index.set(c.sourcePeer, byCollection = new Map())
      const list = byCollection.get(c.rule.from.collection)
      if (list === undefined) byCollection.set(c.rule.from.collection, [c])
      else list.push(c)
    }
    this.active = next
    this.bySource = index
    this.mirrors = mirrorOf
    this.publishedCollections = published
    this.wantedModules = [...wanted]
    this.pausedRules = paused
    this.problems = problems
    return changed
  }

  /** Asked for every entry stored or backfilled: two lookups of strings the entry holds, no key built. */
  forEntry (origin: string, collection: string): CompiledRule[] | undefined {
    return this.bySource.get(origin)?.get(collection)
  }

  get (ruleId: string): CompiledRule | undefined {
    return this.active.get(ruleId)
  }

  all (): CompiledRule[] {
    return [...this.active.values()]
  }

  /** Whether a local collection is the source of some rule (its rule-written records are logged in the own log). */
  isPublished (collection: string): boolean {
    return this.publishedCollections.has(collection)
  }

  published (): string[] {
    return [...this.publishedCollections]
  }

  /**
   * The mirror rule writing into a local collection, if any: from the
   * registry, so a mirror that is not active yet (its source or module not
   * there yet) already keeps local writes out.
   */
  mirrorFor (collection: string): Rule | undefined {
    return this.mirrors.get(collection)
  }

  /** The paused rules that target this node. */
  paused (): Rule[] {
    return this.pausedRules
  }

  /** Transform modules named by rules that target this node. */
  modules (): string[] {
    return this.wantedModules
  }
}


