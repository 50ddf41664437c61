/**
 * deadline(): the timeout fires even when the collector runs while it is
 * pending (AbortSignal.any over AbortSignal.timeout may not, on Node 20), and
 * the parent's abort passes through.
 */
import { execFileSync } from 'node:child_process'
import { join } from 'node:path'
import { pathToFileURL } from 'node:url'
import { describe, expect, it } from 'vitest'
import { deadline } from '../../src/core/deadline.js'

const built = pathToFileURL(join(import.meta.dirname, '..', '..', 'dist', 'src', 'core', 'deadline.js')).href

describe('deadline', () => {
  it('aborts with a TimeoutError after its time, though the collector runs meanwhile (a real process with --expose-gc)', () => {
    const script = `
      const { deadline } = await import(${JSON.stringify(built)})
      const parent = new AbortController()
      const fired = await new Promise((resolve) => {
        const d = deadline(150, parent.signal)
        d.signal.addEventListener('abort', () => resolve(d.signal.reason.name), { once: true })
        const churn = setInterval(() => { Array.from({ length: 1e5 }, (_, i) => ({ i })); globalThis.gc() }, 5)
        setTimeout(() => { clearInterval(churn); resolve('never fired') }, 3000)
      })
      process.stdout.write(fired)
      process.exit(0)
    `
    const out = execFileSync(process.execPath, ['--expose-gc', '--input-type=module', '-e', script], { encoding: 'utf8' })
    expect(out).toBe('TimeoutError')
  })

  it('aborts with the parent, and clear stops the timer', async () => {
    const parent = new AbortController()
    const d = deadline(60_000, parent.signal)
    parent.abort(new Error('stopping'))
    expect(d.signal.aborted).toBe(true)
    expect((d.signal.reason as Error).message).toBe('stopping')

    const cleared = deadline(20)
    cleared.clear()
    await new Promise(resolve => setTimeout(resolve, 60))
    expect(cleared.signal.aborted).toBe(false)

    const already = new AbortController()
    already.abort()
    expect(deadline(60_000, already.signal).signal.aborted).toBe(true)
  })
})
