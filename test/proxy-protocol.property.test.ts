// Property tests (fast-check) for the PROXY protocol parser: whatever bytes a peer sends, it
// never throws, never reads past the header, and says 'done' only for a well-formed header.
import { isIP, SocketAddress } from 'node:net';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  buildProxyHeader,
  parseProxyHeader,
  V1_MAX,
  V2_MAX_PAYLOAD,
  V2_SIGNATURE,
} from '../src/core/proxy-protocol.js';

const port = fc.integer({ min: 1, max: 65535 });
const v4 = fc.ipV4();
const v6 = fc.ipV6().map((a) => a.toLowerCase());
const bytes = (max = 300) => fc.uint8Array({ maxLength: max }).map((a) => Buffer.from(a));

/** A parse result is one of three shapes, and a 'done' one is internally consistent. */
function wellFormed(buf: Buffer): void {
  const r = parseProxyHeader(buf);
  expect(['more', 'done', 'invalid']).toContain(r.state);
  if (r.state !== 'done') return;
  const h = r.header;
  expect(h.length).toBeLessThanOrEqual(buf.length);
  expect(h.length).toBeLessThanOrEqual(h.version === 1 ? V1_MAX : 16 + V2_MAX_PAYLOAD);
  for (const a of [h.source, h.destination]) {
    if (!a || h.family.startsWith('unix')) continue;
    expect(isIP(a.address)).toBe(h.family.endsWith('4') ? 4 : 6);
    expect(a.port).toBeGreaterThanOrEqual(0);
    expect(a.port).toBeLessThanOrEqual(65535);
  }
}

describe('parseProxyHeader, for any input', () => {
  it('random bytes, and random bytes after either signature: no throw, consistent results', () => {
    fc.assert(
      fc.property(
        fc.oneof(
          bytes(),
          bytes().map((b) => Buffer.concat([V2_SIGNATURE, b])),
          bytes(120).map((b) => Buffer.concat([Buffer.from('PROXY '), b])),
          fc.string().map((s) => Buffer.from(`PROXY ${s}\r\n`)),
        ),
        (buf) => wellFormed(buf),
      ),
      { numRuns: 2000 },
    );
  });

  it('headers we build parse back to the same addresses; what follows is left alone', () => {
    const pair = fc.oneof(fc.tuple(v4, v4), fc.tuple(v6, v6));
    fc.assert(
      fc.property(
        fc.constantFrom(1 as const, 2 as const),
        pair,
        port,
        port,
        bytes(64),
        (ver, [src, dst], sp, dp, tail) => {
          const header = buildProxyHeader(ver, { address: src, port: sp }, { address: dst, port: dp });
          const r = parseProxyHeader(Buffer.concat([header, tail]));
          expect(r.state).toBe('done');
          if (r.state !== 'done') return;
          expect(r.header.length).toBe(header.length);
          expect(r.header.source!.port).toBe(sp);
          expect(r.header.destination!.port).toBe(dp);
          expect(canonical(r.header.source!.address)).toBe(canonical(src));
          expect(canonical(r.header.destination!.address)).toBe(canonical(dst));
        },
      ),
      { numRuns: 1000 },
    );
  });

  it('every strict prefix of a valid header asks for more; a mutated one never passes as something else', () => {
    fc.assert(
      fc.property(
        fc.constantFrom(1 as const, 2 as const),
        v4,
        v4,
        port,
        port,
        fc.nat(),
        fc.integer({ min: 0, max: 255 }),
        (ver, src, dst, sp, dp, where, value) => {
          const header = buildProxyHeader(ver, { address: src, port: sp }, { address: dst, port: dp });
          for (let n = 0; n < header.length; n++)
            expect(parseProxyHeader(header.subarray(0, n)).state).toBe('more');
          const bad = Buffer.from(header);
          bad[where % bad.length] = value;
          wellFormed(bad);
        },
      ),
      { numRuns: 500 },
    );
  });

  it('oversized and truncated headers never pass', () => {
    expect(parseProxyHeader(Buffer.from(`PROXY TCP4 ${'1'.repeat(200)}`)).state).toBe('invalid');
    const long = Buffer.alloc(16);
    V2_SIGNATURE.copy(long);
    long[12] = 0x21;
    long[13] = 0x11;
    long.writeUInt16BE(V2_MAX_PAYLOAD + 1, 14);
    expect(parseProxyHeader(long)).toMatchObject({ state: 'invalid' });
    const short = Buffer.from(long);
    short.writeUInt16BE(4, 14); // IPv4 needs 12 bytes
    expect(parseProxyHeader(Buffer.concat([short, Buffer.alloc(4)]))).toMatchObject({ state: 'invalid' });
    expect(parseProxyHeader(Buffer.from('PROXY TCP4 1.2.3.4 5.6.7.8 01 2\r\n')).state).toBe('invalid');
    expect(parseProxyHeader(Buffer.from('PROXY TCP6 1.2.3.4 5.6.7.8 1 2\r\n')).state).toBe('invalid');
    expect(parseProxyHeader(Buffer.from('PROXY UNKNOWN\r\n'))).toMatchObject({
      state: 'done',
      header: { family: 'unknown', length: 15 },
    });
  });
});

/** The canonical text of an address (inet_pton then inet_ntop, through Node). */
const canonical = (a: string) =>
  isIP(a) === 6 ? new SocketAddress({ address: a, family: 'ipv6' }).address : a;
