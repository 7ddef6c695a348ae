// Parser for `getfattr -R -d -m - -e hex -h` output: one getfattr process dumps a
// whole tree, where one process per file would cost ~1 ms each (100k files:
// minutes). Pure, so it is tested on canned output.
//
// getfattr quotes file names: backslash and non-printable bytes (newline, tab)
// become \ooo octal; other bytes, UTF-8 included, come through raw. The output
// must therefore be read as bytes (latin1), never decoded as UTF-8 first.

/**
 * XFS keeps a file's POSIX ACLs in `trusted.SGI_ACL_FILE` and
 * `trusted.SGI_ACL_DEFAULT`, and shows them to a reader with CAP_SYS_ADMIN
 * beside `system.posix_acl_*`. They are the ACL, not data of their own: copied
 * as xattrs they would land on ext4 as junk, and rsync -X, seeing them on an
 * XFS target but not on an ext4 source, removes them, and with them the ACL
 * it has just set. So they are excluded from the copy (rsync-command.ts) and
 * from the comparison (the ACL is compared as system.posix_acl_*).
 */
export const ACL_STORAGE_XATTRS = 'trusted.SGI_ACL_*';

/**
 * Writing a `security.*` xattr needs CAP_SYS_ADMIN (security/commoncap.c,
 * cap_inode_setxattr), all but `security.capability` (file capabilities), which
 * CAP_SETFCAP allows. Unlike trusted.*, the kernel shows them to any reader, so
 * a copy without CAP_SYS_ADMIN sees them and must leave them out on purpose
 * (rsync -X would fail on each with EPERM): they are dropped, as the migration
 * said up front (src/pod-security.ts), and not compared.
 */
export const KEPT_SECURITY_XATTR = 'security.capability';

/** Whether an xattr the kernel shows is copied and compared; `admin`: the process has CAP_SYS_ADMIN. */
export function isCopiedXattr(name: string, admin: boolean): boolean {
  if (name.startsWith('trusted.SGI_ACL_')) return false;
  if (!admin && name.startsWith('security.') && name !== KEPT_SECURITY_XATTR) return false;
  return true;
}

export interface XattrDumpEntry {
  xattrs: Record<string, string>;
  acls: Record<string, string>;
}

export function unquoteGetfattr(quoted: string): string {
  return quoted.replace(/\\([0-7]{3})/g, (_m, oct: string) => String.fromCharCode(parseInt(oct, 8)));
}

/** Relative path ("." for the root) -> attributes, only those copied (isCopiedXattr). Input is latin1 text. */
export function parseXattrDump(text: string, admin = true): Map<string, XattrDumpEntry> {
  const result = new Map<string, XattrDumpEntry>();
  let current: XattrDumpEntry | undefined;
  for (const line of text.split('\n')) {
    if (line.startsWith('# file: ')) {
      let p = unquoteGetfattr(line.slice('# file: '.length));
      if (p.startsWith('./')) p = p.slice(2);
      current = { xattrs: {}, acls: {} };
      result.set(p === '' ? '.' : p, current);
      continue;
    }
    if (!current || line === '') continue;
    const eq = line.indexOf('=');
    const name = unquoteGetfattr(eq < 0 ? line : line.slice(0, eq));
    // An empty value is printed as `name=0x` with -e hex, or as a bare name.
    const value = eq < 0 ? '' : line.slice(eq + 1).replace(/^0x/, '');
    if (name.startsWith('system.posix_acl_')) current.acls[name] = value;
    else if (isCopiedXattr(name, admin)) current.xattrs[name] = value;
  }
  return result;
}
