/**
 * syncmesh rule add | update | pause | resume | ls | show | rm | conflicts | errors, and syncmesh changes
 */
import { Option } from 'commander'
import type { Command } from 'commander'
import type { ConflictRecord, ConflictSide, DryRunReport, Rule, RuleMode, RulePatch, RuleSpec, TargetEndpoint } from '../../core/types.js'
import { formatSource, formatTarget } from '../../registry/registry.js'
import { addClientOptions, addJsonOption, connect, parseJsonObjectArg, parseList, parseRename, UsageError } from '../common.js'
import type { ClientOptions, JsonOption } from '../common.js'
import { formatAgo, formatCount, out, printJson, printLine, shortId, table } from '../output.js'
import { DEFAULT_RULE_MODE, RULE_MODE_NAMES, RULE_MODES } from '../../core/modes.js'

type Opts = ClientOptions & JsonOption

function clientCommand (parent: Command, spec: string, description: string): Command {
  return addClientOptions(addJsonOption(parent.command(spec).description(description)))
}

export function describeRule (rule: Pick<Rule, 'where' | 'include' | 'exclude' | 'rename' | 'key' | 'transform' | 'targetsField' | 'webhook'>): string {
  const parts: string[] = []
  if (rule.where != null) parts.push(`where ${JSON.stringify(rule.where)}`)
  if (rule.include != null) parts.push(`include ${rule.include.join(',')}`)
  if (rule.exclude != null) parts.push(`exclude ${rule.exclude.join(',')}`)
  if (rule.rename != null) parts.push(`rename ${Object.entries(rule.rename).map(([a, b]) => `${a}=${b}`).join(',')}`)
  if (rule.key != null) parts.push(`key ${rule.key}`)
  if (rule.transform != null) parts.push(`transform ${rule.transform}`)
  if (rule.targetsField != null) parts.push(`targets field ${rule.targetsField}`)
  if (rule.webhook != null) parts.push(`webhook ${rule.webhook.url}${rule.webhook.secretRef != null ? ` (secret ${rule.webhook.secretRef})` : ''}`)
  return parts.join('; ')
}

/**
 * "PLATFORM:COLLECTION", "region=R:COLLECTION", "tag=T:COLLECTION" or "*:COLLECTION"
 * (platform names cannot contain "=" or "*", so the forms do not overlap).
 */
export function parseTarget (value: string, flag: string): TargetEndpoint {
  const i = value.lastIndexOf(':')
  const selector = i > 0 ? value.slice(0, i).trim() : ''
  const collection = i > 0 ? value.slice(i + 1).trim() : ''
  const usage = `${flag} expects PLATFORM:COLLECTION, region=REGION:COLLECTION, tag=TAG:COLLECTION or '*:COLLECTION' (e.g. edge:articles, region=eu:articles), got "${value}"`
  if (selector === '' || collection === '') throw new UsageError(usage)
  const m = /^(region|tag)=(.+)$/.exec(selector)
  if (m != null) return m[1] === 'region' ? { region: m[2], collection } : { tag: m[2], collection }
  if (selector.includes('=') || selector.includes(':')) throw new UsageError(usage)
  return { platform: selector, collection }
}

interface RuleFlags {
  from?: string
  to?: string
  mode?: RuleMode
  where?: string
  include?: string
  exclude?: string
  rename?: string
  key?: string
  transform?: string
  targetsField?: string
  webhook?: string
  webhookSecret?: string
  webhookSecretRef?: string
  dryRun?: boolean
  force?: boolean
}

/** Rule fields given on the command line (as a patch: only what was given). */
function fieldsFrom (opts: RuleFlags): Partial<RuleSpec> {
  const spec: Partial<RuleSpec> = {}
  if (opts.from != null) spec.from = parseTarget(opts.from, '--from')
  if (opts.to != null) spec.to = parseTarget(opts.to, '--to')
  if (opts.mode != null) spec.mode = opts.mode
  if (opts.where != null) spec.where = parseJsonObjectArg(opts.where, '--where')
  if (opts.include != null) spec.include = parseList(opts.include, '--include')
  if (opts.exclude != null) spec.exclude = parseList(opts.exclude, '--exclude')
  if (opts.rename != null) spec.rename = parseRename(opts.rename)
  if (opts.key != null) spec.key = opts.key
  if (opts.transform != null) spec.transform = opts.transform
  if (opts.targetsField != null) spec.targetsField = opts.targetsField
  if (opts.webhookSecret != null) {
    throw new UsageError('--webhook-secret is no longer accepted: a secret in the rule is replicated in clear to every node. Put it in "webhooks.secrets" of each target node\'s config.json, e.g. {"webhooks": {"secrets": {"orders": "…"}}}, and name it with --webhook-secret-ref orders')
  }
  if (opts.webhook != null) {
    if (opts.webhookSecretRef == null || opts.webhookSecretRef === '') throw new UsageError('--webhook needs --webhook-secret-ref NAME: the name of the signing secret in "webhooks.secrets" of each target node\'s config.json')
    spec.webhook = { url: opts.webhook, secretRef: opts.webhookSecretRef }
  } else if (opts.webhookSecretRef != null) {
    throw new UsageError('--webhook-secret-ref goes with --webhook URL')
  }
  return spec
}

function ruleOptions (cmd: Command, requireEndpoints: boolean): Command {
  const endpointHelp = { from: "source: PLATFORM:COLLECTION, region=R:COLLECTION, tag=T:COLLECTION or '*:COLLECTION' (every platform but the target)", to: "target: PLATFORM:COLLECTION, region=R:COLLECTION, tag=T:COLLECTION or '*:COLLECTION'" }
  if (requireEndpoints) {
    cmd.requiredOption('--from <source:collection>', endpointHelp.from).requiredOption('--to <target:collection>', endpointHelp.to)
  } else {
    cmd.option('--from <source:collection>', endpointHelp.from).option('--to <target:collection>', endpointHelp.to)
  }
  return cmd
    .addOption(new Option('--mode <mode>', RULE_MODE_NAMES.map(m => `${m}${m === DEFAULT_RULE_MODE ? ' (default)' : ''}: ${RULE_MODES[m].summary}`).join('; ')).choices(RULE_MODE_NAMES))
    .option('--where <json>', 'filter on the source value, a JSON object, e.g. \'{"status":"published"}\'')
    .option('--include <fields>', 'copy only these fields (comma-separated)')
    .option('--exclude <fields>', 'drop these fields (comma-separated)')
    .option('--rename <old=new,…>', 'rename fields')
    .option('--key <field>', "use this field of the source value as the target record's id")
    .option('--transform <module>', "transform module in each target node's transforms directory (default DATA_DIR/transforms), e.g. slugify.js")
    .option('--targets-field <field>', 'field of the source value naming the platforms a record is meant for')
    .option('--webhook <url>', 'POST every change the rule applies to this URL (signed)')
    .option('--webhook-secret-ref <name>', 'name of the signing secret in "webhooks.secrets" of the target nodes\' config.json')
    .addOption(new Option('--webhook-secret <secret>').hideHelp())
    .option('--dry-run', 'show what the rule would do on each target without changing anything')
    .option('--force', 'save the rule even when it names a platform the registry does not have (it does nothing until that platform joins)')
}

async function printDryRun (report: DryRunReport): Promise<void> {
  const src = report.source
  await printLine(`dry run on ${report.evaluatedOn}: ${formatSource(report.rule.from)} → ${formatTarget(report.rule.to)} (${report.rule.mode}); nothing was changed`)
  await printLine(`source: ${formatCount(src.records)} records read${src.complete ? '' : ' (incomplete)'}${src.note != null ? `; ${src.note}` : ''}`)
  if (report.targets.length === 0) {
    await printLine('no target platform')
    return
  }
  await printLine(table(
    ['TARGET', 'EXACT', 'MATCHING', 'CREATE', 'UPDATE', 'DELETE', 'UNCHANGED', 'SKIPPED', 'CONFLICTS', 'ERRORS'],
    report.targets.map(t => [
      `${t.platform}:${t.collection}`, t.exact ? 'yes' : 'no', formatCount(t.matching),
      ...(t.exact ? [t.creates, t.updates, t.deletes, t.unchanged].map(formatCount) : ['?', '?', '?', '?']),
      formatCount(t.skipped), t.exact ? formatCount(t.conflicts) : '?', formatCount(t.errors)
    ])
  ))
  for (const t of report.targets) if (t.note != null) await printLine(`${t.platform}: ${t.note}`)
}

function describeSide (s: ConflictSide): string {
  const who = s.local ? 'local write' : s.ruleId != null ? `rule ${s.ruleId}` : 'write'
  const from = s.platform ?? shortId(s.version.origin)
  return `${s.op} by ${who} from ${from} at ${s.version.hlc}`
}

export function renderConflict (c: ConflictRecord): string {
  return `#${c.n} ${c.at} ${c.collection}/${c.id} (${c.kind}): existing ${describeSide(c.existing)}; incoming ${describeSide(c.incoming)}; ${c.winner} kept`
}

export function registerRuleCommands (program: Command): void {
  const rule = program.command('rule').description('one-way sync rules: PLATFORM:COLLECTION → TARGET:COLLECTION')
  registerRuleChanges(rule)
  registerRuleReads(rule)
  clientCommand(rule, 'rm', 'remove a rule')
    .argument('<rule-id>')
    .action(async (id: string, opts: Opts) => {
      const client = await connect(opts)
      const result = await client.removeRule(id)
      if (opts.json === true) await printJson(result)
      else await printLine(`removed rule ${id}`)
    })
  registerChangesCommand(program)
}

/** rule add | update | pause | resume */
function registerRuleChanges (rule: Command): void {
  ruleOptions(clientCommand(rule, 'add', "create a rule; print the new rule's id"), true)
    .action(async (opts: Opts & RuleFlags) => {
      const spec = fieldsFrom(opts) as RuleSpec
      const client = await connect(opts)
      if (opts.dryRun === true) {
        const report = await client.dryRunRule(spec)
        if (opts.json === true) await printJson(report)
        else await printDryRun(report)
        return
      }
      const created = await client.addRule(spec, { force: opts.force === true })
      if (opts.json === true) await printJson(created)
      else await printLine(created.id)
    })

  ruleOptions(clientCommand(rule, 'update', 'change a rule; its targets re-evaluate the source data'), false)
    .argument('<rule-id>')
    .option('--unset <fields>', 'remove optional fields: where, include, exclude, rename, key, transform, targets-field, webhook (comma-separated)')
    .action(async (id: string, opts: Opts & RuleFlags & { unset?: string }) => {
      const patch: RulePatch = { ...fieldsFrom(opts) }
      const names: Record<string, keyof RulePatch> = { where: 'where', include: 'include', exclude: 'exclude', rename: 'rename', key: 'key', transform: 'transform', 'targets-field': 'targetsField', targetsField: 'targetsField', webhook: 'webhook' }
      for (const f of opts.unset != null ? parseList(opts.unset, '--unset') : []) {
        const field = names[f]
        if (field === undefined) throw new UsageError(`--unset cannot remove "${f}"; removable: ${Object.keys(names).filter(n => n !== 'targetsField').join(', ')}`)
        if ((patch as Record<string, unknown>)[field] !== undefined) throw new UsageError(`--unset ${f} and a new value for it: give one of them`)
        ;(patch as Record<string, unknown>)[field] = null
      }
      if (Object.keys(patch).length === 0) throw new UsageError('nothing to change: give the options to change (e.g. --where \'{"status":"published"}\') or --unset FIELDS')
      const client = await connect(opts)
      if (opts.dryRun === true) {
        const report = await client.dryRunUpdate(id, patch)
        if (opts.json === true) await printJson(report)
        else await printDryRun(report)
        return
      }
      const updated = await client.updateRule(id, patch, { force: opts.force === true })
      if (opts.json === true) await printJson(updated)
      else await printLine(`updated rule ${updated.id}: ${formatSource(updated.from)} → ${formatTarget(updated.to)} (${updated.mode})${describeRule(updated) !== '' ? `; ${describeRule(updated)}` : ''}`)
    })

  clientCommand(rule, 'pause', 'pause a rule: its targets apply nothing from it until it is resumed (replicated)')
    .argument('<rule-id>')
    .action(async (id: string, opts: Opts) => {
      const client = await connect(opts)
      const paused = await client.pauseRule(id)
      if (opts.json === true) await printJson(paused)
      else await printLine(`paused rule ${paused.id}: ${formatSource(paused.from)} → ${formatTarget(paused.to)}; its targets apply nothing from it until "syncmesh rule resume ${paused.id}"`)
    })

  clientCommand(rule, 'resume', 'resume a paused rule: its targets catch up from where they stopped (no new backfill)')
    .argument('<rule-id>')
    .action(async (id: string, opts: Opts) => {
      const client = await connect(opts)
      const resumed = await client.resumeRule(id)
      if (opts.json === true) await printJson(resumed)
      else await printLine(`resumed rule ${resumed.id}: ${formatSource(resumed.from)} → ${formatTarget(resumed.to)}; its targets catch up from where they stopped`)
    })

}

/** rule ls | show | conflicts | errors */
function registerRuleReads (rule: Command): void {
  clientCommand(rule, 'ls', 'list the rules')
    .action(async (opts: Opts) => {
      const client = await connect(opts)
      const rules = await client.listRules()
      if (opts.json === true) {
        await printJson(rules)
        return
      }
      if (rules.length === 0) {
        await printLine('no rules; add one with "syncmesh rule add --from P:C --to P:C"')
        return
      }
      await printLine(table(
        ['ID', 'FROM', 'TO', 'MODE', 'STATE', 'DETAILS'],
        rules.map((r) => [r.id, formatSource(r.from), formatTarget(r.to), r.mode, r.paused === true ? 'paused' : 'running', describeRule(r) || '-'])
      ))
    })

  clientCommand(rule, 'show', 'a rule, its state on this node and its newest conflicts')
    .argument('<rule-id>')
    .action(async (id: string, opts: Opts) => {
      await showRule(id, opts)
    })

  clientCommand(rule, 'conflicts', "the rule's newest conflicts on this node: record, both versions, which won")
    .argument('<rule-id>')
    .option('--limit <n>', 'how many (1-1000, default 50)')
    .action(async (id: string, opts: Opts & { limit?: string }) => {
      const client = await connect(opts)
      const result = await client.ruleConflicts(id, parseLimit(opts.limit))
      if (opts.json === true) {
        await printJson(result)
        return
      }
      if (result.conflicts.length === 0) {
        await printLine(`no conflicts for rule ${id} on this node`)
        return
      }
      await printLine(`${formatCount(result.total)} conflicts in all; newest first:`)
      for (const c of result.conflicts) await printLine(renderConflict(c))
    })

  clientCommand(rule, 'errors', "the records the rule's transform module failed on (newest first)")
    .argument('<rule-id>')
    .option('--limit <n>', 'how many (1-1000, default 20)')
    .action(async (id: string, opts: Opts & { limit?: string }) => {
      const client = await connect(opts)
      const result = await client.ruleErrors(id, parseLimit(opts.limit))
      if (opts.json === true) {
        await printJson(result)
        return
      }
      if (result.errors.length === 0) {
        await printLine(`no transform errors for rule ${id} on this node`)
        return
      }
      await printLine(`${formatCount(result.total)} transform errors in all; newest first:`)
      for (const e of result.errors) await printLine(`#${e.n} ${e.at} ${e.collection}/${e.id} (${e.module}): ${e.error}`)
    })
}

/** syncmesh rule show: the rule, its state on this node, its newest conflicts and transform errors. */
async function showRule (id: string, opts: Opts): Promise<void> {
  const client = await connect(opts)
  const [r, status, conflicts, errors] = await Promise.all([client.getRule(id), client.status(), client.ruleConflicts(id, 5), client.ruleErrors(id, 5)])
  const st = status.rules.find(x => x.id === id)
  if (opts.json === true) {
    await printJson({ rule: r, status: st ?? null, conflicts, errors })
    return
  }
  const lines = [
    `rule      ${r.id}`,
    `from      ${formatSource(r.from)}${st?.sources != null ? ` (feeding here: ${st.sources.length > 0 ? st.sources.map(x => `${x.platform}${x.backfilled ? '' : ' backfilling'}${x.pending > 0 ? ` ${formatCount(x.pending)} pending` : ''}`).join(', ') : 'none'})` : ''}`,
    `to        ${formatTarget(r.to)}${st != null && st.targets.length > 0 ? ` (now: ${st.targets.join(', ')})` : ''}`,
    `mode      ${r.mode}${r.paused === true ? ' (paused)' : ''}`,
    `details   ${describeRule(r) || '-'}`,
    `created   ${r.createdAt}${r.updatedAt != null ? `, updated ${r.updatedAt}` : ''}`
  ]
  if (st != null) {
    lines.push(`here      ${st.local ? (st.paused === true ? 'target, paused' : st.backfilled ? 'target, backfilled' : st.catchingUp === true ? 'target, catching up since its pause' : st.waitingForKey !== undefined ? `target, waiting for the stream key of ${st.waitingForKey.join(', ')}` : `target, backfilling (${st.backfillPhase ?? 'source'})`) : 'not a target'}${st.problem != null ? `; problem: ${st.problem}` : ''}`)
    lines.push(`applied   ${formatCount(st.applied)}   pending ${formatCount(st.pending)}   conflicts ${formatCount(st.conflicts)}   transform errors ${formatCount(st.transformErrors)}`)
    if (st.webhook != null) {
      const w = st.webhook
      lines.push(`webhook   ${w.url}: ${formatCount(w.delivered)} delivered, ${formatCount(w.failed ?? 0)} given up, cursor ${w.cursor}${w.lastError != null ? `, last error ${w.lastError}${w.nextAttemptAt != null ? ` (retry at ${w.nextAttemptAt})` : ''}` : ''}`)
      if (w.blocked != null) lines.push(`          not delivered by this node: ${w.blocked}`)
      if (w.lastFailure != null) lines.push(`          last given up: change ${w.lastFailure.cursor} (${w.lastFailure.collection}/${w.lastFailure.id}) at ${w.lastFailure.at}: ${w.lastFailure.error}`)
      if (w.warning != null) lines.push(`          warning: ${w.warning}`)
    }
  }
  if (conflicts.conflicts.length > 0) {
    lines.push('', `NEWEST CONFLICTS (${formatCount(conflicts.total)} in all)`)
    for (const c of conflicts.conflicts) lines.push(`  ${renderConflict(c)}`)
  }
  if (errors.errors.length > 0) {
    lines.push('', `NEWEST TRANSFORM ERRORS (${formatCount(errors.total)} in all)`)
    for (const e of errors.errors) lines.push(`  #${e.n} ${formatAgo(e.at)} ${e.collection}/${e.id}: ${e.error}`)
  }
  await printLine(lines.join('\n'))
}

/** syncmesh changes: the changes feed as NDJSON */
function registerChangesCommand (program: Command): void {
  addClientOptions(program.command('changes')
    .description('the changes feed as NDJSON: every record change on the node, each line with its cursor (resume with --since)')
    .option('--since <cursor>', 'start after this cursor (default 0: from the beginning; "now": only new changes)')
    .option('--collection <name>', 'only this collection')
    .option('--limit <n>', 'stop after this many changes')
    .option('--follow', 'keep streaming new changes (heartbeat lines every 15 s) until interrupted'))
    .action(async (opts: ClientOptions & { since?: string, collection?: string, limit?: string, follow?: boolean }) => {
      const client = await connect(opts)
      const limit = opts.limit != null ? parseLimit(opts.limit, 1e9) : undefined
      const abort = new AbortController()
      process.once('SIGINT', () => abort.abort())
      for await (const line of client.changes({
        ...(opts.since != null ? { since: opts.since } : {}),
        ...(opts.collection != null ? { collection: opts.collection } : {}),
        ...(limit != null ? { limit } : {}),
        follow: opts.follow === true,
        signal: abort.signal
      })) {
        await out(JSON.stringify(line) + '\n')
      }
    })
}

function parseLimit (text: string | undefined, max = 1000): number | undefined {
  if (text == null) return undefined
  const n = Number(text)
  if (!Number.isInteger(n) || n < 1 || n > max) throw new UsageError(`--limit must be an integer from 1 to ${max}, got "${text}"`)
  return n
}
