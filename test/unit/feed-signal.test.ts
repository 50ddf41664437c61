/**
 * FeedSignal: a follower that read the feed and found nothing must not sleep
 * through a commit that landed while it was reading.
 */
import { describe, expect, it } from 'vitest'
import { FeedSignal } from '../../src/store/changes.js'

describe('FeedSignal', () => {
  it('wakes a waiter on the next notify, and times out without one', async () => {
    const signal = new FeedSignal()
    const woken = signal.wait(60_000)
    signal.notify()
    expect(await woken).toBe(true)
    expect(await signal.wait(10)).toBe(false)
  })

  it('returns at once when a notify came after the follower took its count (the commit landed during its read)', async () => {
    const signal = new FeedSignal()
    const seen = signal.notifies
    // the follower reads the feed here; a writer commits and notifies meanwhile
    signal.notify()
    expect(await signal.wait(60_000, undefined, seen)).toBe(true)
    // with an up-to-date count it waits for the next notify as before
    expect(await signal.wait(10, undefined, signal.notifies)).toBe(false)
  })

  it('an aborted wait returns false', async () => {
    const signal = new FeedSignal()
    const abort = new AbortController()
    const waiting = signal.wait(60_000, abort.signal, signal.notifies)
    abort.abort()
    expect(await waiting).toBe(false)
  })
})
