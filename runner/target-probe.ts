// What the target filesystem can hold, found by trying it: a filesystem's name
// says little (tmpfs gained user xattrs in 6.6, ext4 can be mounted without ACLs,
// ramfs has none), so a probe file gets an xattr and an ACL, then goes away.
import { execFile } from 'node:child_process';
import fs from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import { formatBytes } from '../src/quantity.js';

const run = promisify(execFile);

export interface FeatureProbe {
  xattrs: boolean;
  acls: boolean;
  /** CAP_SYS_ADMIN: trusted.* is visible and security.* writable (the probe's `trustedXattrs`). */
  adminXattrs: boolean;
  /** Why a feature is off, or why it could not be probed. */
  notes: string[];
}

function failure(e: unknown): string {
  if (typeof e === 'object' && e !== null) {
    const { stderr, code } = e as { stderr?: unknown; code?: unknown };
    if (code === 'ENOENT') return 'ENOENT';
    if (typeof stderr === 'string' && stderr.trim()) return stderr.trim().split('\n')[0] ?? '';
  }
  return e instanceof Error ? e.message : String(e);
}

/** Tries the tools rsync's -X and -A rely on; a missing tool keeps the feature (rsync may still manage). */
async function canDo(cmd: string, args: string[], what: string, notes: string[]): Promise<boolean> {
  try {
    await run(cmd, args);
    return true;
  } catch (e: unknown) {
    const why = failure(e);
    if (why === 'ENOENT') {
      notes.push(`${cmd} is not installed: ${what} support was not probed, rsync will try`);
      return true;
    }
    notes.push(`${what}: ${why}`);
    return false;
  }
}

/** CAP_SYS_ADMIN's bit in the capability sets (include/uapi/linux/capability.h). */
export const CAP_SYS_ADMIN = 21;

/**
 * Whether the CapEff line of a /proc/PID/status text has capability `bit`
 * set; undefined when the text has no such line.
 */
export function hasEffectiveCapability(status: string, bit: number): boolean | undefined {
  const m = /^CapEff:\s*([0-9a-fA-F]+)\s*$/m.exec(status);
  if (!m) return undefined;
  return ((BigInt(`0x${m[1] ?? '0'}`) >> BigInt(bit)) & 1n) === 1n;
}

/**
 * Whether this process (and so cp, rsync and getfattr, which it starts with
 * the same credentials) can see trusted.* extended attributes. The kernel
 * lists and reads them only for a caller with CAP_SYS_ADMIN
 * (fs/xattr.c, xattr_permission); without it they are silently absent, not an
 * error, so no tool would say that they were not copied. A copy pod in a Pod
 * Security "baseline" namespace runs as root without CAP_SYS_ADMIN.
 * No /proc (not Linux, or not mounted): root is taken to have it.
 */
export async function canSeeTrustedXattrs(statusFile = '/proc/self/status'): Promise<boolean> {
  const status = await fs.readFile(statusFile, 'utf8').catch(() => '');
  return hasEffectiveCapability(status, CAP_SYS_ADMIN) ?? process.getuid?.() === 0;
}

/**
 * `trustedXattrs`: whether trusted.* is visible at all (canSeeTrustedXattrs);
 * only then is the target asked to hold it.
 */
export async function probeFeatures(dir: string, trustedXattrs = true): Promise<FeatureProbe> {
  const probe = path.join(dir, `probe-${process.pid}`);
  await fs.writeFile(probe, '');
  const notes: string[] = [];
  try {
    let xattrs = await canDo('setfattr', ['-n', 'user.pvshift-probe', '-v', '1', probe], 'user xattrs', notes);
    // Without CAP_SYS_ADMIN the write fails with EPERM, which says nothing about
    // the target: cp and rsync do not see the source's trusted.* either.
    if (xattrs && trustedXattrs && process.getuid?.() === 0) {
      xattrs = await canDo('setfattr', ['-n', 'trusted.pvshift-probe', '-v', '1', probe], 'trusted xattrs', notes);
    }
    // A named user entry, not just the mode bits: that is what needs ACL support.
    const acls = await canDo('setfacl', ['-m', 'u:65534:r', probe], 'POSIX ACLs', notes);
    return { xattrs, acls, adminXattrs: trustedXattrs, notes };
  } finally {
    await fs.rm(probe, { force: true });
  }
}

export interface FsSpace {
  bsize: number;
  blocks: number;
  bavail: number;
  files: number;
  ffree: number;
}

export async function readFsSpace(dir: string): Promise<FsSpace> {
  const s = await fs.statfs(dir);
  return { bsize: s.bsize, blocks: s.blocks, bavail: s.bavail, files: s.files, ffree: s.ffree };
}

export interface CapacityNeed {
  allocatedBytes: number;
  inodes: number;
  largestFile: number;
  /** What the target already holds (counted as reusable on a rerun), when measured. */
  targetAllocatedBytes?: number;
  targetInodes?: number;
}

export interface CapacityVerdict {
  fits: boolean;
  neededBytes: number;
  freeBytes: number;
  neededInodes: number;
  freeInodes: number;
  message: string;
  /** Checks that could not be made (a filesystem that reports no capacity). */
  warnings: string[];
}

/**
 * Headroom: directories and metadata the target allocates differently from the
 * source, plus one temp copy of the largest file (rsync writes the new version
 * beside the old one and renames), at least 1 MiB, 1% of the data otherwise.
 */
export function checkCapacity(need: CapacityNeed, space: FsSpace): CapacityVerdict {
  const warnings: string[] = [];
  const headroom = Math.max(1 << 20, Math.ceil(need.allocatedBytes * 0.01));
  const neededBytes = need.allocatedBytes + headroom + (need.targetAllocatedBytes ? need.largestFile : 0);
  const neededInodes = need.inodes + 16;
  const freeBytes = space.bavail * space.bsize + (need.targetAllocatedBytes ?? 0);
  const freeInodes = space.ffree + (need.targetInodes ?? 0);
  // ramfs and some FUSE filesystems report zero blocks and zero inodes: no limit we can see.
  const bytesKnown = space.blocks > 0;
  const inodesKnown = space.files > 0;
  if (!bytesKnown) warnings.push('the target filesystem reports no size: free space not checked');
  if (!inodesKnown)
    warnings.push('the target filesystem reports no inode count (btrfs, ramfs): free inodes not checked');
  const bytesFit = !bytesKnown || freeBytes >= neededBytes;
  const inodesFit = !inodesKnown || freeInodes >= neededInodes;
  const parts: string[] = [];
  if (!bytesFit) {
    parts.push(
      `the target has ${freeBytes} bytes (${formatBytes(freeBytes)}) free, the source needs ${neededBytes} bytes (${formatBytes(neededBytes)}: ${need.allocatedBytes} allocated plus headroom)`,
    );
  }
  if (!inodesFit) parts.push(`the target has ${freeInodes} inodes free, the source needs ${neededInodes}`);
  return {
    fits: bytesFit && inodesFit,
    neededBytes,
    freeBytes,
    neededInodes,
    freeInodes,
    message: parts.length ? `target too small: ${parts.join('; ')}` : 'the data fits',
    warnings,
  };
}
