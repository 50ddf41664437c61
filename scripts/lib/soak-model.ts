/**
 * What the soak wrote and what every node must hold afterwards.
 *
 * Every value written carries a unique write id (`w`), so a record read back
 * names the write that produced it. Writes are of two kinds:
 *
 *  - Owned ids (`n3-000042`, and the ids of imports): written only by their
 *    node, one write at a time per id. Their final state is the state after
 *    the last acknowledged write, or after any later write whose outcome is
 *    unknown (its request failed after it may have reached the node: kill -9
 *    mid-request, a reset). The node that owns the id decides which of those
 *    allowed states happened; every node must then hold that same state.
 *  - Shared ids: every node writes them; last writer wins by (HLC, origin),
 *    the order src/rules/engine.ts compareWrites uses. The winner must be the
 *    acknowledged write with the largest version, or an unknown-outcome write
 *    whose version (read on its own node) is larger still.
 */
import { createHash } from 'node:crypto'

export interface Version { hlc: string, origin: string, seq: number }

export type Outcome = 'ack' | 'unknown' | 'refused'

export interface WriteOp {
  /** Seconds since writes began. */
  t: number
  node: string
  op: 'put' | 'del'
  id: string
  /** The write id in the value (puts). */
  w?: string
  outcome: Outcome
  version?: Version
  error?: string
}

/** A record as read from a node: its write id and version. */
export interface Held { w: string, version?: Version, value: unknown }

export type NodeView = Map<string, Held>

export function parseHlc (text: string): [number, number] {
  const [wall, logical] = text.split('.')
  return [Number(wall), Number(logical ?? 0)]
}

/** (HLC, origin) order of two writes. */
export function compareWrites (a: Version, b: Version): number {
  const [aw, al] = parseHlc(a.hlc)
  const [bw, bl] = parseHlc(b.hlc)
  if (aw !== bw) return aw < bw ? -1 : 1
  if (al !== bl) return al < bl ? -1 : 1
  return a.origin === b.origin ? 0 : (a.origin < b.origin ? -1 : 1)
}

export function digest (view: NodeView): string {
  const h = createHash('sha256')
  for (const id of [...view.keys()].sort()) h.update(id).update('\0').update(JSON.stringify(view.get(id)?.value)).update('\n')
  return h.digest('hex')
}

export class History {
  /** id → its owner and the writes to it, in the order they were sent. */
  readonly owned = new Map<string, { owner: string, ops: WriteOp[] }>()
  readonly shared = new Map<string, WriteOp[]>()
  /** write id → op (puts). */
  readonly byW = new Map<string, WriteOp>()
  counts = { ack: 0, unknown: 0, refused: 0, put: 0, del: 0, shared: 0, imported: 0 }

  add (op: WriteOp, shared: boolean): void {
    if (shared) {
      const list = this.shared.get(op.id) ?? []
      list.push(op)
      this.shared.set(op.id, list)
      if (op.outcome === 'ack') this.counts.shared++
    } else {
      let e = this.owned.get(op.id)
      if (e === undefined) {
        e = { owner: op.node, ops: [] }
        this.owned.set(op.id, e)
      }
      if (e.owner !== op.node) throw new Error(`${op.id} is owned by ${e.owner}, written by ${op.node}`)
      e.ops.push(op)
    }
    if (op.w !== undefined) this.byW.set(op.w, op)
    this.counts[op.outcome]++
    if (op.outcome === 'ack') this.counts[op.op]++
  }

  /** Every state an owned id may end in: a write id, or null (absent). */
  allowed (id: string): { base: string | null, allowed: Set<string | null>, deleted: boolean } {
    const e = this.owned.get(id)
    if (e === undefined) return { base: null, allowed: new Set([null]), deleted: false }
    const after = (op: WriteOp): string | null => op.op === 'put' ? (op.w as string) : null
    let k = -1
    for (let i = 0; i < e.ops.length; i++) if (e.ops[i].outcome === 'ack') k = i
    const base = k >= 0 ? after(e.ops[k]) : null
    const allowed = new Set<string | null>([base])
    for (let j = k + 1; j < e.ops.length; j++) if (e.ops[j].outcome === 'unknown') allowed.add(after(e.ops[j]))
    const deleted = e.ops.some(op => op.op === 'del' && op.outcome !== 'refused')
    return { base, allowed, deleted }
  }
}

export interface Violation {
  kind: 'lost' | 'stale' | 'resurrected' | 'unexpected' | 'origin-lost' | 'lww' | 'mirror'
  node: string
  id: string
  expected: string | null
  held: string | null
}

export interface CheckResult {
  violations: Violation[]
  counts: Record<Violation['kind'], number>
  /** Shared ids whose winner is not the last write by (HLC, origin). */
  lwwIds: string[]
  /** Shared ids on which nodes disagree. */
  sharedDiffering: number
  digests: Record<string, string>
  digestsEqual: boolean
}

/**
 * Check what the nodes hold against the history. `views` has each node's
 * `events` collection (every node is a target of every node's events rule);
 * `mirrors` each mirror target's copy of the mirror source's `events`.
 * `peerIds` maps node name → peer id (a version's origin).
 */
export function check (history: History, views: Map<string, NodeView>, mirror: { source: string, targets: Map<string, NodeView> } | undefined): CheckResult {
  const violations: Violation[] = []
  const nodes = [...views.keys()]
  const heldW = (view: NodeView | undefined, id: string): string | null => view?.get(id)?.w ?? null

  for (const [id, e] of history.owned) {
    const { base, allowed, deleted } = history.allowed(id)
    const atOwner = heldW(views.get(e.owner), id)
    let final = base
    if (allowed.has(atOwner)) final = atOwner
    else violations.push({ kind: atOwner === null ? 'origin-lost' : (deleted && base === null ? 'resurrected' : 'stale'), node: e.owner, id, expected: base, held: atOwner })
    for (const n of nodes) {
      if (n === e.owner) continue
      const held = heldW(views.get(n), id)
      if (held === final) continue
      let kind: Violation['kind']
      if (final !== null && held === null) kind = 'lost'
      else if (final === null && deleted) kind = 'resurrected'
      else if (final === null) kind = 'unexpected'
      else kind = 'stale'
      violations.push({ kind, node: n, id, expected: final, held })
    }
  }

  const lwwIds: string[] = []
  let sharedDiffering = 0
  for (const [id, ops] of history.shared) {
    let best: WriteOp | undefined
    for (const op of ops) if (op.outcome === 'ack' && op.version !== undefined && (best === undefined || compareWrites(op.version, best.version as Version) > 0)) best = op
    const expected = best?.w ?? null
    // an unknown-outcome write may win if its own node reports it with a later version
    const acceptable = (w: string | null): boolean => {
      if (w === expected) return true
      if (w === null) return false
      const op = history.byW.get(w)
      if (op === undefined || op.outcome !== 'unknown' || op.id !== id) return false
      const v = views.get(op.node)?.get(id)
      if (v === undefined || v.w !== w || v.version === undefined) return false
      return best?.version === undefined || compareWrites(v.version, best.version) > 0
    }
    const held = nodes.map(n => heldW(views.get(n), id))
    if (new Set(held).size > 1) sharedDiffering++
    let wrong = false
    for (let i = 0; i < nodes.length; i++) {
      if (acceptable(held[i])) continue
      wrong = true
      violations.push({ kind: held[i] === null ? 'lost' : 'lww', node: nodes[i], id, expected, held: held[i] })
    }
    if (wrong) lwwIds.push(id)
  }

  for (const [n, view] of views) {
    for (const id of view.keys()) {
      if (history.owned.has(id) || history.shared.has(id)) continue
      violations.push({ kind: 'unexpected', node: n, id, expected: null, held: view.get(id)?.w ?? null })
    }
  }

  const digests: Record<string, string> = {}
  for (const [n, view] of views) digests[n] = digest(view)

  if (mirror !== undefined) {
    const source = views.get(mirror.source)
    for (const [n, view] of mirror.targets) {
      const ids = new Set([...(source?.keys() ?? []), ...view.keys()])
      for (const id of ids) {
        const want = heldW(source, id)
        const got = heldW(view, id)
        if (want !== got || JSON.stringify(source?.get(id)?.value) !== JSON.stringify(view.get(id)?.value)) {
          violations.push({ kind: 'mirror', node: n, id, expected: want, held: got })
        }
      }
      digests[`${n}:mirror`] = digest(view)
    }
  }

  const counts = { lost: 0, stale: 0, resurrected: 0, unexpected: 0, 'origin-lost': 0, lww: 0, mirror: 0 }
  for (const v of violations) counts[v.kind]++
  const eventDigests = nodes.map(n => digests[n])
  return { violations, counts, lwwIds, sharedDiffering, digests, digestsEqual: new Set(eventDigests).size <= 1 }
}
