import t from 'tap';
import { ProgressTracker, parseProgressLine, parseRsyncStats, splitRsyncOutput } from '../../runner/rsync-progress.js';

void t.test('progress2 lines', (t) => {
  const cases: [string, string, ReturnType<typeof parseProgressLine>][] = [
    ['start of a file, no counters yet', '              0   0%    0.00kB/s    0:00:00  ', { bytes: 0, percent: 0 }],
    [
      'with xfr and to-chk',
      '     21,331,971  35%   19.58MB/s    0:00:01 (xfr#1, to-chk=2/6)',
      { bytes: 21331971, percent: 35, toCheck: 2, totalItems: 6 },
    ],
    [
      'incremental recursion counter',
      '  1,000 100%  1.00kB/s 0:00:00 (xfr#3, ir-chk=1000/1234)',
      { bytes: 1000, percent: 100, toCheck: 1000, totalItems: 1234 },
    ],
    ['hours of ETA', '  5 0%  1.00B/s  123:04:05', { bytes: 5, percent: 0 }],
    ['a stats line', 'Number of files: 6 (reg: 3, dir: 2, link: 1)', undefined],
    ['an rsync error', 'rsync: [receiver] write failed on "x": No space left on device (28)', undefined],
    ['empty', '', undefined],
  ];
  for (const [name, line, expected] of cases) t.same(parseProgressLine(line), expected, name);
  t.end();
});

void t.test('output splits on \\r and \\n, keeping the unfinished rest', (t) => {
  t.same(splitRsyncOutput('\r  1 0% 0kB/s 0:00:00\r  2 0%'), { lines: ['  1 0% 0kB/s 0:00:00'], rest: '  2 0%' });
  t.same(splitRsyncOutput('a\n\nb\n'), { lines: ['a', 'b'], rest: '' });
  t.end();
});

void t.test('--stats block', (t) => {
  const text = `Number of files: 6 (reg: 3, dir: 2, link: 1)
Number of created files: 5 (reg: 3, dir: 1, link: 1)
Number of deleted files: 2
Number of regular files transferred: 2
Total file size: 60,000,009 bytes
Total transferred file size: 30,000,009 bytes
`;
  t.same(parseRsyncStats(text), { filesTransferred: 2, bytesTransferred: 30000009, deleted: 2 });
  t.equal(parseRsyncStats('sent 10 bytes'), undefined, 'no stats, no numbers');
  t.end();
});

void t.test('tracker: monotonic, clamped, complete at the end', (t) => {
  const p = new ProgressTracker(1000, 10, 0);
  t.same(p.snapshot(0), {
    type: 'progress',
    bytesDone: 0,
    bytesTotal: 1000,
    filesDone: 0,
    filesTotal: 10,
    bytesPerSecond: 0,
    etaSeconds: null,
    elapsedSeconds: 0,
  });
  p.update({ bytes: 400, percent: 40, toCheck: 6, totalItems: 11 });
  let s = p.snapshot(2000);
  t.equal(s.bytesDone, 400);
  t.equal(s.filesDone, 4, 'items checked minus the root');
  t.equal(s.bytesPerSecond, 200);
  t.equal(s.etaSeconds, 3);
  p.update({ bytes: 100, percent: 10, toCheck: 9, totalItems: 11 });
  s = p.snapshot(3000);
  t.equal(s.bytesDone, 400, 'never goes back');
  t.equal(s.filesDone, 4, 'never goes back');
  p.update({ bytes: 5000, percent: 100, toCheck: 0, totalItems: 20 });
  s = p.snapshot(4000);
  t.equal(s.bytesDone, 1000, 'clamped to the total');
  t.equal(s.filesDone, 10, 'clamped to the total');
  t.equal(s.etaSeconds, 0);
  const q = new ProgressTracker(1000, 10, 0);
  q.complete();
  t.match(q.snapshot(10), { bytesDone: 1000, filesDone: 10 }, 'an up-to-date rerun ends at the totals');
  const two = new ProgressTracker(1000, 10, 0);
  two.update({ bytes: 300, percent: 0 }, 0);
  two.update({ bytes: 200, percent: 0 }, 1);
  t.equal(two.snapshot(1000).bytesDone, 500, 'several rsync processes add up');
  t.end();
});
