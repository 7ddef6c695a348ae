// The runner's temp dir in the target: where rsync writes each file before
// renaming it into place (--temp-dir) and where the bulk copy lands before its
// entries are moved. Its name is new on every run, under a prefix the runner
// reserves at the top level of both trees:
//
// - in the target, every top-level name with the prefix is the runner's: the
//   leftovers of a killed run (a half-written file, a partial bulk copy) are
//   removed at the start, and rsync's --delete never sees them (excluded);
// - in the source, a top-level name with the prefix would be excluded from
//   the copy just the same, so the run refuses it instead of losing it
//   quietly. Before this, the name was the fixed ".pvshift-runner-tmp" and a
//   user's entry of that name was skipped without a word.
import { randomBytes } from 'node:crypto';
import fs from 'node:fs/promises';

/** Reserved at the top level of source and target. ".pvshift-runner-tmp" (the old fixed name) has it too. */
export const TEMP_DIR_PREFIX = '.pvshift-runner-';

/** This run's temp dir name: the prefix and 12 random hex digits. */
export function newTempDirName(): string {
  return `${TEMP_DIR_PREFIX}${randomBytes(6).toString('hex')}`;
}

/** A top-level name (bytes as latin1, or plain text: the prefix is ASCII) that belongs to the runner. */
export function isReservedName(name: string): boolean {
  return name.startsWith(TEMP_DIR_PREFIX);
}

/** The top-level names of `dir` with the reserved prefix, as latin1 strings of their bytes. */
export async function reservedNames(dir: string): Promise<string[]> {
  const names = await fs.readdir(dir, { encoding: 'buffer' });
  return names
    .map((n) => n.toString('latin1'))
    .filter(isReservedName)
    .sort();
}

/**
 * Removes every top-level entry of the target with the reserved prefix: temp
 * dirs of earlier runs that were killed before they could remove their own.
 * Returns their names (latin1 byte strings).
 */
export async function removeLeftovers(target: string): Promise<string[]> {
  const names = await reservedNames(target);
  for (const name of names) {
    await fs.rm(Buffer.concat([Buffer.from(`${target}/`), Buffer.from(name, 'latin1')]), {
      recursive: true,
      force: true,
    });
  }
  return names;
}
