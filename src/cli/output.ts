/**
 * Printing helpers for the CLI: JSON lines, aligned tables, human sizes and
 * times, and a stderr status line that refreshes in place on a TTY.
 */

/** Write to stdout, waiting for the pipe to drain when it is full. */
export async function out (text: string): Promise<void> {
  if (!process.stdout.write(text)) {
    await new Promise<void>((resolve) => process.stdout.once('drain', resolve))
  }
}

export async function printLine (line = ''): Promise<void> {
  await out(line + '\n')
}

export async function printJson (value: unknown): Promise<void> {
  await out(JSON.stringify(value) + '\n')
}

/** Columns padded to the widest cell; no trailing spaces. */
export function table (headers: string[], rows: string[][]): string {
  const all = [headers, ...rows]
  const widths = headers.map((_, i) => Math.max(...all.map((row) => [...(row[i] ?? '')].length)))
  return all
    .map((row) => row.map((cell, i) => i === row.length - 1 ? cell : cell + ' '.repeat((widths[i] ?? 0) - [...cell].length)).join('  ').trimEnd())
    .join('\n')
}

/** "12D3KooWAbCd…xyz123": enough to recognise a peer id. */
export function shortId (id: string): string {
  return id.length > 20 ? `${id.slice(0, 12)}…${id.slice(-6)}` : id
}

export function formatBytes (n: number): string {
  if (!Number.isFinite(n)) return '?'
  if (n < 1024) return `${n} B`
  const units = ['KiB', 'MiB', 'GiB', 'TiB']
  let value = n
  let unit = -1
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024
    unit++
  }
  return `${value.toFixed(value < 10 ? 1 : 0)} ${units[unit] ?? ''}`
}

export function formatCount (n: number): string {
  return n.toLocaleString('en-US')
}

export function formatDuration (seconds: number): string {
  if (!Number.isFinite(seconds) || seconds < 0) return '?'
  const s = Math.round(seconds)
  if (s < 60) return `${s}s`
  const m = Math.floor(s / 60)
  if (m < 60) return `${m}m${String(s % 60).padStart(2, '0')}s`
  const h = Math.floor(m / 60)
  return `${h}h${String(m % 60).padStart(2, '0')}m`
}

export function formatAgo (iso: string | undefined, now = Date.now()): string {
  if (iso == null) return 'never'
  const t = Date.parse(iso)
  if (Number.isNaN(t)) return iso
  const seconds = (now - t) / 1000
  return seconds < 1 ? 'just now' : `${formatDuration(seconds)} ago`
}

/**
 * A progress line on stderr. On a TTY it rewrites itself in place (at most
 * every `ttyIntervalMs`); elsewhere it prints plain lines at most every
 * `plainIntervalMs` (or never, with plainIntervalMs = Infinity).
 */
export class StatusLine {
  readonly tty: boolean
  #lastWrite = 0
  #shown = false
  readonly #ttyIntervalMs: number
  readonly #plainIntervalMs: number

  constructor (options: { ttyIntervalMs?: number, plainIntervalMs?: number } = {}) {
    this.tty = process.stderr.isTTY === true
    this.#ttyIntervalMs = options.ttyIntervalMs ?? 100
    this.#plainIntervalMs = options.plainIntervalMs ?? 1000
  }

  update (text: string, force = false): void {
    const now = Date.now()
    const interval = this.tty ? this.#ttyIntervalMs : this.#plainIntervalMs
    if (!force && now - this.#lastWrite < interval) return
    if (!force && !Number.isFinite(interval)) return
    this.#lastWrite = now
    if (this.tty) {
      const width = process.stderr.columns ?? 80
      const line = [...text].length >= width ? [...text].slice(0, width - 1).join('') : text
      process.stderr.write(`\r\x1b[K${line}`)
      this.#shown = true
    } else {
      process.stderr.write(text + '\n')
    }
  }

  /** Remove the refreshing line (TTY) so the next output starts clean. */
  clear (): void {
    if (this.tty && this.#shown) process.stderr.write('\r\x1b[K')
    this.#shown = false
  }

  /** A final line that stays (both on a TTY and elsewhere). */
  done (text: string): void {
    this.clear()
    process.stderr.write(text + '\n')
  }
}

export function progressBar (fraction: number, width = 24): string {
  const f = Math.min(1, Math.max(0, Number.isFinite(fraction) ? fraction : 0))
  const full = Math.round(f * width)
  return `[${'#'.repeat(full)}${'-'.repeat(width - full)}] ${String(Math.floor(f * 100)).padStart(3)}%`
}
