import { describe, expect, it } from 'vitest'
import { HEAP_GROWING_PERCENT, INTERRUPT_BUDGET, v8Tuning } from '../../src/cli/v8-tuning.js'

describe('the V8 settings the daemon gives itself', () => {
  it('sets the heap growth and the optimisation budget when the operator set neither', () => {
    expect(v8Tuning('')).toEqual([`--heap-growing-percent=${HEAP_GROWING_PERCENT}`, `--interrupt-budget=${INTERRUPT_BUDGET}`])
    expect(v8Tuning('--enable-source-maps --max-semi-space-size=4')).toHaveLength(2)
  })

  it('leaves each setting the operator gave as given (node flags or NODE_OPTIONS, - or _ spelling)', () => {
    expect(v8Tuning('--max-old-space-size=512')).toEqual([`--interrupt-budget=${INTERRUPT_BUDGET}`])
    expect(v8Tuning('--heap_growing_percent=50')).toEqual([`--interrupt-budget=${INTERRUPT_BUDGET}`])
    expect(v8Tuning('--interrupt-budget=100000')).toEqual([`--heap-growing-percent=${HEAP_GROWING_PERCENT}`])
    expect(v8Tuning('--interrupt_budget=100000 --max_old_space_size=1024')).toEqual([])
  })
})
