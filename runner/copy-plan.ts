// Which engine copies this tree: pure, from the pre-scan, the target's top
// level and the options, so every choice has a table-driven test. Figures
// behind the thresholds are in runner/README.md ("Engine"), measured with
// hack/bench-copy.ts on a 2-core machine.
import { linkComponents, type TreeTotals } from './tree-totals.js';

export interface CopyPlan {
  /**
   * First copy into an empty target: `cp -a` into the temp dir, entries moved
   * into place, then the rsync pass (which fixes anything cp left and is the
   * only thing whose result counts).
   */
  bulk: boolean;
  /**
   * Top-level names per rsync process, and per cp process of the bulk copy;
   * one group (or none) means one rsync (and one cp) over the whole tree.
   */
  groups: string[][];
  /** One line for the log: what was chosen and why. */
  reason: string;
}

export interface PlanInput {
  totals: Pick<TreeTotals, 'files' | 'topLevel' | 'linkedTopLevels'>;
  /** The target holds nothing but the runner's temp dir (and an empty lost+found). */
  targetEmpty: boolean;
  /** --bwlimit: cp cannot be throttled, so a limited copy stays with rsync. */
  bwlimitKiBps: number;
  cpus: number;
}

/**
 * Below this many entries one rsync is as fast as two: the second process's
 * start-up and file-list build cost what the split saves. An up-to-date pass
 * over 100,000 4 KiB files took 0.94 s with one rsync, 0.52 s with two.
 */
export const PARALLEL_MIN_FILES = 20_000;
/** A split where one group holds more than this share of the entries gains too little. */
const PARALLEL_MAX_SHARE = 0.75;

/**
 * Splits the top level into `n` groups of about equal entry counts (largest
 * component first, into the lightest group). Returns one group when the split
 * is not worth it.
 */
export function splitTopLevel(totals: PlanInput['totals'], n: number): { groups: string[][]; why: string } {
  const names = [...totals.topLevel.keys()].sort();
  const all = [names];
  if (n < 2) return { groups: all, why: 'one CPU' };
  if (totals.files < PARALLEL_MIN_FILES) return { groups: all, why: `${totals.files} entries < ${PARALLEL_MIN_FILES}` };
  const components = linkComponents(names, totals.linkedTopLevels)
    .map((c) => ({ names: c, files: c.reduce((s, x) => s + (totals.topLevel.get(x)?.files ?? 0), 0) }))
    .sort((a, b) => b.files - a.files);
  const groups = Array.from({ length: n }, () => ({ names: [] as string[], files: 0 }));
  for (const c of components) {
    const lightest = groups.reduce((a, b) => (b.files < a.files ? b : a));
    lightest.names.push(...c.names);
    lightest.files += c.files;
  }
  const used = groups.filter((g) => g.names.length > 0);
  const heaviest = Math.max(...used.map((g) => g.files));
  if (used.length < 2 || heaviest > totals.files * PARALLEL_MAX_SHARE) {
    const linked = totals.linkedTopLevels.length > 0 ? ' (hard links tie top-level entries together)' : '';
    return { groups: all, why: `no balanced split of the top level${linked}` };
  }
  return {
    groups: used.map((g) => g.names.sort()),
    why: `${used.length} groups of ${used.map((g) => g.files).join('/')} entries`,
  };
}

export function planCopy(input: PlanInput): CopyPlan {
  const bulk = input.targetEmpty && input.bwlimitKiBps === 0;
  const split = splitTopLevel(input.totals, Math.min(2, input.cpus));
  const parts = [
    bulk
      ? 'empty target: cp -a into the temp dir, then an rsync pass'
      : `rsync only (${input.targetEmpty ? '--bwlimit set' : 'the target already holds data'})`,
    split.groups.length > 1 ? `${split.groups.length} rsync processes: ${split.why}` : `one rsync: ${split.why}`,
  ];
  return { bulk, groups: split.groups.length > 1 ? split.groups : [], reason: parts.join('; ') };
}
