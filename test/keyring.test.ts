/**
 * The mesh keyring (src/node/keyring.ts) and the `syncmesh key add|use|rm|ls`
 * commands (the built binary) on temp dirs.
 */
import { createHash } from 'node:crypto'
import { chmod, readFile, stat, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { afterAll, describe, expect, it } from 'vitest'
import { runCli } from '../scripts/lib/cluster.js'
import {
  addKey, fingerprint, keyringToEdit, loadMeshKeys, readKeyring, removeKey, resolveStartKey, useKey, writeKeyring
} from '../src/node/keyring.js'
import type { Keyring } from '../src/node/keyring.js'
import { removeDir, tempDir } from './helpers/nodes.js'

const K1 = 'a1'.repeat(16)
const K2 = 'b2'.repeat(20)
const K3 = 'c3'.repeat(24)
const fp = fingerprint

const dirs: string[] = []
async function dir (): Promise<string> {
  const d = await tempDir('syncmesh-keyring-')
  dirs.push(d)
  return d
}
afterAll(async () => {
  for (const d of dirs) await removeDir(d)
})

describe('keyring file', () => {
  it('fingerprints are the first 8 hex digits of SHA-256 of the trimmed key', () => {
    expect(fp(K1)).toBe(createHash('sha256').update(K1).digest('hex').slice(0, 8))
    expect(fp(`  ${K1}\n`)).toBe(fp(K1))
    expect(fp(K1)).not.toBe(fp(K2))
  })

  it('is written atomically with mode 0600 and read back normalized', async () => {
    const d = await dir()
    expect(await readKeyring(d)).toBeUndefined()
    await writeKeyring(d, { current: K2, accepted: [K1, K2, K1] })
    expect((await stat(join(d, 'keyring.json'))).mode & 0o777).toBe(0o600)
    const text = JSON.parse(await readFile(join(d, 'keyring.json'), 'utf8'))
    expect(text).toEqual({ version: 1, current: K2, accepted: [K2, K1] })
    expect(await readKeyring(d)).toEqual({ current: K2, accepted: [K2, K1] })
  })

  it('accepts the current key even when the file does not list it, and trims keys', async () => {
    const d = await dir()
    await writeFile(join(d, 'keyring.json'), JSON.stringify({ version: 1, current: ` ${K1} `, accepted: [`${K2}\n`] }), { mode: 0o600 })
    expect(await readKeyring(d)).toEqual({ current: K1, accepted: [K1, K2] })
  })

  it.each([
    ['not JSON', '{"version":1,', /not valid JSON/],
    ['a short key', JSON.stringify({ version: 1, current: 'short', accepted: [] }), /current: a mesh key must be at least 32/],
    ['a short accepted key', JSON.stringify({ version: 1, current: K1, accepted: [K2, 'x'] }), /accepted\.1: a mesh key must be at least 32/],
    ['an unknown field', JSON.stringify({ version: 1, current: K1, accepted: [], extra: 1 }), /extra/],
    ['another version', JSON.stringify({ version: 2, current: K1, accepted: [] }), /version/],
    ['no current key', JSON.stringify({ version: 1, accepted: [K1] }), /current/],
    ['a key that is not a string', JSON.stringify({ version: 1, current: K1, accepted: [42] }), /accepted\.0/],
    ['too many keys', JSON.stringify({ version: 1, current: K1, accepted: Array.from({ length: 17 }, (_, i) => `${i}`.padStart(40, 'k')) }), /at most 16/]
  ])('rejects %s with KEYRING_INVALID naming the problem', async (_what, text, pattern) => {
    const d = await dir()
    await writeFile(join(d, 'keyring.json'), text, { mode: 0o600 })
    const err = await readKeyring(d).catch((e: unknown) => e) as { code: string, message: string }
    expect(err.code).toBe('KEYRING_INVALID')
    expect(err.message).toMatch(pattern)
    expect(err.message).toContain(join(d, 'keyring.json'))
  })
})

describe('keyring edits', () => {
  const ring: Keyring = { current: K1, accepted: [K1] }

  it('add accepts a new key once; the current key stays', () => {
    const a = addKey(ring, K2)
    expect(a).toEqual({ ring: { current: K1, accepted: [K1, K2] }, changed: true })
    expect(addKey(a.ring, ` ${K2} `)).toEqual({ ring: a.ring, changed: false })
    expect(() => addKey(ring, 'too-short')).toThrow(expect.objectContaining({ code: 'KEY_TOO_SHORT' }))
    let full = ring
    for (let i = 1; i < 16; i++) full = addKey(full, `${i}`.padStart(40, 'k')).ring
    expect(() => addKey(full, K3)).toThrow(expect.objectContaining({ code: 'KEYRING_FULL' }))
  })

  it('use switches the current key (by key or fingerprint), adding a new one; the old one stays accepted', () => {
    const two = addKey(ring, K2).ring
    expect(useKey(two, K2)).toEqual({ ring: { current: K2, accepted: [K2, K1] }, changed: true, added: false })
    expect(useKey(two, fp(K2)).ring.current).toBe(K2)
    expect(useKey(ring, K3)).toEqual({ ring: { current: K3, accepted: [K3, K1] }, changed: true, added: true })
    expect(useKey(ring, K1)).toEqual({ ring, changed: false, added: false })
    expect(() => useKey(ring, 'deadbeef')).toThrow(expect.objectContaining({ code: 'KEY_NOT_FOUND' }))
  })

  it('rm removes an accepted key (by key or fingerprint) and refuses the current one', () => {
    const two = addKey(ring, K2).ring
    expect(removeKey(two, K2)).toEqual({ ring, removed: K2 })
    expect(removeKey(two, fp(K2).toUpperCase())).toEqual({ ring, removed: K2 })
    expect(() => removeKey(two, K1)).toThrow(expect.objectContaining({ code: 'KEY_IS_CURRENT' }))
    expect(() => removeKey(two, K3)).toThrow(expect.objectContaining({ code: 'KEY_NOT_FOUND' }))
  })
})

describe('which keys a node uses', () => {
  it('without keyring.json: the one key given at start', async () => {
    const d = await dir()
    expect(await loadMeshKeys(d, K1)).toEqual({ source: 'key', current: K1, accepted: [K1] })
    await expect(loadMeshKeys(d, K1, { reload: true })).rejects.toMatchObject({ code: 'KEYRING_MISSING' })
  })

  it('with keyring.json: the keyring decides; the start key must be one of its keys', async () => {
    const d = await dir()
    await writeKeyring(d, { current: K2, accepted: [K2, K1] })
    expect(await loadMeshKeys(d, K1)).toEqual({ source: 'keyring', current: K2, accepted: [K2, K1] })
    expect(await loadMeshKeys(d, K2)).toEqual({ source: 'keyring', current: K2, accepted: [K2, K1] })
    const err = await loadMeshKeys(d, K3).catch((e: unknown) => e) as { code: string, message: string }
    expect(err.code).toBe('KEY_NOT_IN_KEYRING')
    expect(err.message).toContain(fp(K3))
    expect(err.message).not.toContain(K3)
    // a reload does not check the start key: it may have been retired meanwhile
    expect((await loadMeshKeys(d, K3, { reload: true })).current).toBe(K2)
  })

  it('warns when keyring.json is readable by others', async () => {
    const d = await dir()
    await writeKeyring(d, { current: K1, accepted: [K1] })
    expect((await loadMeshKeys(d, K1)).warning).toBeUndefined()
    await chmod(join(d, 'keyring.json'), 0o644)
    expect((await loadMeshKeys(d, K1)).warning).toMatch(/chmod 600/)
  })

  it('syncmesh start takes --key, else $SYNCMESH_KEY, else the keyring current, else mesh.key', async () => {
    const d = await dir()
    await writeFile(join(d, 'mesh.key'), K3 + '\n')
    expect(await resolveStartKey({ data: d })).toBe(K3)
    await writeKeyring(d, { current: K2, accepted: [K2, K1] })
    expect(await resolveStartKey({ data: d })).toBe(K2)
    expect(await resolveStartKey({ data: d, env: K1 })).toBe(K1)
    expect(await resolveStartKey({ data: d, flag: K3, env: K1 })).toBe(K3)
  })

  it('the keyring to edit is seeded from --key, $SYNCMESH_KEY or mesh.key', async () => {
    const d = await dir()
    expect(await keyringToEdit({ data: d })).toBeUndefined()
    expect(await keyringToEdit({ data: d, env: K1 })).toEqual({ ring: { current: K1, accepted: [K1] }, existed: false })
    await writeFile(join(d, 'mesh.key'), K3)
    expect(await keyringToEdit({ data: d })).toEqual({ ring: { current: K3, accepted: [K3] }, existed: false })
  })
})

describe('syncmesh key add | use | rm | ls', () => {
  const env = { SYNCMESH_KEY: '', SYNCMESH_LOG_LEVEL: 'warn' }
  const key = async (args: string[], input?: string): Promise<{ code: number, stdout: string, stderr: string }> =>
    await runCli(['key', ...args], { env, ...(input !== undefined ? { input } : {}) })

  function expectNoKeys (text: string): void {
    for (const k of [K1, K2, K3]) expect(text).not.toContain(k)
  }

  it('walks through a rotation on one data dir, printing fingerprints only', async () => {
    const d = await dir()
    // no keyring and no key: the current key is needed first
    let r = await key(['add', K2, '--data', d])
    expect(r.code).toBe(1)
    expect(r.stderr).toMatch(/^error \[KEY_MISSING\]: .*--key CURRENT_KEY/)

    r = await key(['add', K2, '--data', d, '--key', K1, '--json'])
    expect(r.code, r.stderr).toBe(0)
    expect(JSON.parse(r.stdout)).toEqual({ changed: true, file: join(d, 'keyring.json'), source: 'keyring', current: fp(K1), accepted: [fp(K1), fp(K2)] })
    expect((await stat(join(d, 'keyring.json'))).mode & 0o777).toBe(0o600)
    expectNoKeys(r.stdout + r.stderr)

    r = await key(['ls', '--data', d])
    expect(r.code).toBe(0)
    expect(r.stdout).toBe(`${fp(K1)}  current (proved and accepted)\n${fp(K2)}  accepted\n`)

    r = await key(['use', K2, '--data', d])
    expect(r.code, r.stderr).toBe(0)
    expect(r.stdout).toContain(`now proving ${fp(K2)}`)
    expect(r.stdout).toContain('kill -HUP')
    expectNoKeys(r.stdout)

    r = await key(['rm', K2, '--data', d])
    expect(r.code).toBe(1)
    expect(r.stderr.trimEnd().split('\n')).toHaveLength(1)
    expect(r.stderr).toMatch(/^error \[KEY_IS_CURRENT\]: refusing to remove the current key/)

    r = await key(['rm', fp(K1), '--data', d, '--json'])
    expect(r.code, r.stderr).toBe(0)
    expect(JSON.parse(r.stdout)).toMatchObject({ current: fp(K2), accepted: [fp(K2)] })
    expect(await readKeyring(d)).toEqual({ current: K2, accepted: [K2] })

    r = await key(['rm', K1, '--data', d])
    expect(r.code).toBe(1)
    expect(r.stderr).toMatch(/^error \[KEY_NOT_FOUND\]/)
    expectNoKeys(r.stderr)
  })

  it('reads KEY from stdin with "-", and rejects short keys', async () => {
    const d = await dir()
    await writeFile(join(d, 'mesh.key'), K1)
    let r = await key(['add', '-', '--data', d, '--json'], `\n${K3}\n`)
    expect(r.code, r.stderr).toBe(0)
    expect(JSON.parse(r.stdout).accepted).toEqual([fp(K1), fp(K3)])
    r = await key(['add', 'short-key', '--data', d])
    expect(r.code).toBe(1)
    expect(r.stderr).toMatch(/^error \[KEY_TOO_SHORT\]/)
    r = await key(['add', '-', '--data', d], '')
    expect(r.code).toBe(2)
  })

  it('ls without a keyring shows the single key the node would use', async () => {
    const d = await dir()
    const r = await runCli(['key', 'ls', '--data', d, '--json'], { env: { SYNCMESH_KEY: K1 } })
    expect(r.code, r.stderr).toBe(0)
    expect(JSON.parse(r.stdout)).toEqual({ source: 'key', current: fp(K1), accepted: [fp(K1)] })
  })

  it('a malformed keyring.json is reported with its path', async () => {
    const d = await dir()
    await writeFile(join(d, 'keyring.json'), '[]')
    const r = await key(['ls', '--data', d])
    expect(r.code).toBe(1)
    expect(r.stderr).toMatch(/^error \[KEYRING_INVALID\]: .*keyring\.json/)
  })
})
