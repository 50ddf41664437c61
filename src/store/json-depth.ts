/**
 * Nesting limit for JSON that enters the node (API bodies, import lines, and
 * — where its owners wire it in — local writes and entries from peers).
 *
 * JSON.parse in V8 copes with any depth, but JSON.stringify, structured
 * clones and every recursive walk (rule filters, transforms) overflow the
 * call stack somewhere between a few thousand and ten thousand levels: a
 * 1 MiB body can nest ~260,000 levels. Real records nest a handful of levels;
 * MongoDB stops at 100. Both checks below are iterative.
 */

/** Most nested objects/arrays in a value: `{}` is 1, `{"a":[{}]}` is 3. */
export const MAX_JSON_DEPTH = 100

/** Whether a parsed JSON value nests more than `max` objects/arrays. */
export function jsonTooDeep (value: unknown, max = MAX_JSON_DEPTH): boolean {
  if (typeof value !== 'object' || value === null) return false
  const stack: Array<{ v: object, d: number }> = [{ v: value, d: 1 }]
  while (stack.length > 0) {
    const { v, d } = stack.pop() as { v: object, d: number }
    if (d > max) return true
    const children = Array.isArray(v) ? v : Object.values(v)
    for (const c of children) if (typeof c === 'object' && c !== null) stack.push({ v: c, d: d + 1 })
  }
  return false
}

/**
 * Whether JSON text (UTF-8 bytes) nests more than `max` objects/arrays,
 * without parsing it: brackets inside strings are skipped. Cheap enough for
 * every entry that arrives from the wire. Malformed text is the parser's job.
 */
export function jsonTextTooDeep (bytes: Uint8Array, max = MAX_JSON_DEPTH): boolean {
  let depth = 0
  let inString = false
  for (let i = 0; i < bytes.length; i++) {
    const b = bytes[i]
    if (inString) {
      if (b === 0x5c) i++ // backslash: skip the escaped byte
      else if (b === 0x22) inString = false
    } else if (b === 0x22) {
      inString = true
    } else if (b === 0x7b || b === 0x5b) {
      if (++depth > max) return true
    } else if (b === 0x7d || b === 0x5d) {
      depth--
    }
  }
  return false
}
