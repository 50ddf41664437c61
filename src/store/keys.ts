/**
 * The LevelDB keyspace. Every key is a UTF-8 string "<tag>\0<part>\0<part>…".
 * Names and ids never contain control characters (validated at the edges),
 * so "\0" separates parts and sorts a prefix before any longer name.
 *
 *   e  log seq             → log entry (protobuf Entry, see protocols/sync)
 *   k  log coll id         → seq of the newest entry for that record in that log
 *   v  log                 → highest contiguous seq held (version vector)
 *   s  log to              → signed run certificate of (from, to] (protobuf RunCert)
 *   l  log to              → the origin's sync protocol version 2 attestation of (from, to] (protobuf
 *                            RunCert with as_of, root and live; or a gone span), protocols/sync/completeness.md
 *                            §3: signed here for this node's own logs, stored as received (with the root it
 *                            verified) for another origin's; the l keys of a log tile it
 *   y  log asOf to         → (empty) index of the l keys by as_of, for those later than their run's end:
 *                            what a batch of (from, to] attaches as updates (ChangeLog.readAttested)
 *   o  logId               → the log's alias on this node (log-aliases.ts): `log` above is that
 *                            alias, not the log id (an origin's peer id, or `<peer id>/<stream>`)
 *   r  coll id             → record (JSON: value or tombstone, version)
 *   x  rule sourceId       → target id the rule wrote for that source record
 *   b  rule                → backfill progress of a rule on this node
 *   u  rule                → where a paused rule stopped on this node (JSON: source peer, seq of its log)
 *   a  rule                → number of entries the rule applied on this node
 *   n  rule name           → other per-rule counters on this node (conflicts, transform errors)
 *   c  rule n              → the rule's conflict log (JSON ConflictRecord; the newest CONFLICT_LOG_SIZE kept)
 *   t  rule n              → the rule's transform-error log (JSON; the newest kept)
 *   w  rule                → webhook delivery state of a rule on this node (JSON: cursor, counters)
 *   q  coll                → progress of publishing a collection's rule-written records into this node's own log
 *   h  coll cursor         → changes feed: id of the record of coll whose newest change has this cursor
 *   p  peerId              → persisted peer (JSON)
 *   m  name                → node metadata: hlc, feed cursors, `format` (the data format,
 *                            see format.ts), `upgrade` (present while an upgrade runs)
 *
 * Data formats 1–4 used the log id itself where the families above use the
 * alias (legacyLogKeys, for the upgrades that read those formats).
 *
 * e, k, s, r, x and h are written only through Store.write (transactions):
 * the store's append frontiers (frontier.ts) rely on seeing every such key
 * written. Keep direct puts to the other families.
 */
export const SEP = '\x00'
/** Sorts after SEP: the exclusive upper bound of a prefix ending in SEP. */
const AFTER_SEP = '\x01'

const SEQ_WIDTH = 14 // hex digits: covers Number.MAX_SAFE_INTEGER (0x1fffffffffffff)

export function seqKeyPart (seq: number): string {
  return seq.toString(16).padStart(SEQ_WIDTH, '0')
}

export const keys = {
  entry: (log: string, seq: number) => `e${SEP}${log}${SEP}${seqKeyPart(seq)}`,
  entryPrefix: (log: string) => `e${SEP}${log}${SEP}`,
  latest: (log: string, collection: string, id: string) => `k${SEP}${log}${SEP}${collection}${SEP}${id}`,
  latestPrefix: (log: string, collection: string) => `k${SEP}${log}${SEP}${collection}${SEP}`,
  vector: (log: string) => `v${SEP}${log}`,
  cert: (log: string, to: number) => `s${SEP}${log}${SEP}${seqKeyPart(to)}`,
  certPrefix: (log: string) => `s${SEP}${log}${SEP}`,
  attest: (log: string, to: number) => `l${SEP}${log}${SEP}${seqKeyPart(to)}`,
  attestPrefix: (log: string) => `l${SEP}${log}${SEP}`,
  attestAsOf: (log: string, asOf: number, to: number) => `y${SEP}${log}${SEP}${seqKeyPart(asOf)}${SEP}${seqKeyPart(to)}`,
  attestAsOfPrefix: (log: string) => `y${SEP}${log}${SEP}`,
  vectorPrefix: () => `v${SEP}`,
  logAlias: (logId: string) => `o${SEP}${logId}`,
  logAliasPrefix: () => `o${SEP}`,
  record: (collection: string, id: string) => `r${SEP}${collection}${SEP}${id}`,
  recordPrefix: (collection: string) => `r${SEP}${collection}${SEP}`,
  targetMap: (ruleId: string, sourceId: string) => `x${SEP}${ruleId}${SEP}${sourceId}`,
  backfill: (ruleId: string) => `b${SEP}${ruleId}`,
  rulePause: (ruleId: string) => `u${SEP}${ruleId}`,
  applied: (ruleId: string) => `a${SEP}${ruleId}`,
  peer: (peerId: string) => `p${SEP}${peerId}`,
  peerPrefix: () => `p${SEP}`,
  meta: (name: string) => `m${SEP}${name}`,
  counter: (ruleId: string, name: string) => `n${SEP}${ruleId}${SEP}${name}`,
  counterPrefix: () => `n${SEP}`,
  conflict: (ruleId: string, n: number) => `c${SEP}${ruleId}${SEP}${seqKeyPart(n)}`,
  conflictPrefix: (ruleId: string) => `c${SEP}${ruleId}${SEP}`,
  conflictsPrefix: () => `c${SEP}`,
  transformError: (ruleId: string, n: number) => `t${SEP}${ruleId}${SEP}${seqKeyPart(n)}`,
  transformErrorPrefix: (ruleId: string) => `t${SEP}${ruleId}${SEP}`,
  webhook: (ruleId: string) => `w${SEP}${ruleId}`,
  publish: (collection: string) => `q${SEP}${collection}`,
  feedCollectionsPrefix: () => `h${SEP}`,
  feedByCollection: (collection: string, cursor: number) => `h${SEP}${collection}${SEP}${seqKeyPart(cursor)}`,
  feedByCollectionPrefix: (collection: string) => `h${SEP}${collection}${SEP}`
}

/** The key families of one log (keys.entry … keys.attestAsOf), each followed by the log's alias. */
export const LOG_TAGS = ['e', 'k', 'v', 's', 'l', 'y'] as const

/**
 * The per-log keys as data formats 1–4 wrote them, with the log id where
 * format 5 has the log's alias: for the upgrades that read those formats.
 */
export const legacyLogKeys: Pick<typeof keys, 'entry' | 'entryPrefix' | 'latest' | 'vector' | 'vectorPrefix' | 'cert' | 'certPrefix' | 'attest' | 'attestPrefix' | 'attestAsOf'> = keys

/** Range options covering every key that starts with `prefix` (which ends in SEP). */
export function prefixRange (prefix: string): { gte: string, lt: string } {
  return { gte: prefix, lt: prefix.slice(0, -1) + AFTER_SEP }
}

/** Range options covering the keys of `prefix` after the one whose suffix is `after` (all of them without it). */
export function rangeAfter (prefix: string, after: string | undefined): { gt: string, lt: string } | { gte: string, lt: string } {
  const range = prefixRange(prefix)
  return after !== undefined ? { gt: prefix + after, lt: range.lt } : range
}

/** A key's prefix: everything up to and including its last SEP (the key without its last part). */
export function prefixOf (key: string): string {
  return key.slice(0, key.lastIndexOf(SEP) + 1)
}

/** The part of a key after `prefix`. */
export function keySuffix (key: string, prefix: string): string {
  return key.slice(prefix.length)
}
