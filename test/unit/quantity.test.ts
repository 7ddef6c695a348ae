// Quantities as bytes, and bytes as text for people.
import t from 'tap';
import { formatBytes, parseQuantity } from '../../src/quantity.js';

t.test('parseQuantity', (t) => {
  const cases: [string | number | undefined, number | undefined][] = [
    ['1Gi', 2 ** 30],
    ['10Gi', 10 * 2 ** 30],
    ['512Mi', 512 * 2 ** 20],
    ['1Ki', 1024],
    ['1Ti', 2 ** 40],
    ['1Pi', 2 ** 50],
    ['1Ei', 2 ** 60],
    ['500M', 5e8],
    ['1k', 1000],
    ['2G', 2e9],
    ['1T', 1e12],
    ['1P', 1e15],
    ['1E', 1e18],
    ['1073741824', 1073741824],
    ['1e9', 1e9],
    ['1E3', 1000],
    ['1.5Gi', 1.5 * 2 ** 30],
    ['0.1Ki', 103],
    ['.5Ki', 512],
    ['1.', 1],
    [' 10Gi ', 10 * 2 ** 30],
    ['0', 0],
    [1024, 1024],
    [0, 0],
    [undefined, undefined],
    ['', undefined],
    ['Gi', undefined],
    ['10gi', undefined],
    ['1ki', undefined],
    ['1K', undefined],
    ['10GB', undefined],
    ['100m', undefined],
    ['-1Gi', undefined],
    ['1 Gi', undefined],
    ['1Gi2', undefined],
    ['lots', undefined],
    [-1, undefined],
    [Number.NaN, undefined],
    [Number.POSITIVE_INFINITY, undefined],
  ];
  for (const [input, bytes] of cases)
    t.equal(parseQuantity(input), bytes, `${JSON.stringify(input) ?? 'undefined'} → ${bytes}`);
  t.end();
});

t.test('formatBytes', (t) => {
  const cases: [number, string][] = [
    [0, '0 B'],
    [1, '1 B'],
    [1023, '1023 B'],
    [1024, '1.0 KiB'],
    [1536, '1.5 KiB'],
    [2 ** 20, '1.0 MiB'],
    [900 * 2 ** 20, '900.0 MiB'],
    [1.5 * 2 ** 30, '1.5 GiB'],
    [2 ** 40, '1.0 TiB'],
    [2 ** 50, '1.0 PiB'],
    [2 ** 60, '1024.0 PiB'],
  ];
  for (const [bytes, text] of cases) t.equal(formatBytes(bytes), text, `${bytes} → ${text}`);
  t.end();
});
