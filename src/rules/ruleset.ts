/**
 * The rules that target this node, compiled and indexed by (source peer,
 * source collection) so that each incoming entry finds its rules in O(1).
 * Rebuilt whenever the registry changes (and when transform modules load).
 *
 * A rule whose source is a group (a region, a tag, "*") is compiled once per
 * platform of the group that feeds this node (every member but this node),
 * each with its own state (CompiledRule.stateId): membership follows the
 * registry, so a platform joining the group adds one (it backfills) and one
 * leaving removes it (RuleService notes which left: Ingestor.groupSources).
 *
 * Also derived from the registry here:
 *   - which local collections are the source of some rule (their rule-written
 *     records are logged in this node's own log, so chains of rules work), and
 *     which rules' relayed puts into them need not be (relayedPutsLeftOut);
 *   - which local collections are mirror targets (local writes are refused;
 *     no other rule may write into them).
 */
import type { Registry } from '../registry/registry.js'
import { logId, peerOf } from '../log/log-id.js'
import { SEALED_COLLECTION } from '../store/names.js'
import type { Rule } from '../core/types.js'
import { compileRule, passesOnAsIs, ruleFingerprint, stateIdOf } from './engine.js'
import type { CompiledRule } from './engine.js'
import type { LoadedModule, ModuleCache } from './modules.js'
import { isGroupSource, ruleSources, ruleTargets, selects, targetsPlatform } from './targets.js'
import type { PlatformIdentity } from './targets.js'
import { modeOf } from '../core/modes.js'
import { ruleStreamId } from './stream-plan.js'

/** A rule this node is the source of, compiled to run its filter, key and projection here (rule streams). */
export interface OutboundRule {
  compiled: CompiledRule
  /** The stream id of the rule's current generation (ruleStreamId). */
  stream: string
  /** A rule with a targets field: the one target platform this stream goes to (its compiled form checks the field for it). */
  target?: string
}

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

/** A rule's transform module as loaded here: none named, loaded, or why the rule cannot run yet. */
function moduleOf (rule: Rule, modules: ModuleCache | undefined, wanted: Set<string>): { module?: LoadedModule, problem?: string } {
  if (rule.transform === undefined) return {}
  wanted.add(rule.transform)
  const state = modules?.get(rule.transform)
  if (state === undefined) return { problem: `loading transform module "${rule.transform}"` }
  if (!state.ok) return { problem: state.error }
  return { module: state.module }
}

/** Source peer → source collection → the compiled rules reading it. */
function indexBySource (compiled: Iterable<CompiledRule>): Map<string, Map<string, CompiledRule[]>> {
  const index = new Map<string, Map<string, CompiledRule[]>>()
  for (const c of compiled) {
    let byCollection = index.get(c.sourcePeer)
    if (byCollection === undefined) index.set(c.sourcePeer, byCollection = new Map())
    // a rule stream's entries are encrypted: they name "$sealed" (src/log/sealed-entry.ts)
    const collection = c.stream !== undefined ? SEALED_COLLECTION : c.rule.from.collection
    const list = byCollection.get(collection)
    if (list === undefined) byCollection.set(collection, [c])
    else list.push(c)
  }
  return index
}

export class RuleSet {
  /** Source peer → source collection → the rules reading it. */
  private bySource = new Map<string, Map<string, CompiledRule[]>>()
  /** By state id (CompiledRule.stateId): one per rule, or per source platform of a group source. */
  private active = new Map<string, CompiledRule>()
  /** Rule id → its compiled forms here (several for a group source, possibly none when the group is empty). */
  private byRule = new Map<string, CompiledRule[]>()
  /** Rule id → the rule compiled without a source, for what is per rule (a mirror's sweep), for active group-source rules. */
  private groupRules = new Map<string, CompiledRule>()
  private mirrors = new Map<string, Rule>()
  private publishedCollections = new Set<string>()
  private leftOutPuts = new Map<string, Set<string>>()
  /** Rule streams: own stream → the rules whose relayed puts it leaves out (streamPutsLeftOut). */
  private streamLeftOutPuts = new Map<string, Set<string>>()
  private sharing = new Map<string, Set<string>>()
  private wantedModules: string[] = []
  private pausedRules: Rule[] = []
  private outbound = new Map<string, OutboundRule[]>()
  private localName = ''
  problems: RuleProblem[] = []
  /**
   * Whether rules are carried by streams (protocols/sync/streams.md): the
   * source runs a rule's filter, key and projection into the rule's stream,
   * and its targets read that stream instead of the source's whole log.
   */
  readonly streams: boolean

  constructor (options: { streams?: boolean } = {}) {
    this.streams = options.streams === true
  }

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
      if (readsLocal(rule, local)) published.add(rule.from.collection)
      if (!targetsPlatform(rule.to, rule.from, local)) continue
      if (modeOf(rule.mode).exact && !mirrorOf.has(rule.to.collection)) mirrorOf.set(rule.to.collection, rule)
    }
    const byRule = new Map<string, CompiledRule[]>()
    const groupRules = new Map<string, CompiledRule>()
    const platforms = registry.platforms()
    for (const rule of rules) {
      if (!targetsPlatform(rule.to, rule.from, local)) continue
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
      const group = isGroupSource(rule.from)
      const sources = ruleSources(rule.from, platforms, localName)
      if (!group && sources.length === 0) {
        problems.push({ ruleId: rule.id, message: `source platform "${rule.from.platform ?? ''}" is not in the registry yet` })
        continue
      }
      const loaded = moduleOf(rule, options.modules, wanted)
      if (loaded.problem !== undefined) {
        problems.push({ ruleId: rule.id, message: loaded.problem })
        continue
      }
      const module = loaded.module
      let compiledHere: CompiledRule[]
      try {
        if (group) {
          const prev = this.groupRules.get(rule.id)
          groupRules.set(rule.id, prev !== undefined && prev.module === module && JSON.stringify(prev.rule) === JSON.stringify(rule) ? prev : compileRule(rule, '', { localName, ...(module !== undefined ? { module } : {}) }))
        }
        compiledHere = sources.map(source => this.compiledFor(rule, source, localName, module, changed))
      } catch (err) {
        problems.push({ ruleId: rule.id, message: (err as Error).message })
        groupRules.delete(rule.id)
        continue
      }
      for (const c of compiledHere) next.set(c.stateId, c)
      byRule.set(rule.id, compiledHere)
    }
    this.active = next
    this.byRule = byRule
    this.groupRules = groupRules
    this.bySource = indexBySource(next.values())
    this.mirrors = mirrorOf
    this.publishedCollections = published
    this.sharing = sharing(registry, rules, local)
    this.leftOutPuts = relayedPutsLeftOut(registry, rules, local, published)
    this.wantedModules = [...wanted]
    this.pausedRules = paused
    this.problems = problems
    this.outbound = this.streams ? this.outboundRules(registry, rules, local) : new Map()
    this.streamLeftOutPuts = this.streams ? streamPutsLeftOut(registry, rules, local, this.outbound) : new Map()
    this.localName = localName
    return changed
  }

  /** Local collection → the rules this node is the source of, each compiled for its source side (the one compiled before when the rule did not change); a rule with a targets field once per target platform. */
  private outboundRules (registry: Registry, rules: Rule[], local: PlatformIdentity): Map<string, OutboundRule[]> {
    const before = new Map<string, OutboundRule>()
    for (const list of this.outbound.values()) for (const o of list) before.set(o.stream, o)
    const out = new Map<string, OutboundRule[]>()
    for (const rule of rules) {
      if (!readsLocal(rule, local)) continue
      const targets = rule.targetsField === undefined ? [undefined] : ruleTargets(rule, registry).map(t => t.name).filter(name => name !== local.name)
      for (const target of targets) {
        const stream = ruleStreamId(rule, target)
        const prev = before.get(stream)
        let o: OutboundRule
        if (prev !== undefined && JSON.stringify(prev.compiled.rule) === JSON.stringify(rule)) o = prev
        else {
          try {
            o = { compiled: compileRule(rule, '', { localName: target ?? local.name }), stream, ...(target !== undefined ? { target } : {}) }
          } catch {
            continue // an invalid rule: its targets report it
          }
        }
        const list = out.get(rule.from.collection)
        if (list === undefined) out.set(rule.from.collection, [o])
        else list.push(o)
      }
    }
    return out
  }

  /** The log a rule reads from its source platform `peerId` here: the platform's whole log, or with rule streams the rule's stream of it. */
  sourceLog (rule: Rule, peerId: string): string {
    return this.streams ? logId(peerId, ruleStreamId(rule, this.localName)) : peerId
  }

  /** The rules this node is the source of that read local `collection` (rule streams; none without). */
  outboundFor (collection: string): OutboundRule[] | undefined {
    return this.outbound.get(collection)
  }

  /** Every rule this node is the source of (rule streams). */
  allOutbound (): OutboundRule[] {
    return [...this.outbound.values()].flat()
  }

  /** The rule compiled for one of its sources: the one compiled before when nothing it depends on changed (else added to `changed`). */
  private compiledFor (rule: Rule, source: { name: string, peerId: string }, localName: string, module: LoadedModule | undefined, changed: CompiledRule[]): CompiledRule {
    const prev = this.active.get(stateIdOf(rule, source.name))
    if (prev !== undefined && peerOf(prev.sourcePeer) === source.peerId && prev.stream === (this.streams ? ruleStreamId(rule, localName) : undefined) && prev.localName === localName && prev.module === module &&
      prev.fingerprint === ruleFingerprint(rule, module?.hash) && JSON.stringify(prev.rule) === JSON.stringify(rule)) return prev
    const stream = this.streams ? ruleStreamId(rule, localName) : undefined
    const compiled = compileRule(rule, source.peerId, { localName, sourcePlatform: source.name, ...(module !== undefined ? { module } : {}), ...(stream !== undefined ? { stream } : {}) })
    changed.push(compiled)
    return compiled
  }

  /** Asked for every entry stored or backfilled: two lookups of strings the entry holds, no key built. */
  forEntry (origin: string, collection: string): CompiledRule[] | undefined {
    return this.bySource.get(origin)?.get(collection)
  }

  /**
   * A compiled form by its state id (CompiledRule.stateId: the rule's id for
   * a rule reading one platform), or a group-source rule by its id (compiled
   * without a source: what is per rule, its mode, its target).
   */
  get (stateId: string): CompiledRule | undefined {
    return this.active.get(stateId) ?? this.groupRules.get(stateId)
  }

  /** Every compiled form: one per rule reading one platform, one per feeding platform of a group source. */
  all (): CompiledRule[] {
    return [...this.active.values()]
  }

  /** The compiled forms of one rule active here (its sources). */
  forRule (ruleId: string): CompiledRule[] {
    return this.byRule.get(ruleId) ?? []
  }

  /** An active group-source rule compiled without a source (what is per rule, not per source), when it applies here. */
  groupRule (ruleId: string): CompiledRule | undefined {
    return this.groupRules.get(ruleId)
  }

  /** The active group-source rules, compiled without a source. */
  groups (): CompiledRule[] {
    return [...this.groupRules.values()]
  }

  /** Whether a local collection is the source of some rule (its rule-written records are logged in the own log). */
  isPublished (collection: string): boolean {
    return this.publishedCollections.has(collection)
  }

  /** Whether the relayed puts `ruleId` makes into the local `collection` are left out of the own log (see relayedPutsLeftOut). */
  leavesOut (ruleId: string, collection: string): boolean {
    return this.leftOutPuts.get(collection)?.has(ruleId) === true
  }

  /** Local collection → the rules whose relayed puts into it are left out of the own log (see relayedPutsLeftOut). */
  leftOut (): ReadonlyMap<string, ReadonlySet<string>> {
    return this.leftOutPuts
  }

  /** Rule streams: whether own stream `stream` leaves out the relayed puts rule `ruleId` makes here (see streamPutsLeftOut). */
  streamLeavesOut (stream: string, ruleId: string): boolean {
    return this.streamLeftOutPuts.get(stream)?.has(ruleId) === true
  }

  /** Whether a rule here sends every record of this node's `collection` on as it is, deletes too, to the node with peer id `peerId` (with a rule of that node's back: two-way sync). */
  sendsTo (collection: string, peerId: string): boolean {
    return this.sharing.get(collection)?.has(peerId) === true
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



/** Whether a rule reads this node (a group source: unless it writes only here, where it does not read this node). */
function readsLocal (rule: Rule, local: PlatformIdentity): boolean {
  return isGroupSource(rule.from) ? selects(rule.from, local) && rule.to.platform !== local.name : rule.from.platform === local.name
}

/** Local collection → the peer ids this node shares its records with: the targets of rules reading it that send every record on as it is, deletes too (see RuleSet.sendsTo). */
function sharing (registry: Registry, rules: Rule[], local: PlatformIdentity): Map<string, Set<string>> {
  const out = new Map<string, Set<string>>()
  for (const rule of rules) {
    if (!readsLocal(rule, local) || !passesOnAsIs(rule) || !modeOf(rule.mode).deletes) continue
    let peers = out.get(rule.from.collection)
    if (peers === undefined) out.set(rule.from.collection, peers = new Set())
    for (const t of ruleTargets(rule, registry)) if (t.name !== local.name) peers.add(t.peerId)
  }
  return out
}

/**
 * Which rules' puts into a published local collection need no entry in this
 * node's own log, because every node that would get the entry already gets
 * the same write, with the same value, from the write's own rule. That is the
 * case of two-way sync between several nodes (`X:events → *:events` on every
 * node): logging there would make every node send every write on again, n
 * log entries and n² deliveries per write for n nodes instead of n.
 *
 * What `rin` (a rule writing into local collection c from one other platform)
 * writes is skipped when every rule `rout` reading c here names this platform
 * as its source (no group source) and passes records on as they are
 * (passesOnAsIs) in the same mode as `rin`, and each of its targets now
 * either is the source of `rin` (the write comes back to where it was made:
 * not applied again) or is a target of `rin` itself; and `rin` itself passes
 * records on as they are. Every node stores and forwards every origin's log,
 * so those targets get `rin`'s source entries even when they cannot reach its
 * source directly. Only puts are left out: a delete is logged (Ingestor
 * derive), naming the write it removes (LogEntry.prev), as is one this node
 * makes, so that `rout` applies it on the targets, where it never placed the
 * record, and no put logged here before outlives it.
 *
 * When the registry changes so that a rule's writes must be logged again,
 * the collection is published again (RuleService), from the persisted set of
 * what was ever skipped.
 */
function relayedPutsLeftOut (registry: Registry, rules: Rule[], local: PlatformIdentity, published: Set<string>): Map<string, Set<string>> {
  const out = new Map<string, Set<string>>()
  for (const collection of published) {
    const readers = rules.filter(r => r.from.collection === collection && readsLocal(r, local))
    if (readers.length === 0 || !readers.every(r => !isGroupSource(r.from) && passesOnAsIs(r))) continue
    const covered = writersCovered(registry, rules, local, collection, readers.map(r => ({ rule: r, targets: ruleTargets(r, registry) })))
    if (covered.size > 0) out.set(collection, covered)
  }
  return out
}

/**
 * The condition of relayedPutsLeftOut for a set of readers of local
 * `collection` (each plain, reading this platform only): the rules `rin`
 * writing into it from one other platform whose writes every reader's
 * target gets from `rin`'s own source (the target is that source, or a
 * target of `rin`), `rin` plain and in each reader's mode.
 */
function writersCovered (registry: Registry, rules: Rule[], local: PlatformIdentity, collection: string, readers: Array<{ rule: Rule, targets: PlatformIdentity[] }>): Set<string> {
  const out = new Set<string>()
  for (const rin of rules) {
    const source = rin.from.platform
    if (isGroupSource(rin.from) || source === undefined || source === local.name) continue
    // a source that is gone from the registry or revoked serves its log no more (with purge, no
    // node keeps it): what its rule wrote here reaches the others only through this node's log
    const platform = registry.platform(source)
    if (platform === undefined || platform.revoked === true) continue
    if (rin.to.collection !== collection || !targetsPlatform(rin.to, rin.from, local) || !passesOnAsIs(rin)) continue
    const covered = readers.every(({ rule: rout, targets }) => rout.mode === rin.mode &&
      targets.every(t => t.name === source || targetsPlatform(rin.to, rin.from, t)))
    if (covered) out.add(rin.id)
  }
  return out
}

/**
 * Rule streams: for each stream this node sends (its outbound rules), the
 * rules whose relayed puts it leaves out: relayedPutsLeftOut's condition
 * with the stream's rule as the one reader, per stream (each stream goes to
 * its own rule's targets only). A stream of a rule that is not plain (a
 * filter, projection, key, transform module, targets field, a mirror), or
 * that reads a group of sources, leaves nothing out.
 */
function streamPutsLeftOut (registry: Registry, rules: Rule[], local: PlatformIdentity, outbound: Map<string, OutboundRule[]>): Map<string, Set<string>> {
  const out = new Map<string, Set<string>>()
  for (const [collection, list] of outbound) {
    for (const o of list) {
      const rout = o.compiled.rule
      if (o.target !== undefined || isGroupSource(rout.from) || !passesOnAsIs(rout)) continue
      const covered = writersCovered(registry, rules, local, collection, [{ rule: rout, targets: ruleTargets(rout, registry) }])
      if (covered.size > 0) out.set(o.stream, covered)
    }
  }
  return out
}
