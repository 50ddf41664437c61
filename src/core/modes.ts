/**
 * Rule modes, as one table of behaviours: the only place a mode is named.
 * The write path, backfills, dry runs, schemas and the CLI read the table;
 * a new mode is one entry here, its tests and a paragraph in docs/rules.md.
 */

export interface ModeBehaviour {
  /** One line for help texts. */
  summary: string
  /** A delete of the source record deletes what the rule placed. */
  deletes: boolean
  /**
   * The target collection holds exactly what the rule sends: a source record
   * that stops qualifying (filter, per-record targets, no usable key, a
   * transform answering null) has its target record removed, a backfill
   * sweeps the records the rule did not place, and the rule owns the target
   * collection on its targets.
   */
  exact: boolean
  /** A target record, once there, is kept: never overwritten, and left in place when the source's key changes. */
  keepsExisting: boolean
  /** The rule's writes win over other writers of the target record (instead of the latest write winning). */
  sourceWins: boolean
  /** A local write over a record the rule placed is recorded as a conflict of the rule. */
  localWritesConflict: boolean
}

export const RULE_MODES = {
  merge: {
    summary: 'the latest write wins; local edits stay until the source writes again',
    deletes: true,
    exact: false,
    keepsExisting: false,
    sourceWins: false,
    localWritesConflict: true
  },
  mirror: {
    summary: 'the target collection is an exact copy of what the rule sends',
    deletes: true,
    exact: true,
    keepsExisting: false,
    sourceWins: true,
    localWritesConflict: false
  },
  'insert-only': {
    summary: 'records are created once and never changed or deleted by the rule',
    deletes: false,
    exact: false,
    keepsExisting: true,
    sourceWins: false,
    localWritesConflict: false
  }
} as const satisfies Record<string, ModeBehaviour>

export type RuleMode = keyof typeof RULE_MODES

/** The modes' names, in the table's order (for schemas and the CLI's choices). */
export const RULE_MODE_NAMES = Object.keys(RULE_MODES) as [RuleMode, ...RuleMode[]]

/** The mode of a rule that names none. */
export const DEFAULT_RULE_MODE: RuleMode = RULE_MODE_NAMES[0]

/** How a rule of `mode` behaves (the default mode's behaviour when it names none). */
export function modeOf (mode: RuleMode | undefined): ModeBehaviour {
  return RULE_MODES[mode ?? DEFAULT_RULE_MODE]
}
