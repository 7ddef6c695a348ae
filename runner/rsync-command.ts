// The rsync command line: every flag the runner gives rsync, and why. run.ts
// spawns it; rsync-progress.ts parses what --info=progress2 and --stats print.
import type { RunnerOptions } from './args.js';
import { TEMP_DIR_PREFIX } from './temp-dir.js';
import { ACL_STORAGE_XATTRS, KEPT_SECURITY_XATTR } from './xattr-dump.js';

/**
 * One rsync process's share of a split copy: its top-level names as rsync
 * include patterns (anchored, NUL-separated for --from0, so any byte but NUL
 * and "/" is safe), everything else at the top excluded. Excluded names are
 * also safe from this process's --delete; top-level names only the target has
 * go into the first group, whose --delete removes them.
 */
export function includePatterns(names: readonly string[]): string {
  // rsync treats a backslash as an escape only in a pattern with a wildcard in it.
  const pattern = (n: string): string => (/[*?[]/.test(n) ? `/${n.replace(/[\\*?[]/g, (c) => `\\${c}`)}` : `/${n}`);
  return names.map((n) => `${pattern(n)}\0`).join('');
}

/**
 * What one rsync process copies: everything (none), its group's top-level
 * names (`includeFrom`, see includePatterns), or the files of a list whose
 * contents it compares (`compareFrom`, --changed-since: see changed-since.ts).
 */
export type RsyncSelection = { includeFrom: string } | { compareFrom: string };

/** The argv of one rsync process, after the program name. */
export function rsyncArgs(
  options: RunnerOptions,
  features: { xattrs: boolean; acls: boolean; adminXattrs: boolean },
  tempDir: string,
  selection?: RsyncSelection,
): string[] {
  const args = [
    // -a (rlptgoD), -H hard links, -S sparse; numeric ids: the pod's /etc/passwd is not the app's.
    '-aHS',
    '--numeric-ids',
    // Local copy: the delta algorithm only costs CPU when both ends are on this host.
    '--whole-file',
    // The whole file list first, so totals and to-chk counts are exact (see rsync-progress.ts).
    '--no-inc-recursive',
    '--info=progress2,name0',
    '--outbuf=L',
    '--stats',
    // rsync's temp files go to the run's temp dir (temp-dir.ts) instead of beside
    // each file as ".name.XXXXXX": a SIGKILLed run leaves its half-written file in
    // that one place, which the next run removes, so a stray temp never lands in
    // the copy. Every reserved top-level name is excluded, so --delete leaves them
    // alone too (the source holds none: the run refuses such a source).
    `--temp-dir=${tempDir}`,
    `--exclude=/${TEMP_DIR_PREFIX}*`,
  ];
  if (features.acls) args.push('-A');
  if (features.xattrs) {
    // The same names isCopiedXattr leaves out (xattr-dump.ts): XFS's ACL storage
    // always, security.* but file capabilities without CAP_SYS_ADMIN. The first
    // matching rule wins; an excluded name is neither sent nor removed on the target.
    args.push('-X', `--filter=-x ${ACL_STORAGE_XATTRS}`);
    if (!features.adminXattrs) args.push(`--filter=+x ${KEPT_SECURITY_XATTR}`, '--filter=-x security.*');
  }
  // A --files-from pass names files only: --delete would have nothing to do there (the main pass deletes).
  if (options.delete && !(selection && 'compareFrom' in selection)) args.push('--delete');
  if (options.bwlimitKiBps > 0) args.push(`--bwlimit=${options.bwlimitKiBps}`);
  if (selection && 'includeFrom' in selection)
    args.push('--from0', `--include-from=${selection.includeFrom}`, '--exclude=/*');
  // --checksum: size and a whole-file checksum, mtime ignored; only files whose contents differ are sent.
  if (selection && 'compareFrom' in selection)
    args.push('--checksum', '--from0', `--files-from=${selection.compareFrom}`);
  // Trailing slashes: copy the contents of source into target, root attributes included.
  args.push(`${options.source}/`, `${options.target}/`);
  return args;
}
