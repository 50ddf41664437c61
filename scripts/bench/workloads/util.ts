/** Formatting shared by the workloads. */
export function fmtN (n: number): string {
  return Math.round(n).toLocaleString('en-US')
}
