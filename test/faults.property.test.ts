// Property tests (fast-check) for fault specs: what parseFault reads, formatFault writes back
// the same; any text is a Fault or a UsageError.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { UsageError } from '../src/core/parse.js';
import { type Fault, formatFault, parseFault } from '../src/index.js';

const ms = (max: number, min = 0) =>
  fc.oneof(
    fc.integer({ min, max }),
    fc.double({ min, max, noNaN: true, noDefaultInfinity: true }),
    fc.constantFrom(min, Math.max(0.001, min), Math.max(1e-7, min)),
  );
const prob = fc.oneof(
  fc.double({ min: 0, max: 1, noNaN: true }),
  fc.constantFrom(0, 1, 0.5, 1e-7, 0.1 + 0.2),
);
const selector = fc.oneof(
  fc.constant({}),
  prob.map((fraction) => ({ fraction })),
  fc.integer({ min: 1, max: 999_999_999 }).map((every) => ({ every })),
);

/** Any fault parseFault can return, options included. */
const anyFault: fc.Arbitrary<Fault> = fc.oneof(
  fc
    .record({ delayMs: ms(600_000), jitterMs: fc.option(ms(600_000), { nil: undefined }), sel: selector })
    .map(({ delayMs, jitterMs, sel }) => ({
      kind: 'latency' as const,
      delayMs,
      ...(jitterMs !== undefined ? { jitterMs } : {}),
      ...sel,
    })),
  fc
    .record({ rate: fc.integer({ min: 1, max: 1024 ** 3 }), sel: selector })
    .map(({ rate, sel }) => ({ kind: 'bandwidth' as const, rate, ...sel })),
  fc
    .record({ bytes: fc.integer({ min: 1, max: 64 * 1024 * 1024 }), delayMs: ms(60_000), sel: selector })
    .map(({ bytes, delayMs, sel }) => ({ kind: 'slice' as const, bytes, delayMs, ...sel })),
  fc
    .record({ bytes: fc.integer({ min: 0, max: Number.MAX_SAFE_INTEGER }), sel: selector })
    .map(({ bytes, sel }) => ({ kind: 'stall-after' as const, bytes, ...sel })),
  fc
    .record({
      bytes: fc.integer({ min: 0, max: Number.MAX_SAFE_INTEGER }),
      how: fc.constantFrom('fin' as const, 'rst' as const),
      sel: selector,
    })
    .map(({ bytes, how, sel }) => ({ kind: 'close-after' as const, bytes, how, ...sel })),
  fc
    .record({ kind: fc.constantFrom('reset-on-connect' as const, 'blackhole' as const), sel: selector })
    .map(({ kind, sel }) => ({ kind, ...sel })),
  fc
    .record({
      kind: fc.constantFrom('corrupt' as const, 'drop' as const, 'duplicate' as const, 'reorder' as const),
      chance: prob,
      sel: selector,
    })
    .map(({ kind, chance, sel }) => ({ kind, chance, ...sel })),
  ms(600_000, 1).map((delayMs) => ({ kind: 'accept-delay' as const, delayMs })),
);

const orUsageError = (text: string): Fault | UsageError => {
  try {
    return parseFault(text);
  } catch (err) {
    expect(err).toBeInstanceOf(UsageError);
    expect((err as UsageError).message.startsWith('--fault')).toBe(true);
    return err as UsageError;
  }
};

describe('parseFault and formatFault', () => {
  it('format then parse gives the same fault', () => {
    fc.assert(
      fc.property(anyFault, (f) => {
        expect(parseFault(formatFault(f))).toEqual(f);
      }),
      { numRuns: 2000 },
    );
  });

  const word = fc.constantFrom(
    'latency',
    'bandwidth',
    'slice',
    'stall-after',
    'close-after',
    'reset-on-connect',
    'blackhole',
    'corrupt',
    'drop',
    'duplicate',
    'reorder',
    'accept-delay',
    'jitter',
    'delay',
    'how',
    'p',
    'every',
    'fin',
    'rst',
  );
  const value = fc.oneof(
    fc.constantFrom(
      '',
      '0',
      '1',
      '50',
      '50ms',
      '1.5s',
      '10us',
      '0.5',
      '1e3',
      '-1',
      '64k',
      'NaN',
      ' 5ms',
      '5 ms',
    ),
    fc.string({ maxLength: 6 }),
  );
  const specLike = fc
    .array(
      fc.oneof(
        word,
        fc.tuple(word, value).map(([k, v]) => `${k}=${v}`),
        fc.string({ maxLength: 8 }),
      ),
      { minLength: 1, maxLength: 4 },
    )
    .map((parts) => parts.join(','));

  it('any text gives a fault or a UsageError naming --fault; what parses round-trips', () => {
    fc.assert(
      fc.property(fc.oneof(specLike, fc.string(), fc.string({ unit: 'binary' })), (text) => {
        const r = orUsageError(text);
        if (r instanceof UsageError) return;
        const again = parseFault(formatFault(r));
        expect(again).toEqual(r);
        expect(formatFault(again)).toBe(formatFault(r));
      }),
      { numRuns: 3000 },
    );
  });
});
