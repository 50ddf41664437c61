/**
 * A database of the current format turned back into the layout of data
 * formats 1–4 for its per-log keys: each key under a log's alias moved back
 * under the log id, and the aliases deleted. For tests of the upgrade steps
 * that read those formats (src/log/attest-upgrade.ts), on logs written by
 * the current code.
 */
import type { Db } from '../../src/store/db.js'
import { keys, keySuffix, LOG_TAGS, prefixRange, SEP } from '../../src/store/keys.js'

export async function toLegacyLogKeys (db: Db): Promise<void> {
  const prefix = keys.logAliasPrefix()
  for (const [key, value] of await db.iterator(prefixRange(prefix)).all()) {
    const log = keySuffix(key, prefix)
    const alias = Buffer.from(value).toString()
    const ops: Array<{ type: 'put', key: string, value: Uint8Array } | { type: 'del', key: string }> = []
    for (const tag of LOG_TAGS) {
      if (tag === 'v') {
        const v = await db.get(`v${SEP}${alias}`)
        if (v !== undefined) ops.push({ type: 'put', key: `v${SEP}${log}`, value: v }, { type: 'del', key: `v${SEP}${alias}` })
        continue
      }
      const from = `${tag}${SEP}${alias}${SEP}`
      for (const [k, v] of await db.iterator(prefixRange(from)).all()) ops.push({ type: 'put', key: `${tag}${SEP}${log}${SEP}${k.slice(from.length)}`, value: v }, { type: 'del', key: k })
    }
    ops.push({ type: 'del', key })
    await db.batch(ops)
  }
}
