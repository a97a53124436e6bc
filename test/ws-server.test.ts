// echo-server --ws: the WebSocket echo application, in-process (the library) and through the
// CLI in every mode, checked with the `ws` library as the client.
import { once } from 'node:events';
import net from 'node:net';
import { Writable } from 'node:stream';
import pino from 'pino';
import { describe, expect, it } from 'vitest';
import { WebSocket } from 'ws';
import { parseFault } from '../src/core/faults.js';
import type { EchoServerOptions } from '../src/server/tcp-server.js';
import { echoServer, jsonLines, refusal, SERVER_MODES, spawnServer, until } from './helpers.js';

/** A logger whose lines are collected (JSON objects). */
function captured() {
  const lines: Record<string, any>[] = [];
  const stream = new Writable({
    write(chunk, _enc, cb) {
      for (const l of String(chunk).split('\n')) if (l) lines.push(JSON.parse(l));
      cb();
    },
  });
  return { logger: pino({ level: 'debug' }, stream), lines };
}

async function wsServer(opts: EchoServerOptions = {}) {
  return echoServer({ app: 'ws', ...opts });
}

function open(url: string, opts: ConstructorParameters<typeof WebSocket>[2] = {}, protocols?: string[]) {
  const ws = new WebSocket(url, protocols, opts);
  ws.on('error', () => {});
  return ws;
}

async function opened(ws: WebSocket): Promise<WebSocket> {
  await once(ws, 'open');
  return ws;
}

function nextMessage(ws: WebSocket): Promise<{ data: Buffer; isBinary: boolean }> {
  return new Promise((resolve) =>
    ws.once('message', (data: Buffer, isBinary) => resolve({ data, isBinary })),
  );
}

function closed(ws: WebSocket): Promise<{ code: number; reason: string }> {
  return new Promise((resolve) =>
    ws.once('close', (code, reason) => resolve({ code, reason: reason.toString() })),
  );
}

/** The status line of an upgrade the server refused. */
function refusedStatus(ws: WebSocket): Promise<number> {
  return new Promise((resolve, reject) => {
    ws.once('unexpected-response', (_req, res) => {
      resolve(res.statusCode ?? 0);
      res.resume();
    });
    ws.once('open', () => reject(new Error('upgrade answered')));
  });
}

describe('WebSocket echo in-process', () => {
  it('echoes text as text, binary as binary and a fragmented message whole; ping gets pong', async () => {
    const srv = await wsServer();
    const ws = await opened(open(`ws://127.0.0.1:${srv.address.port}/anything`));
    const text = 'héllo wörld ✓ 🦊';
    ws.send(text);
    const a = await nextMessage(ws);
    expect([a.data.toString('utf8'), a.isBinary]).toEqual([text, false]);
    const bin = Buffer.from([0, 1, 2, 255, 254]);
    ws.send(bin);
    const b = await nextMessage(ws);
    expect([b.data, b.isBinary]).toEqual([bin, true]);
    // one message in three frames
    ws.send('frag', { fin: false });
    ws.send('men', { fin: false });
    ws.send('ted', { fin: true });
    const c = await nextMessage(ws);
    expect(c.data.toString()).toBe('fragmented');
    const pong = once(ws, 'pong');
    ws.ping(Buffer.from('p1'));
    expect(String((await pong)[0])).toBe('p1');
    const done = closed(ws);
    ws.close(4000, 'bye now');
    expect(await done).toEqual({ code: 4000, reason: 'bye now' });
    await until(() => srv.stats().messages?.messagesOut === 3, 5000);
    expect(srv.stats().messages).toEqual({
      messagesIn: 3,
      messagesOut: 3,
      payloadIn: Buffer.byteLength(text) + 5 + 10,
      payloadOut: Buffer.byteLength(text) + 5 + 10,
    });
  });

  it('logs the close code in the close line', async () => {
    const { logger, lines } = captured();
    const srv = await wsServer({ logger });
    const ws = await opened(open(`ws://127.0.0.1:${srv.address.port}/`));
    const done = closed(ws);
    ws.close(1000);
    await done;
    await until(() => lines.some((l) => /^closed /.test(l.msg)), 5000);
    const line = lines.find((l) => /^closed /.test(l.msg))!;
    expect(line.msg).toMatch(/messages in 0, out 0, .*websocket close 1000 \(normal closure\)/);
    expect(line.messages).toEqual({ messagesIn: 0, messagesOut: 0, payloadIn: 0, payloadOut: 0 });
  });

  it('--trace writes one line per message, its payload escaped', async () => {
    const srv = await spawnServer(['--ws', '--trace']);
    const ws = await opened(open(`ws://127.0.0.1:${srv.port}/`));
    ws.send('hello\x1b[2J"\u202e');
    await nextMessage(ws);
    ws.send(Buffer.from([0, 0x41, 0xff]));
    await nextMessage(ws);
    ws.close();
    await srv.waitStderr(/> binary 3 B "\\x00A\\xff"/);
    expect(srv.stderr()).toContain('< text 13 B "hello\\x1b[2J\\"\\u{202e}"');
    expect(srv.stderr()).toContain('> text 13 B "hello\\x1b[2J\\"\\u{202e}"');
    expect(srv.stderr()).not.toContain('\x1b');
  });

  it('a client that leaves without a close frame: the close line says so', async () => {
    const { logger, lines } = captured();
    const srv = await wsServer({ logger });
    const ws = await opened(open(`ws://127.0.0.1:${srv.address.port}/`));
    ws.terminate();
    await until(() => lines.some((l) => /^closed /.test(l.msg)), 5000);
    expect(lines.find((l) => /^closed /.test(l.msg))!.reason).toBe(
      'websocket ended without a close frame (1006)',
    );
  });

  it('--trace hex dumps each message payload under its header line', async () => {
    const srv = await spawnServer(['--ws', '--trace', 'hex']);
    const ws = await opened(open(`ws://127.0.0.1:${srv.port}/`));
    ws.send(Buffer.from('hello, hex'));
    await nextMessage(ws);
    ws.close();
    await srv.waitStderr(
      /> [\d/: .]+ binary 10 B {2}to 127\.0\.0\.1:\d+\n00000000: 6865 6c6c 6f2c 2068 6578/,
    );
  });

  it('closes a message over --ws-max-message with 1009 and says so', async () => {
    const { logger, lines } = captured();
    const srv = await wsServer({ logger, ws: { maxMessage: 1000 } });
    const ws = await opened(open(`ws://127.0.0.1:${srv.address.port}/`));
    ws.send(Buffer.alloc(999));
    expect((await nextMessage(ws)).data.length).toBe(999);
    const done = closed(ws);
    ws.send(Buffer.alloc(1001));
    expect((await done).code).toBe(1009);
    await until(() => lines.some((l) => /^closed /.test(l.msg)), 5000);
    expect(lines.find((l) => /^closed /.test(l.msg))!.msg).toMatch(
      /websocket error 1009 \(message too big\)/,
    );
  });

  it('negotiates permessage-deflate only with compress, and a subprotocol from the list', async () => {
    const plain = await wsServer();
    const a = await opened(open(`ws://127.0.0.1:${plain.address.port}/`, { perMessageDeflate: true }));
    expect(a.extensions).toBe('');
    a.close();
    const srv = await wsServer({ ws: { compress: true, protocols: ['echo.v2', 'echo.v1'] } });
    const b = await opened(
      open(`ws://127.0.0.1:${srv.address.port}/`, { perMessageDeflate: true }, ['chat', 'echo.v1']),
    );
    expect(b.extensions).toMatch(/permessage-deflate/);
    expect(b.protocol).toBe('echo.v1');
    const big = 'abc'.repeat(100_000);
    b.send(big);
    expect((await nextMessage(b)).data.toString()).toBe(big);
    b.close();
  });

  it('refuses other paths (404), foreign origins (403) by default, and answers a plain GET with 426', async () => {
    const srv = await wsServer({ ws: { path: '/echo' } });
    const base = `ws://127.0.0.1:${srv.address.port}`;
    expect(await refusedStatus(open(`${base}/other`))).toBe(404);
    expect(await refusedStatus(open(`${base}/echo`, { origin: 'https://evil.example' }))).toBe(403);
    expect(await refusedStatus(open(`${base}/echo`, { origin: 'null' }))).toBe(403);
    // no Origin (not a browser) and a page served from this machine are served
    (await opened(open(`${base}/echo`))).close();
    (await opened(open(`${base}/echo`, { origin: 'http://localhost:8080' }))).close();
    (await opened(open(`${base}/echo`, { origin: 'http://127.0.0.1:3000' }))).close();
    const res = await fetch(`http://127.0.0.1:${srv.address.port}/echo`);
    expect(res.status).toBe(426);
    const body = await res.text();
    expect(body.trim().split('\n')).toHaveLength(1);
    expect(body).toMatch(/WebSocket echo server.*ws:\/\/127\.0\.0\.1:\d+\/echo/);
  });

  it('--ws-origin: only the listed origins, or any with *', async () => {
    const srv = await wsServer({ ws: { origins: ['https://app.example'] } });
    const base = `ws://127.0.0.1:${srv.address.port}/`;
    (await opened(open(base, { origin: 'https://app.example' }))).close();
    expect(await refusedStatus(open(base, { origin: 'http://localhost:8080' }))).toBe(403);
    const any = await wsServer({ ws: { origins: ['*'] } });
    (await opened(open(`ws://127.0.0.1:${any.address.port}/`, { origin: 'https://evil.example' }))).close();
  });

  it('closes a connection that is not HTTP, logging it once per source', async () => {
    const { logger, lines } = captured();
    const srv = await wsServer({ logger });
    for (let i = 0; i < 2; i++) {
      const s = net.connect(srv.address.port, '127.0.0.1');
      s.on('error', () => {});
      s.write('\x16\x03\x01 not http at all\r\n\r\n');
      s.resume();
      await once(s, 'close');
    }
    await until(() => lines.filter((l) => /^closed /.test(l.msg)).length === 2, 5000);
    const said = lines.filter((l) => /not an HTTP request/.test(l.msg));
    // the same source twice: one line (no other test of this file sends bytes that are not HTTP)
    expect(said).toHaveLength(1);
    expect(
      lines.filter((l) => /^closed /.test(l.msg)).every((l) => /websocket not HTTP/.test(l.reason)),
    ).toBe(true);
  });

  it('applies faults per message: latency delays each echo, close-after ends without a close frame', async () => {
    const srv = await wsServer({
      faults: [parseFault('latency=150ms'), parseFault('close-after=10')],
    });
    const ws = await opened(open(`ws://127.0.0.1:${srv.address.port}/`));
    const t0 = performance.now();
    ws.send('12345');
    expect((await nextMessage(ws)).data.toString()).toBe('12345');
    expect(performance.now() - t0).toBeGreaterThanOrEqual(140);
    const done = closed(ws);
    ws.send('6789012345');
    const m = await nextMessage(ws);
    expect(m.data.toString()).toBe('67890'); // cut at 10 bytes of payload
    expect((await done).code).toBe(1006);
  });

  it('reads a PROXY header before the HTTP upgrade', async () => {
    const { logger, lines } = captured();
    const srv = await wsServer({ logger, proxyProtocol: true });
    const ws = await opened(
      open(`ws://127.0.0.1:${srv.address.port}/`, {
        createConnection: () => {
          const s = net.connect(srv.address.port, '127.0.0.1');
          s.write('PROXY TCP4 198.51.100.7 127.0.0.1 4242 80\r\n');
          return s;
        },
      }),
    );
    ws.send('via proxy');
    expect((await nextMessage(ws)).data.toString()).toBe('via proxy');
    ws.close(1000);
    await until(() => lines.some((l) => /^closed /.test(l.msg)), 5000);
    expect(lines.find((l) => /^closed /.test(l.msg))!.peer).toMatch(
      /^198\.51\.100\.7:4242 via 127\.0\.0\.1:/,
    );
  });

  it('--idle-timeout holds after the upgrade (the library sets the socket timeout to 0)', async () => {
    const { logger, lines } = captured();
    const srv = await wsServer({ logger, idleTimeoutMs: 300 });
    const ws = await opened(open(`ws://127.0.0.1:${srv.address.port}/`));
    const t0 = performance.now();
    expect((await closed(ws)).code).toBe(1006);
    expect(performance.now() - t0).toBeLessThan(10_000);
    await until(() => lines.some((l) => /^closed /.test(l.msg)), 5000);
    expect(lines.find((l) => /^closed /.test(l.msg))!.reason).toBe('idle timeout');
  });

  it('--max-connections: an upgrade beyond the limit is refused before any HTTP', async () => {
    const srv = await wsServer({ maxConnections: 1 });
    const url = `ws://127.0.0.1:${srv.address.port}/`;
    const first = await opened(open(url));
    const second = open(url);
    const outcome = await new Promise<string>((resolve) => {
      second.once('open', () => resolve('open'));
      second.once('error', (e: Error) => resolve(e.message));
    });
    expect(outcome).not.toBe('open');
    expect(srv.stats().refused).toBe(1);
    first.send('still served');
    expect((await nextMessage(first)).data.toString()).toBe('still served');
    first.close();
  });

  it('shutdown says going away (1001) to an open WebSocket', async () => {
    const srv = await wsServer();
    const ws = await opened(open(`ws://127.0.0.1:${srv.address.port}/`));
    const done = closed(ws);
    const totals = srv.close({ graceMs: 5000 });
    expect((await done).code).toBe(1001);
    await totals;
  });
});

describe('echo-server --ws flags', () => {
  it('refuses --ws with --udp, --ws-* without --ws, byte-stream faults and --banner', async () => {
    const server = (argv: string[]) => refusal('echo-server', ['--port', '0', ...argv]);
    let r = await server(['--ws', '--udp']);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/--ws.*--udp/);
    r = await server(['--ws-compress']);
    expect([r.code, r.stderr]).toEqual([2, expect.stringMatching(/--ws-compress.*needs --ws/)]);
    r = await server(['--ws', '--fault', 'bandwidth=1k']);
    expect([r.code, r.stderr]).toEqual([2, expect.stringMatching(/--fault bandwidth.*--ws/)]);
    r = await server(['--ws', '--banner']);
    expect([r.code, r.stderr]).toEqual([2, expect.stringMatching(/--banner.*--ws/)]);
    r = await server(['--ws', 'echo']);
    expect([r.code, r.stderr]).toEqual([2, expect.stringMatching(/--ws "?echo"?: is a path/)]);
    r = await server(['--ws', '--ws-origin', 'evil.example']);
    expect(r.code).toBe(2);
    r = await server(['--ws', '/e', '--ws-max-message', '64k', '--ws-origin', '*', '--ws-protocol', 'a']);
    expect(r.code).toBe(0);
  });
});

describe('echo-server --ws in every mode, over TLS', () => {
  for (const [mode, args] of SERVER_MODES) {
    it(`${mode}: wss:// echoes text and binary, the close code comes back, totals count the messages`, async () => {
      const srv = await spawnServer(['--ws', '/echo', '--tls', ...args]);
      const ws = await opened(
        open(`wss://127.0.0.1:${srv.port}/echo`, { rejectUnauthorized: false, handshakeTimeout: 20_000 }),
      );
      ws.send('grüße');
      expect((await nextMessage(ws)).data.toString()).toBe('grüße');
      const bin = Buffer.alloc(200_000, 7);
      ws.send(bin);
      expect((await nextMessage(ws)).data.equals(bin)).toBe(true);
      const done = closed(ws);
      ws.close(4000, 'done');
      expect(await done).toEqual({ code: 4000, reason: 'done' });
      await srv.waitStderr(/closed [^"]*websocket close 4000/, 20_000);
      srv.child.kill('SIGTERM');
      await srv.exit;
      const totals = jsonLines(srv.stderr()).find((l) => /^totals:/.test(l.msg));
      expect(totals?.messages).toEqual({
        messagesIn: 2,
        messagesOut: 2,
        payloadIn: 200_000 + Buffer.byteLength('grüße'),
        payloadOut: 200_000 + Buffer.byteLength('grüße'),
      });
    });
  }

  it('workers: --fault latency delays each echoed message', async () => {
    const srv = await spawnServer([
      '--ws',
      '--mode',
      'workers',
      '--workers',
      '2',
      '--fault',
      'latency=200ms',
    ]);
    const ws = await opened(open(`ws://127.0.0.1:${srv.port}/`));
    for (const m of ['a', 'b']) {
      const t0 = performance.now();
      ws.send(m);
      expect((await nextMessage(ws)).data.toString()).toBe(m);
      expect(performance.now() - t0).toBeGreaterThanOrEqual(190);
    }
    ws.close();
  });

  it('--metrics counts messages each way (workers)', async () => {
    const srv = await spawnServer(['--ws', '--mode', 'workers', '--workers', '2', '--metrics', '0']);
    const m = await srv.waitStderr(/metrics on http:\/\/([\d.]+:\d+)\/metrics/);
    const ws = await opened(open(`ws://127.0.0.1:${srv.port}/`));
    ws.send('abc');
    await nextMessage(ws);
    const done = closed(ws);
    ws.close();
    await done;
    await srv.waitStderr(/closed .*websocket close/, 20_000);
    await until(
      async () => /echo_ws_messages_total\{[^}]*direction="in"[^}]*\} 1/.test(await scrape(m[1]!)),
      10_000,
    );
    const text = await scrape(m[1]!);
    expect(text).toMatch(/echo_ws_message_bytes_total\{[^}]*direction="out"[^}]*\} 3/);
  });
});

async function scrape(where: string): Promise<string> {
  return (await fetch(`http://${where}/metrics`)).text();
}
