import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createSyncNode } from '../../src/node/node.js'
import type { SyncNode } from '../../src/node/node.js'
import type { JsonObject } from '../../src/core/types.js'
import { waitFor } from '../../scripts/lib/cluster.js'

export const KEY = 'k'.repeat(40)

export async function tempDir (prefix = 'syncmesh-test-'): Promise<string> {
  return await mkdtemp(join(tmpdir(), prefix))
}

export async function removeDir (dir: string): Promise<void> {
  await rm(dir, { recursive: true, force: true })
}

export interface TestNode {
  node: SyncNode
  dir: string
}

export async function startNode (name: string, options: { key?: string, dir?: string, region?: string } = {}): Promise<TestNode> {
  const dir = options.dir ?? await tempDir()
  const node = await createSyncNode({ dataDir: dir, key: options.key ?? KEY, name, region: options.region, listen: ['/ip4/127.0.0.1/tcp/0'] })
  await node.start()
  return { node, dir }
}

/** Poll until `check` returns true; fails with `what` after the timeout (the process harness's waitFor, 50 ms steps). */
export async function eventually (check: () => Promise<boolean> | boolean, what: string, timeoutMs = 20_000): Promise<void> {
  await waitFor(check, what, timeoutMs, 50)
}

export async function countRecords (node: SyncNode, collection: string): Promise<number> {
  let n = 0
  let after: string | undefined
  for (;;) {
    const page = await node.records.list(collection, { after, limit: 1000 })
    n += page.records.length
    if (page.next === undefined) return n
    after = page.next
  }
}

/** Every record of `collection` on `node`, id → value, read page by page. */
export async function recordsOf (node: SyncNode, collection: string): Promise<Record<string, JsonObject>> {
  const out: Record<string, JsonObject> = {}
  let after: string | undefined
  for (;;) {
    const page = await node.records.list(collection, { after, limit: 1000 })
    for (const r of page.records) out[r.id] = r.value
    if (page.next === undefined) return out
    after = page.next
  }
}
