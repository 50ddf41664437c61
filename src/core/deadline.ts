/**
 * A signal that aborts after `ms`, or when `parent` aborts, whichever comes
 * first. Use it instead of AbortSignal.any([parent, AbortSignal.timeout(ms)]):
 * on Node 20 the timeout signal inside such a composite is held only weakly
 * and may be garbage-collected before it fires, and then the composite never
 * aborts (nodejs/node#57736). Here the timer holds the controller, so the
 * deadline fires whatever the collector does. Call `clear` when the work is
 * done (the timer is unref'd either way: it never keeps a process alive).
 */
export interface Deadline {
  signal: AbortSignal
  clear: () => void
}

export function deadline (ms: number, parent?: AbortSignal): Deadline {
  const controller = new AbortController()
  const timer = setTimeout(() => controller.abort(new DOMException(`timed out after ${ms} ms`, 'TimeoutError')), ms)
  timer.unref()
  const onParent = (): void => {
    clearTimeout(timer)
    controller.abort(parent?.reason)
  }
  if (parent?.aborted === true) onParent()
  else parent?.addEventListener('abort', onParent, { once: true })
  return {
    signal: controller.signal,
    clear: () => {
      clearTimeout(timer)
      parent?.removeEventListener('abort', onParent)
    }
  }
}
