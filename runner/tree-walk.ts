// Walking a tree on disk: every entry lstat'ed (bigint, for nanosecond times and
// 64-bit inodes), root first, parents before children. The pre-scan's totals
// (tree-totals.ts) and the verification's listings (tree-listing.ts) come from
// GNU find (find-tree.ts), several times faster; this walk is what they fall
// back on where find cannot run. Names are read as bytes and kept as latin1
// strings (see tree-diff.ts).
import fs from 'node:fs/promises';
import type { BigIntStats } from 'node:fs';
import type { EntryType } from './tree-diff.js';

const bytes = (p: string): Buffer => Buffer.from(p, 'latin1');
/** The on-disk path of `rel` (a latin1 string of its bytes) below `root`. */
export const entryPath = (root: string, rel: string): Buffer =>
  Buffer.concat([bytes(root), Buffer.from('/'), bytes(rel)]);
const join = (dir: string, name: string): string => (dir === '.' ? name : `${dir}/${name}`);

export function entryType(st: BigIntStats): EntryType {
  if (st.isFile()) return 'file';
  if (st.isDirectory()) return 'dir';
  if (st.isSymbolicLink()) return 'symlink';
  if (st.isFIFO()) return 'fifo';
  if (st.isCharacterDevice()) return 'char';
  if (st.isBlockDevice()) return 'block';
  return 'socket';
}

export interface WalkOptions {
  /** Top-level names left out (the runner's own temp dir). */
  skipTopLevel?: ReadonlySet<string>;
  signal?: AbortSignal;
  /**
   * An entry below the root that is gone when it is read (a live source under
   * a pre-sync) is counted and skipped instead of failing the walk. The root
   * itself missing always fails.
   */
  allowVanished?: boolean;
}

function errnoOf(e: unknown): unknown {
  return typeof e === 'object' && e !== null && 'code' in e ? e.code : undefined;
}

/** ENOENT, or ENOTDIR for a directory replaced by something else since it was listed. */
const isVanished = (e: unknown): boolean => errnoOf(e) === 'ENOENT' || errnoOf(e) === 'ENOTDIR';

/**
 * Calls visit for every entry, root (".") first, parents before children.
 * Directories are read a few at a time and their entries lstat'ed together:
 * on a 100k-file tree that is several times faster than one await per file.
 * Resolves to the number of entries that vanished under the walk (always 0
 * without `allowVanished`: the walk fails instead).
 */
export async function walkTree(
  root: string,
  visit: (relPath: string, st: BigIntStats) => void | Promise<void>,
  options: WalkOptions = {},
): Promise<number> {
  const rootBytes = bytes(root);
  const rootStats = await fs.lstat(rootBytes, { bigint: true });
  await visit('.', rootStats);
  if (!rootStats.isDirectory()) return 0;
  const queue: string[] = ['.'];
  let vanished = 0;
  const unlessVanished = (e: unknown): undefined => {
    if (!options.allowVanished || !isVanished(e)) throw e;
    vanished++;
    return undefined;
  };
  let active = 0;
  let failure: Error | undefined;
  await new Promise<void>((resolve) => {
    const pump = (): void => {
      if (failure !== undefined || (queue.length === 0 && active === 0)) {
        if (active === 0) resolve();
        return;
      }
      while (active < 8 && queue.length > 0 && failure === undefined) {
        const dir = queue.shift() ?? '.';
        active++;
        readOne(dir)
          .catch((e: unknown) => {
            failure ??= e instanceof Error ? e : new Error('reading the tree failed', { cause: e });
          })
          .finally(() => {
            active--;
            pump();
          });
      }
    };
    const readOne = async (dir: string): Promise<void> => {
      options.signal?.throwIfAborted();
      const abs = dir === '.' ? rootBytes : Buffer.concat([rootBytes, Buffer.from('/'), bytes(dir)]);
      // A directory gone since it was listed counts once, as find reports it.
      const listing = fs.readdir(abs, { encoding: 'buffer' });
      const names = dir === '.' ? await listing : await listing.catch(unlessVanished);
      if (names === undefined) return;
      const rels = names
        .map((n) => n.toString('latin1'))
        .filter((n) => !(dir === '.' && options.skipTopLevel?.has(n)))
        .map((n) => join(dir, n));
      for (let i = 0; i < rels.length; i += 256) {
        const chunk = rels.slice(i, i + 256);
        const stats = await Promise.all(
          chunk.map((r) =>
            fs.lstat(Buffer.concat([rootBytes, Buffer.from('/'), bytes(r)]), { bigint: true }).catch(unlessVanished),
          ),
        );
        for (let j = 0; j < chunk.length; j++) {
          const rel = chunk[j] as string;
          const st = stats[j];
          if (st === undefined) continue;
          await visit(rel, st);
          if (st.isDirectory()) queue.push(rel);
        }
      }
    };
    pump();
  });
  if (failure !== undefined) throw failure;
  return vanished;
}

/**
 * A name (latin1 string of its bytes) as a process argument, or undefined
 * when its bytes are not valid UTF-8: Node encodes every argument as UTF-8,
 * so such a name cannot be passed to another program.
 */
export function nameArgument(name: string): string | undefined {
  const raw = Buffer.from(name, 'latin1');
  const text = raw.toString('utf8');
  return Buffer.from(text, 'utf8').equals(raw) ? text : undefined;
}
