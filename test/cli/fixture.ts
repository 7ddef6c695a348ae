// Output snapshots kept as files in test/cli/fixtures/: compared exactly, so a
// change of a table shows in review as a change of its fixture. A missing
// fixture is written only when PVSHIFT_WRITE_FIXTURES=1 (then read and check it).
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Test } from 'tap';

const DIR = join(import.meta.dirname, 'fixtures');

export function matchFixture(t: Test, name: string, actual: string): void {
  const file = join(DIR, name);
  if (!existsSync(file)) {
    if (process.env.PVSHIFT_WRITE_FIXTURES === '1') {
      writeFileSync(file, actual);
      t.comment(`wrote fixture ${name}`);
    } else {
      t.fail(`fixture ${name} is missing; run with PVSHIFT_WRITE_FIXTURES=1 once and review it`);
      return;
    }
  }
  t.equal(actual, readFileSync(file, 'utf8'), `output equals fixtures/${name}`);
}
