// Property tests (fast-check) for fault specs: what parseFault reads, formatFault writes back
// the same; any text is a Fault or a UsageError; and servers started with random valid fault
// specs echo, or misbehave as the spec says, without crashing.
import { createSocket } from 'node:dgram';
import net from 'node:net';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { UsageError } from '../src/core/parse.js';
import { type Fault, formatFault, parseFault, startEchoServer, startUdpEchoServer } from '../src/index.js';

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

// --- servers with random valid faults --------------------------------------------------------

/** TCP faults small enough for a test: short delays, small sizes, no p= or every=. */
const tcpFault: fc.Arbitrary<Fault> = fc.oneof(
  fc
    .record({
      d: fc.integer({ min: 0, max: 30 }),
      j: fc.option(fc.integer({ min: 0, max: 10 }), { nil: undefined }),
    })
    .map(({ d, j }) => parseFault(`latency=${d}ms${j !== undefined ? `,jitter=${j}ms` : ''}`)),
  fc.integer({ min: 2_000, max: 1_000_000 }).map((r) => parseFault(`bandwidth=${r}`)),
  fc
    .record({ b: fc.integer({ min: 1, max: 64 }), d: fc.integer({ min: 0, max: 2 }) })
    .map(({ b, d }) => parseFault(`slice=${b},delay=${d}ms`)),
  fc.integer({ min: 0, max: 120 }).map((b) => parseFault(`stall-after=${b}`)),
  fc
    .record({ b: fc.integer({ min: 0, max: 120 }), how: fc.constantFrom('fin', 'rst') })
    .map(({ b, how }) => parseFault(`close-after=${b},how=${how}`)),
  { arbitrary: fc.constantFrom(parseFault('reset-on-connect'), parseFault('blackhole')), weight: 1 },
  prob.map((p) => parseFault(`corrupt=${formatFault({ kind: 'corrupt', chance: p }).slice(8)}`)),
  fc.integer({ min: 1, max: 20 }).map((d) => parseFault(`accept-delay=${d}ms`)),
);
const tcpFaults = fc.uniqueArray(tcpFault, { minLength: 1, maxLength: 3, selector: (f) => f.kind });

/** `p`, or an error naming `what` after 5 s. */
function bounded<T>(p: Promise<T>, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: not done within 5 s`)), 5_000);
  });
  return Promise.race([p, late]).finally(() => clearTimeout(timer));
}

/** Connect, send `payload`, FIN; collect the echo until the server closes, or until `want` bytes came. */
function exchange(
  port: number,
  payload: Buffer,
  want: number | undefined,
): Promise<{ got: Buffer; how: 'close' | 'enough' | 'error'; code?: string }> {
  return new Promise((resolve, reject) => {
    const s = net.connect({ port, host: '127.0.0.1', allowHalfOpen: true });
    const parts: Buffer[] = [];
    let n = 0;
    let code: string | undefined;
    const timer = setTimeout(() => {
      s.destroy();
      reject(new Error(`no end within 5 s: ${n} bytes, wanted ${want ?? 'a close'}`));
    }, 5_000);
    const done = (how: 'close' | 'enough' | 'error') => {
      clearTimeout(timer);
      s.destroy();
      resolve({ got: Buffer.concat(parts), how, ...(code ? { code } : {}) });
    };
    s.on('data', (d: Buffer) => {
      parts.push(d);
      n += d.length;
      if (want !== undefined && n >= want) done('enough');
    });
    s.on('error', (e: NodeJS.ErrnoException) => {
      code = e.code;
    });
    s.on('close', () => done(code ? 'error' : 'close'));
    s.on('end', () => s.end());
    s.write(payload);
    s.end();
    // nothing is owed (a stall at byte 0): the server taking the connection is all there is to see
    if (want === 0) s.once('connect', () => done('enough'));
  });
}

describe('servers with random valid faults', () => {
  it('TCP: echo, or the misbehaviour the spec names; the server never crashes', {
    timeout: 240_000,
  }, async () => {
    await fc.assert(
      fc.asyncProperty(
        tcpFaults,
        fc.uint8Array({ minLength: 1, maxLength: 300, size: 'max' }),
        async (faults, bytes) => {
          const payload = Buffer.from(bytes);
          const specs = faults.map(formatFault);
          const srv = await startEchoServer({ port: 0, faults: specs.map((s) => parseFault(s)) });
          try {
            const by = Object.fromEntries(faults.map((f) => [f.kind, f])) as Partial<
              Record<Fault['kind'], Fault>
            >;
            if (by.blackhole && !by['reset-on-connect']) {
              // accepts, never answers: nothing to wait for but the server staying up
              const s = net.connect({ port: srv.address.port, host: '127.0.0.1' });
              await new Promise<void>((r, j) => {
                s.once('connect', () => r());
                s.once('error', j);
              });
              s.write(payload);
              s.destroy();
              return;
            }
            if (by['reset-on-connect']) {
              const r = await exchange(srv.address.port, payload, undefined);
              expect(r.got.length).toBe(0);
              return;
            }
            const stall = by['stall-after']?.bytes;
            const close = by['close-after'];
            const limit = Math.min(payload.length, stall ?? Infinity, close?.bytes ?? Infinity);
            // the server stops reading at stall-after: our FIN is never read, so no close comes
            const stalled =
              stall !== undefined && stall <= payload.length && !(close && close.bytes! <= stall);
            const r = await exchange(srv.address.port, payload, stalled ? limit : undefined);
            if (stalled && limit === 0) expect(r.got.length).toBe(0);
            if (close && close.bytes! <= limit && close.how === 'rst') {
              // an RST may discard what the client had not read yet: a prefix, never more
              expect(r.got.length).toBeLessThanOrEqual(limit);
            } else expect(r.got.length).toBe(limit);
            const want = payload.subarray(0, r.got.length);
            if (!by.corrupt) expect(r.got.equals(want)).toBe(true);
            else {
              let bits = 0;
              for (let i = 0; i < want.length; i++) {
                let x = want[i]! ^ r.got[i]!;
                while (x) {
                  bits += x & 1;
                  x >>= 1;
                }
              }
              expect(bits).toBeLessThanOrEqual(r.got.length); // at most one bit per chunk read
            }
          } catch (err) {
            throw new Error(
              `--fault ${specs.join(' --fault ')}, ${payload.length} bytes: ${(err as Error).message}`,
            );
          } finally {
            await bounded(
              srv.close({ graceMs: 0 }),
              `close of a server with --fault ${specs.join(' --fault ')}`,
            );
          }
        },
      ),
      { numRuns: 40, endOnFailure: true },
    );
  });

  const udpFault: fc.Arbitrary<Fault> = fc.oneof(
    fc
      .record({ d: fc.integer({ min: 0, max: 20 }), j: fc.integer({ min: 0, max: 10 }) })
      .map(({ d, j }) => parseFault(`latency=${d}ms,jitter=${j}ms`)),
    prob.map((p) => ({ kind: 'corrupt' as const, chance: p })),
    prob.map((p) => ({ kind: 'drop' as const, chance: p })),
    prob.map((p) => ({ kind: 'duplicate' as const, chance: p })),
    prob.map((p) => ({ kind: 'reorder' as const, chance: p })),
  );

  it('UDP: every datagram back (dropped, doubled, late, reordered or flipped as the spec says)', {
    timeout: 120_000,
  }, async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.uniqueArray(udpFault, { minLength: 1, maxLength: 3, selector: (f) => f.kind }),
        fc.array(fc.uint8Array({ minLength: 1, maxLength: 200 }), { minLength: 1, maxLength: 8 }),
        async (faults, grams) => {
          const specs = faults.map(formatFault);
          const srv = await startUdpEchoServer({
            port: 0,
            rateLimit: 0,
            faults: specs.map((s) => parseFault(s)),
          });
          const sock = createSocket('udp4');
          try {
            const by = Object.fromEntries(faults.map((f) => [f.kind, f])) as Partial<
              Record<Fault['kind'], Fault>
            >;
            const sent = grams.map((g, i) => Buffer.concat([Buffer.from([i]), Buffer.from(g)]));
            const got: Buffer[] = [];
            const mayDrop = by.drop !== undefined && by.drop.chance! > 0;
            await new Promise<void>((resolve, reject) => {
              const bound = setTimeout(
                () => reject(new Error(`${got.length} of ${sent.length} datagrams back within 10 s`)),
                10_000,
              );
              sock.on('close', () => clearTimeout(bound));
              sock.on('error', reject);
              sock.on('message', (m: Buffer) => {
                got.push(m);
                if (!mayDrop && got.length >= sent.length) resolve(); // duplicates only add
              });
              sock.bind(0, '127.0.0.1', () => {
                for (const d of sent) sock.send(d, srv.address.port, '127.0.0.1');
                // with drop, what comes back cannot be waited for: check what came until the
                // server has answered a datagram sent after them with no faults
                if (mayDrop) {
                  srv.setFaults([]);
                  const mark = Buffer.from([255, 0xee]);
                  sock.on('message', (m: Buffer) => {
                    if (m.equals(mark)) resolve();
                  });
                  sock.send(mark, srv.address.port, '127.0.0.1');
                }
              });
            });
            for (const m of got) {
              if (m.length === 2 && m[0] === 255 && m[1] === 0xee) continue;
              const twin = sent.find((d) => d.length === m.length && (by.corrupt || d.equals(m)));
              expect(twin).toBeDefined();
            }
          } catch (err) {
            throw new Error(`--udp --fault ${specs.join(' --fault ')}: ${(err as Error).message}`);
          } finally {
            sock.close();
            await bounded(srv.close(), `close of a UDP server with --fault ${specs.join(' --fault ')}`);
          }
        },
      ),
      { numRuns: 30, endOnFailure: true },
    );
  });
});
