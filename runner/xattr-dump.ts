// Parser for `getfattr -R -d -m - -e hex -h` output: one getfattr process dumps a
// whole tree, where one process per file would cost ~1 ms each (100k files:
// minutes). Pure, so it is tested on canned output.
//
// getfattr quotes file names: backslash and non-printable bytes (newline, tab)
// become \ooo octal; other bytes, UTF-8 included, come through raw. The output
// must therefore be read as bytes (latin1), never decoded as UTF-8 first.

export interface XattrDumpEntry {
  xattrs: Record<string, string>;
  acls: Record<string, string>;
}

export function unquoteGetfattr(quoted: string): string {
  return quoted.replace(/\\([0-7]{3})/g, (_m, oct: string) => String.fromCharCode(parseInt(oct, 8)));
}

/** Relative path ("." for the root) -> attributes. Input is latin1 text. */
export function parseXattrDump(text: string): Map<string, XattrDumpEntry> {
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
    else current.xattrs[name] = value;
  }
  return result;
}
