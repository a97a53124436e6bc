// Property tests (fast-check) of PROXY headers over real sockets: from a peer outside
// proxyFrom no header is ever believed (nothing is echoed, nothing names the client); from a
// trusted proxy a valid header is believed exactly and an invalid one refused; the server
// never crashes.
import net from 'node:net';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { parseCidr } from '../src/core/access.js';
import { formatAddress } from '../src/core/parse.js';
import { buildProxyHeader, parseProxyHeader, V2_SIGNATURE } from '../src/core/proxy-protocol.js';
import type { ConnectionRecord } from '../src/core/records.js';
import { echoServer } from './helpers.js';

const port = fc.integer({ min: 1, max: 65535 });
const v4 = fc.ipV4();
const v6 = fc.ipV6().map((a) => a.toLowerCase());
const bytes = (max = 200) => fc.uint8Array({ maxLength: max }).map((a) => Buffer.from(a));

/** valid headers, headers with bytes changed, and garbage that starts like one */
const header = fc.oneof(
  fc
    .tuple(fc.constantFrom(1 as const, 2 as const), fc.oneof(fc.tuple(v4, v4), fc.tuple(v6, v6)), port, port)
    .map(([ver, [src, dst], sp, dp]) =>
      buildProxyHeader(ver, { address: src, port: sp }, { address: dst, port: dp }),
    ),
  fc
    .tuple(fc.constantFrom(1 as const, 2 as const), v4, port, fc.nat(), fc.integer({ min: 0, max: 255 }))
    .map(([ver, src, sp, at, b]) => {
      const h = Buffer.from(
        buildProxyHeader(ver, { address: src, port: sp }, { address: '127.0.0.1', port: 7 }),
      );
      h[at % h.length] = b;
      return h;
    }),
  bytes(120).map((b) => Buffer.concat([Buffer.from('PROXY '), b])),
  bytes(60).map((b) => Buffer.concat([V2_SIGNATURE, b])),
  bytes(),
);
const payload = fc.uint8Array({ minLength: 1, maxLength: 64 }).map((a) => Buffer.from(a));

/** Send header + payload from `from`, shut down writing; resolve with what came back before the server's FIN. */
function send(srvPort: number, from: string, bytes: Buffer): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const s = net.connect({ port: srvPort, host: '127.0.0.1', localAddress: from, allowHalfOpen: true });
    const got: Buffer[] = [];
    s.on('data', (c: Buffer) => got.push(c));
    s.once('end', () => {
      s.end();
      resolve(Buffer.concat(got));
    });
    s.once('error', reject); // a refusal is a FIN too: a reset would fail the property
    s.once('connect', () => s.end(bytes));
  });
}

describe('PROXY headers over sockets, for any header', () => {
  it('from an untrusted peer: never believed, never echoed; from the trusted proxy: valid ones believed exactly, the rest refused', async () => {
    const closed: ConnectionRecord[] = [];
    const srv = await echoServer({
      proxyProtocol: true,
      proxyFrom: [parseCidr('--proxy-from', '127.0.0.2')],
      proxyTimeoutMs: 5000,
      onConnectionClosed: (r) => closed.push(r),
    });
    const p = srv.address.port;
    let untrusted = 0;
    await fc.assert(
      fc.asyncProperty(header, payload, fc.boolean(), async (h, data, trusted) => {
        const before = closed.length;
        const refusedBefore = srv.stats().refused;
        const back = await send(p, trusted ? '127.0.0.2' : '127.0.0.1', Buffer.concat([h, data]));
        const r = parseProxyHeader(Buffer.concat([h, data]));
        if (!trusted) {
          untrusted++;
          expect(back.length).toBe(0);
          expect(srv.stats().refused).toBe(refusedBefore + 1);
          expect(closed.length).toBe(before);
          return;
        }
        if (r.state !== 'done') {
          expect(back.length).toBe(0);
          expect(srv.stats().refused).toBe(refusedBefore + 1);
          return;
        }
        const rest = Buffer.concat([h, data]).subarray(r.header.length);
        expect(back.equals(rest)).toBe(true);
        // the close record comes as the socket closes, right after our FIN reached it
        await new Promise<void>((resolve) => {
          const check = () => (closed.length > before ? resolve() : setImmediate(check));
          check();
        });
        const peer = closed[closed.length - 1]!.peer;
        const src = r.header.source;
        const named =
          r.header.command === 'proxy' &&
          src?.port &&
          (r.header.family === 'tcp4' || r.header.family === 'tcp6');
        if (named)
          expect(peer).toBe(`${formatAddress(src.address, src.port)} via 127.0.0.2:${peer.split(':').pop()}`);
        else expect(peer).toMatch(/^127\.0\.0\.2:\d+$/);
      }),
      { numRuns: 150 },
    );
    expect(untrusted).toBeGreaterThan(0);
    // still serving
    expect(await send(p, '127.0.0.2', Buffer.from('PROXY UNKNOWN\r\nalive'))).toEqual(Buffer.from('alive'));
  }, 120_000);
});
