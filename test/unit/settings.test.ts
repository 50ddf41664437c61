import { afterEach, describe, expect, it } from 'vitest'
import { resolveSettings } from '../../src/node/settings.js'

const saved = process.env.SYNCMESH_STREAMS
afterEach(() => {
  if (saved === undefined) delete process.env.SYNCMESH_STREAMS
  else process.env.SYNCMESH_STREAMS = saved
})

describe('settings', () => {
  it('streams: the option, else the config, else SYNCMESH_STREAMS, else off', () => {
    delete process.env.SYNCMESH_STREAMS
    expect(resolveSettings({ dataDir: '/x' }, { name: 'a' }).streams).toBe(false)
    process.env.SYNCMESH_STREAMS = '1'
    expect(resolveSettings({ dataDir: '/x' }, { name: 'a' }).streams).toBe(true)
    expect(resolveSettings({ dataDir: '/x' }, { name: 'a', streams: false }).streams).toBe(false)
    expect(resolveSettings({ dataDir: '/x', streams: false }, { name: 'a', streams: true }).streams).toBe(false)
    process.env.SYNCMESH_STREAMS = 'false'
    expect(resolveSettings({ dataDir: '/x' }, { name: 'a' }).streams).toBe(false)
    expect(resolveSettings({ dataDir: '/x' }, { name: 'a', streams: true }).streams).toBe(true)
    process.env.SYNCMESH_STREAMS = 'yes'
    expect(() => resolveSettings({ dataDir: '/x' }, { name: 'a' })).toThrow(expect.objectContaining({ code: 'CONFIG_INVALID', message: expect.stringContaining('SYNCMESH_STREAMS is "yes"') }))
  })
})
