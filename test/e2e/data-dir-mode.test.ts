/**
 * The data directory is private to the node's user: a real node process
 * started on a directory that others may read (mode 0755, as mkdir leaves it
 * under the usual umask) makes it 0700, its keys 0600, and says so in its log.
 */
import { chmod, readdir, stat } from 'node:fs/promises'
import { join } from 'node:path'
import { afterAll, describe, expect, it } from 'vitest'
import { NodeProcess } from '../../scripts/lib/cluster.js'

const KEY = 'm'.repeat(40)

async function mode (path: string): Promise<string> {
  return ((await stat(path)).mode & 0o777).toString(8).padStart(4, '0')
}

describe('data directory permissions', () => {
  const nodes: NodeProcess[] = []
  afterAll(async () => {
    for (const n of nodes) await n.cleanup()
  })

  it.skipIf(process.platform === 'win32')('a node started on a group/world-readable data directory makes it private and logs it', async () => {
    const n = await NodeProcess.create('perm', KEY)
    nodes.push(n)
    await n.start()
    await n.stop()
    expect(await mode(n.dir)).toBe('0700')
    // what an operator's mkdir, cp or tar may leave behind
    await chmod(n.dir, 0o755)
    await chmod(join(n.dir, 'db'), 0o755)
    await chmod(join(n.dir, 'identity.key'), 0o644)
    await chmod(join(n.dir, 'config.json'), 0o644)
    await n.start()
    expect(await mode(n.dir)).toBe('0700')
    expect(await mode(join(n.dir, 'db'))).toBe('0700')
    expect(await mode(join(n.dir, 'identity.key'))).toBe('0600')
    expect(await mode(join(n.dir, 'config.json'))).toBe('0600')
    expect(n.logCount(/data directory was readable by other users; made it private: .*perm: 0755 → 0700/)).toBe(1)
    expect(n.logCount(/made it private: .*identity\.key: 0644 → 0600/)).toBe(1)
    // the node runs normally on it
    await n.put('c', 'x', { ok: true })
    expect(await n.get('c', 'x')).toEqual({ ok: true })
    expect((await readdir(n.dir)).sort()).toContain('db')
    // a private directory is left alone, and nothing is logged
    await n.stop()
    await n.start()
    expect(n.logCount(/made it private/)).toBe(0)
  }, 60_000)
})
