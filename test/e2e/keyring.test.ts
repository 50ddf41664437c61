/**
 * The mesh keyring (src/node/keyring.ts) and the `syncmesh key add|use|rm|ls`
 * commands (the built binary) on temp dirs.
 */
import { createHash } from 'node:crypto'
import { chmod, readFile, stat, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { afterAll, describe, expect, it } from 'vitest'
import { runCli } from '../../scripts/lib/cluster.js'
import {
  addKey, fingerprint, keyringToEdit, loadMeshKeys, readKeyring, removeKey, resolveStartKey, useKey, writeKeyring
} from '../../src/node/keyring.js'
import type { Keyring } from '../../src/node/keyring.js'
import { removeDir, tempDir } from '../helpers/nodes.js'

const KEY_A = 'a1'.repeat(16)
const KEY_B = 'b2'.repeat(20)
const KEY_C = 'c3'.repeat(24)
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
    expect(fp(KEY_A)).toBe(createHash('sha256').update(KEY_A).digest('hex').slice(0, 8))
    expect(fp(`  ${KEY_A}\n`)).toBe(fp(KEY_A))
    expect(fp(KEY_A)).not.toBe(fp(KEY_B))
  })

  it('is written atomically with mode 0600 and read back normalized', async () => {
    const d = await dir()
    expect(await readKeyring(d)).toBeUndefined()
    await writeKeyring(d, { current: KEY_B, accepted: [KEY_A, KEY_B, KEY_A] })
    expect((await stat(join(d, 'keyring.json'))).mode & 0o777).toBe(0o600)
    const text = JSON.parse(await readFile(join(d, 'keyring.json'), 'utf8'))
    expect(text).toEqual({ version: 1, current: KEY_B, accepted: [KEY_B, KEY_A] })
    expect(await readKeyring(d)).toEqual({ current: KEY_B, accepted: [KEY_B, KEY_A] })
  })

  it('accepts the current key even when the file does not list it, and trims keys', async () => {
    const d = await dir()
    await writeFile(join(d, 'keyring.json'), JSON.stringify({ version: 1, current: ` ${KEY_A} `, accepted: [`${KEY_B}\n`] }), { mode: 0o600 })
    expect(await readKeyring(d)).toEqual({ current: KEY_A, accepted: [KEY_A, KEY_B] })
  })

  it.each([
    ['not JSON', '{"version":1,', /not valid JSON/],
    ['a short key', JSON.stringify({ version: 1, current: 'short', accepted: [] }), /current: a mesh key must be at least 32/],
    ['a short accepted key', JSON.stringify({ version: 1, current: KEY_A, accepted: [KEY_B, 'x'] }), /accepted\.1: a mesh key must be at least 32/],
    ['an unknown field', JSON.stringify({ version: 1, current: KEY_A, accepted: [], extra: 1 }), /extra/],
    ['another version', JSON.stringify({ version: 2, current: KEY_A, accepted: [] }), /version/],
    ['no current key', JSON.stringify({ version: 1, accepted: [KEY_A] }), /current/],
    ['a key that is not a string', JSON.stringify({ version: 1, current: KEY_A, accepted: [42] }), /accepted\.0/],
    ['too many keys', JSON.stringify({ version: 1, current: KEY_A, accepted: Array.from({ length: 17 }, (_, i) => `${i}`.padStart(40, 'k')) }), /at most 16/]
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
  const ring: Keyring = { current: KEY_A, accepted: [KEY_A] }

  it('add accepts a new key once; the current key stays', () => {
    const a = addKey(ring, KEY_B)
    expect(a).toEqual({ ring: { current: KEY_A, accepted: [KEY_A, KEY_B] }, changed: true })
    expect(addKey(a.ring, ` ${KEY_B} `)).toEqual({ ring: a.ring, changed: false })
    expect(() => addKey(ring, 'too-short')).toThrow(expect.objectContaining({ code: 'KEY_TOO_SHORT' }))
    let full = ring
    for (let i = 1; i < 16; i++) full = addKey(full, `${i}`.padStart(40, 'k')).ring
    expect(() => addKey(full, KEY_C)).toThrow(expect.objectContaining({ code: 'KEYRING_FULL' }))
  })

  it('use switches the current key (by key or fingerprint), adding a new one; the old one stays accepted', () => {
    const two = addKey(ring, KEY_B).ring
    expect(useKey(two, KEY_B)).toEqual({ ring: { current: KEY_B, accepted: [KEY_B, KEY_A] }, changed: true, added: false })
    expect(useKey(two, fp(KEY_B)).ring.current).toBe(KEY_B)
    expect(useKey(ring, KEY_C)).toEqual({ ring: { current: KEY_C, accepted: [KEY_C, KEY_A] }, changed: true, added: true })
    expect(useKey(ring, KEY_A)).toEqual({ ring, changed: false, added: false })
    expect(() => useKey(ring, 'deadbeef')).toThrow(expect.objectContaining({ code: 'KEY_NOT_FOUND' }))
  })

  it('rm removes an accepted key (by key or fingerprint) and refuses the current one', () => {
    const two = addKey(ring, KEY_B).ring
    expect(removeKey(two, KEY_B)).toEqual({ ring, removed: KEY_B })
    expect(removeKey(two, fp(KEY_B).toUpperCase())).toEqual({ ring, removed: KEY_B })
    expect(() => removeKey(two, KEY_A)).toThrow(expect.objectContaining({ code: 'KEY_IS_CURRENT' }))
    expect(() => removeKey(two, KEY_C)).toThrow(expect.objectContaining({ code: 'KEY_NOT_FOUND' }))
  })
})

describe('which keys a node uses', () => {
  it('without keyring.json: the one key given at start', async () => {
    const d = await dir()
    expect(await loadMeshKeys(d, KEY_A)).toEqual({ source: 'key', current: KEY_A, accepted: [KEY_A] })
    await expect(loadMeshKeys(d, KEY_A, { reload: true })).rejects.toMatchObject({ code: 'KEYRING_MISSING' })
  })

  it('with keyring.json: the keyring decides; the start key must be one of its keys', async () => {
    const d = await dir()
    await writeKeyring(d, { current: KEY_B, accepted: [KEY_B, KEY_A] })
    expect(await loadMeshKeys(d, KEY_A)).toEqual({ source: 'keyring', current: KEY_B, accepted: [KEY_B, KEY_A] })
    expect(await loadMeshKeys(d, KEY_B)).toEqual({ source: 'keyring', current: KEY_B, accepted: [KEY_B, KEY_A] })
    const err = await loadMeshKeys(d, KEY_C).catch((e: unknown) => e) as { code: string, message: string }
    expect(err.code).toBe('KEY_NOT_IN_KEYRING')
    expect(err.message).toContain(fp(KEY_C))
    expect(err.message).not.toContain(KEY_C)
    // a reload does not check the start key: it may have been retired meanwhile
    expect((await loadMeshKeys(d, KEY_C, { reload: true })).current).toBe(KEY_B)
  })

  it('warns when keyring.json is readable by others', async () => {
    const d = await dir()
    await writeKeyring(d, { current: KEY_A, accepted: [KEY_A] })
    expect((await loadMeshKeys(d, KEY_A)).warning).toBeUndefined()
    await chmod(join(d, 'keyring.json'), 0o644)
    expect((await loadMeshKeys(d, KEY_A)).warning).toMatch(/chmod 600/)
  })

  it('syncmesh start takes --key, else $SYNCMESH_KEY, else the keyring current, else mesh.key', async () => {
    const d = await dir()
    await writeFile(join(d, 'mesh.key'), KEY_C + '\n')
    expect(await resolveStartKey({ data: d })).toBe(KEY_C)
    await writeKeyring(d, { current: KEY_B, accepted: [KEY_B, KEY_A] })
    expect(await resolveStartKey({ data: d })).toBe(KEY_B)
    expect(await resolveStartKey({ data: d, env: KEY_A })).toBe(KEY_A)
    expect(await resolveStartKey({ data: d, flag: KEY_C, env: KEY_A })).toBe(KEY_C)
  })

  it('the keyring to edit is seeded from --key, $SYNCMESH_KEY or mesh.key', async () => {
    const d = await dir()
    expect(await keyringToEdit({ data: d })).toBeUndefined()
    expect(await keyringToEdit({ data: d, env: KEY_A })).toEqual({ ring: { current: KEY_A, accepted: [KEY_A] }, existed: false })
    await writeFile(join(d, 'mesh.key'), KEY_C)
    expect(await keyringToEdit({ data: d })).toEqual({ ring: { current: KEY_C, accepted: [KEY_C] }, existed: false })
  })
})

describe('syncmesh key add | use | rm | ls', () => {
  const env = { SYNCMESH_KEY: '', SYNCMESH_LOG_LEVEL: 'warn' }
  const key = async (args: string[], input?: string): Promise<{ code: number, stdout: string, stderr: string }> =>
    await runCli(['key', ...args], { env, ...(input !== undefined ? { input } : {}) })

  function expectNoKeys (text: string): void {
    for (const k of [KEY_A, KEY_B, KEY_C]) expect(text).not.toContain(k)
  }

  it('walks through a rotation on one data dir, printing fingerprints only', async () => {
    const d = await dir()
    // no keyring and no key: the current key is needed first
    let r = await key(['add', KEY_B, '--data', d])
    expect(r.code).toBe(1)
    expect(r.stderr).toMatch(/^error \[KEY_MISSING\]: .*--key CURRENT_KEY/)

    r = await key(['add', KEY_B, '--data', d, '--key', KEY_A, '--json'])
    expect(r.code, r.stderr).toBe(0)
    expect(JSON.parse(r.stdout)).toEqual({ changed: true, file: join(d, 'keyring.json'), source: 'keyring', current: fp(KEY_A), accepted: [fp(KEY_A), fp(KEY_B)] })
    expect((await stat(join(d, 'keyring.json'))).mode & 0o777).toBe(0o600)
    expectNoKeys(r.stdout + r.stderr)

    r = await key(['ls', '--data', d])
    expect(r.code).toBe(0)
    expect(r.stdout).toBe(`${fp(KEY_A)}  current (proved and accepted)\n${fp(KEY_B)}  accepted\n`)

    r = await key(['use', KEY_B, '--data', d])
    expect(r.code, r.stderr).toBe(0)
    expect(r.stdout).toContain(`now proving ${fp(KEY_B)}`)
    expect(r.stdout).toContain('kill -HUP')
    expectNoKeys(r.stdout)

    r = await key(['rm', KEY_B, '--data', d])
    expect(r.code).toBe(1)
    expect(r.stderr.trimEnd().split('\n')).toHaveLength(1)
    expect(r.stderr).toMatch(/^error \[KEY_IS_CURRENT\]: refusing to remove the current key/)

    r = await key(['rm', fp(KEY_A), '--data', d, '--json'])
    expect(r.code, r.stderr).toBe(0)
    expect(JSON.parse(r.stdout)).toMatchObject({ current: fp(KEY_B), accepted: [fp(KEY_B)] })
    expect(await readKeyring(d)).toEqual({ current: KEY_B, accepted: [KEY_B] })

    r = await key(['rm', KEY_A, '--data', d])
    expect(r.code).toBe(1)
    expect(r.stderr).toMatch(/^error \[KEY_NOT_FOUND\]/)
    expectNoKeys(r.stderr)
  })

  it('reads KEY from stdin with "-", and rejects short keys', async () => {
    const d = await dir()
    await writeFile(join(d, 'mesh.key'), KEY_A)
    let r = await key(['add', '-', '--data', d, '--json'], `\n${KEY_C}\n`)
    expect(r.code, r.stderr).toBe(0)
    expect(JSON.parse(r.stdout).accepted).toEqual([fp(KEY_A), fp(KEY_C)])
    r = await key(['add', 'short-key', '--data', d])
    expect(r.code).toBe(1)
    expect(r.stderr).toMatch(/^error \[KEY_TOO_SHORT\]/)
    r = await key(['add', '-', '--data', d], '')
    expect(r.code).toBe(2)
  })

  it('ls without a keyring shows the single key the node would use', async () => {
    const d = await dir()
    const r = await runCli(['key', 'ls', '--data', d, '--json'], { env: { SYNCMESH_KEY: KEY_A } })
    expect(r.code, r.stderr).toBe(0)
    expect(JSON.parse(r.stdout)).toEqual({ source: 'key', current: fp(KEY_A), accepted: [fp(KEY_A)] })
  })

  it('a malformed keyring.json is reported with its path', async () => {
    const d = await dir()
    await writeFile(join(d, 'keyring.json'), '[]')
    const r = await key(['ls', '--data', d])
    expect(r.code).toBe(1)
    expect(r.stderr).toMatch(/^error \[KEYRING_INVALID\]: .*keyring\.json/)
  })
})
