// Property tests (fast-check) for everything that parses what people type: whatever the
// input, the result is a value in range or a UsageError naming the flag — never another throw.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { parseCidr } from '../src/core/access.js';
import {
  formatBytes,
  parseDuration,
  parseHost,
  parseInteger,
  parsePort,
  parseSize,
  UsageError,
} from '../src/core/parse.js';

const onlyUsageErrors = (fn: (s: string) => unknown) => (s: string) => {
  try {
    fn(s);
  } catch (err) {
    expect(err).toBeInstanceOf(UsageError);
    expect((err as UsageError).message.startsWith('--x')).toBe(true);
  }
};

describe('parsers, for any input', () => {
  const anyText = fc.oneof(
    fc.string(),
    fc.string({ unit: 'binary' }),
    fc.constantFrom('', ' ', '-1', '1e99', 'NaN', 'Infinity', '0x10', '1_000'),
  );
  for (const [name, fn] of [
    ['parsePort', (s: string) => parsePort('--x', s)],
    ['parseSize', (s: string) => parseSize('--x', s)],
    ['parseDuration', (s: string) => parseDuration('--x', s)],
    ['parseHost', (s: string) => parseHost('--x', s)],
    ['parseInteger', (s: string) => parseInteger('--x', s, 1, 100)],
    ['parseCidr', (s: string) => parseCidr('--x', s)],
  ] as const) {
    it(`${name} returns or throws a UsageError naming the flag`, () => {
      fc.assert(fc.property(anyText, onlyUsageErrors(fn)), { numRuns: 500 });
    });
  }

  it('every port 0-65535 parses to itself; everything above fails', () => {
    fc.assert(fc.property(fc.integer({ min: 0, max: 65535 }), (n) => parsePort('--x', String(n)) === n));
    fc.assert(
      fc.property(fc.integer({ min: 65536, max: 2 ** 40 }), (n) => {
        expect(() => parsePort('--x', String(n))).toThrow(UsageError);
      }),
    );
  });

  it('sizes round-trip through their printed form', () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 2 ** 40 }), (n) => parseSize('--x', formatBytes(n)) === n),
    );
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 2 ** 20 }), fc.constantFrom('k', 'm', 'K', 'M'), (n, u) => {
        expect(parseSize('--x', `${n}${u}`)).toBe(n * (u.toLowerCase() === 'k' ? 1024 : 1024 ** 2));
      }),
    );
  });

  it('durations in ms and s agree', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 0, max: 2_000_000 }),
        (n) => parseDuration('--x', `${n}ms`) === n && parseDuration('--x', `${n}s`) === n * 1000,
      ),
    );
  });

  it('any IPv4 address with any prefix is a valid CIDR that matches itself', () => {
    fc.assert(
      fc.property(fc.ipV4(), fc.integer({ min: 0, max: 32 }), (ip, p) => {
        const c = parseCidr('--x', `${ip}/${p}`);
        expect(c).toMatchObject({ address: ip, prefix: p, family: 'ipv4' });
      }),
    );
    fc.assert(fc.property(fc.ipV6(), (ip) => parseCidr('--x', ip).family === 'ipv6'));
  });
});
