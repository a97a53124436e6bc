// echo-client ws:// and wss://: against echo-server --ws, against servers that are not ours
// (a `ws` WebSocketServer made to misbehave, a raw TCP listener) and the one line and exit
// code for each way an upgrade or a WebSocket fails.
import { once } from 'node:events';
import net from 'node:net';
import { describe, expect, it, onTestFinished } from 'vitest';
import { WebSocketServer } from 'ws';
import { echoServer, hasCommand, onPty, runEchoClient, spawnServer } from './helpers.js';

/** A `ws` server on a free loopback port; `onConnection` decides what it does. */
async function wsPeer(onConnection: (ws: import('ws').WebSocket) => void, opts = {}) {
  const wss = new WebSocketServer({ port: 0, host: '127.0.0.1', ...opts });
  wss.on('connection', onConnection);
  await once(wss, 'listening');
  onTestFinished(
    () =>
      new Promise<void>((r) => {
        for (const c of wss.clients) c.terminate();
        wss.close(() => r());
      }),
  );
  return (wss.address() as net.AddressInfo).port;
}

/** A raw TCP listener: `onSocket` says what it does with each connection. */
async function rawPeer(onSocket: (s: net.Socket) => void) {
  const srv = net.createServer((s) => {
    s.on('error', () => {});
    onSocket(s);
  });
  srv.listen(0, '127.0.0.1');
  await once(srv, 'listening');
  onTestFinished(
    () =>
      new Promise<void>((r) => {
        srv.close(() => r());
      }),
  );
  return (srv.address() as net.AddressInfo).port;
}

const lines = (err: string) => err.trim().split('\n').filter(Boolean);

describe('echo-client against echo-server --ws', () => {
  it('--message, --count, piped binary and --text lines come back exact', async () => {
    const srv = await echoServer({ app: 'ws', ws: { path: '/echo' } });
    const url = `ws://127.0.0.1:${srv.address.port}/echo`;
    let r = await runEchoClient([url, '-m', 'grüß dich']);
    expect([r.code, r.out.toString()]).toEqual([0, 'grüß dich\n']);
    r = await runEchoClient([url, '-m', 'x', '--count', '3']);
    expect(r.code).toBe(0);
    expect(r.out.toString()).toMatch(/seq=3 time=[\d.]+ ms\n3 sent, 3 echoed; rtt/);
    const bin = Buffer.alloc(300_000);
    for (let i = 0; i < bin.length; i++) bin[i] = (i * 7919) & 0xff;
    r = await runEchoClient([url], bin);
    expect(r.code).toBe(0);
    expect(r.out.equals(bin)).toBe(true);
    expect(r.err).toMatch(/300000 bytes sent in \d+ messages?, all came back identical/);
    r = await runEchoClient([url, '--text'], 'one\ntwo\n\nfour\n');
    expect([r.code, r.out.toString()]).toEqual([0, 'one\ntwo\n\nfour\n']);
    expect(r.err).toMatch(/in 4 messages/);
  });

  it('wss:// with the TLS flags the client already has: --fingerprint, --insecure; untrusted refused', async () => {
    const srv = await spawnServer(['--ws', '--tls']);
    const fp = (await srv.waitStderr(/--fingerprint ([0-9A-F:]+)/))[1]!;
    const url = `wss://127.0.0.1:${srv.port}/`;
    let r = await runEchoClient([url, '--fingerprint', fp, '-m', 'secure']);
    expect([r.code, r.out.toString()]).toEqual([0, 'secure\n']);
    r = await runEchoClient([url, '--insecure', '-m', 'x']);
    expect(r.code).toBe(0);
    r = await runEchoClient([url, '-m', 'x']);
    expect(r.code).toBe(1); // self-signed, not trusted
    expect(lines(r.err).at(-1)).toMatch(/certificate/i);
  });

  it('refuses flags that mean nothing with a URL, naming both', async () => {
    let r = await runEchoClient(['ws://127.0.0.1:1/', '--udp', '-m', 'x']);
    expect([r.code, r.err]).toEqual([2, expect.stringMatching(/--udp.*ws:\/\/ URL/)]);
    r = await runEchoClient(['ws://127.0.0.1:1/', '--tls', '-m', 'x']);
    expect([r.code, r.err]).toEqual([2, expect.stringMatching(/--tls.*wss:\/\//)]);
    r = await runEchoClient(['127.0.0.1', '1', '--text']);
    expect([r.code, r.err]).toEqual([2, expect.stringMatching(/--text.*needs a ws/)]);
    r = await runEchoClient(['ftp://127.0.0.1/', '-m', 'x']);
    expect(r.code).toBe(2);
  });
});

describe('echo-client explains each way a WebSocket fails (exit 1, one line)', () => {
  it('404, 403 and 426 on the upgrade', async () => {
    const srv = await echoServer({ app: 'ws', ws: { path: '/echo' } });
    let r = await runEchoClient([`ws://127.0.0.1:${srv.address.port}/nope`, '-m', 'x']);
    expect(r.code).toBe(1);
    expect(lines(r.err)).toEqual([expect.stringMatching(/HTTP 404 Not Found — no WebSocket at this path/)]);
    const p403 = await rawPeer((s) =>
      s.once('data', () => s.end('HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\nConnection: close\r\n\r\n')),
    );
    r = await runEchoClient([`ws://127.0.0.1:${p403}/`, '-m', 'x']);
    expect(r.code).toBe(1);
    expect(lines(r.err)).toEqual([
      expect.stringMatching(/HTTP 403 Forbidden — the server refused this client/),
    ]);
    const p = await rawPeer((s) =>
      s.once('data', () =>
        s.end(
          'HTTP/1.1 426 Upgrade Required\r\nContent-Length: 12\r\nConnection: close\r\n\r\nuse h2 here\n',
        ),
      ),
    );
    r = await runEchoClient([`ws://127.0.0.1:${p}/`, '-m', 'x']);
    expect(r.code).toBe(1);
    expect(lines(r.err)).toEqual([
      expect.stringMatching(/HTTP 426 Upgrade Required — .*the server said: "use h2 here"/),
    ]);
  });

  it('a server that is not a WebSocket server: a TCP echo, and one that never answers (--timeout)', async () => {
    const tcp = await echoServer();
    let r = await runEchoClient([`ws://127.0.0.1:${tcp.address.port}/`, '-m', 'x']);
    expect(r.code).toBe(1);
    expect(lines(r.err)).toEqual([expect.stringMatching(/did not answer in HTTP .*not a WebSocket server/)]);
    const silent = await rawPeer((s) => s.resume());
    const t0 = Date.now();
    r = await runEchoClient([`ws://127.0.0.1:${silent}/`, '-m', 'x', '--timeout', '500ms']);
    expect(r.code).toBe(1);
    expect(Date.now() - t0).toBeLessThan(15_000);
    expect(lines(r.err)).toEqual([expect.stringMatching(/no answer to the WebSocket upgrade within 500ms/)]);
  });

  it('close codes 1002, 1006, 1009 and 1011', async () => {
    // 1002: a frame with a reserved opcode after the upgrade
    const p1002 = await wsPeer((ws) =>
      ws.once('message', () =>
        (ws as unknown as { _socket: net.Socket })._socket.write(Buffer.from([0x83, 0])),
      ),
    );
    let r = await runEchoClient([`ws://127.0.0.1:${p1002}/`, '-m', 'x']);
    expect(r.code).toBe(1);
    expect(lines(r.err)).toEqual([expect.stringMatching(/broke the WebSocket protocol .*1002/)]);
    // 1006: the TCP connection cut without a close frame
    const p1006 = await wsPeer((ws) => ws.once('message', () => ws.terminate()));
    r = await runEchoClient([`ws://127.0.0.1:${p1006}/`, '-m', 'x']);
    expect(r.code).toBe(1);
    expect(lines(r.err)).toEqual([expect.stringMatching(/closed the WebSocket: 1006 \(abnormal closure/)]);
    // 1009: larger than echo-server --ws-max-message
    const small = await echoServer({ app: 'ws', ws: { maxMessage: 100 } });
    r = await runEchoClient([`ws://127.0.0.1:${small.address.port}/`, '-m', 'y'.repeat(200)]);
    expect(r.code).toBe(1);
    expect(lines(r.err)).toEqual([expect.stringMatching(/1009 \(message too big\).*--ws-max-message/)]);
    // 1011: the server's own error
    const p1011 = await wsPeer((ws) => ws.once('message', () => ws.close(1011, 'oops')));
    r = await runEchoClient([`ws://127.0.0.1:${p1011}/`, '-m', 'x']);
    expect(r.code).toBe(1);
    expect(lines(r.err)).toEqual([expect.stringMatching(/1011 \(internal error on the server\) "oops"/)]);
  });

  it('talks to a plain `ws` echo server nobody here wrote', async () => {
    const port = await wsPeer((ws) => ws.on('message', (m, b) => ws.send(m, { binary: b })));
    const r = await runEchoClient([`ws://127.0.0.1:${port}/`, '-m', 'hello', '--count', '2']);
    expect(r.code).toBe(0);
    expect(r.out.toString()).toMatch(/2 sent, 2 echoed/);
  });
});

const hasScript = hasCommand('script', '--version');

describe.skipIf(!hasScript)('echo-client ws:// on a terminal', () => {
  it('shows each echo, Q quits with 0; Ctrl-C exits 130', async () => {
    const srv = await echoServer({ app: 'ws' });
    const url = `ws://127.0.0.1:${srv.address.port}/`;
    let t = onPty('echo-client', [url]);
    await t.waitFor(/Input message \(Q to quit\): /);
    t.type('héllo wörld\r');
    await t.waitFor(/from server: héllo wörld/);
    t.type('Q\r');
    expect(await t.exit).toBe(0);
    t = onPty('echo-client', [url]);
    await t.waitFor(/Input message \(Q to quit\): /);
    t.type('\x03');
    expect(await t.exit).toBe(130);
  });

  it('a close from the server ends the prompt with one explained line (exit 1)', async () => {
    const port = await wsPeer((ws) => ws.once('message', () => ws.close(1011, 'oops')));
    const t = onPty('echo-client', [`ws://127.0.0.1:${port}/`]);
    await t.waitFor(/Input message \(Q to quit\): /);
    t.type('hi\r');
    expect(await t.exit).toBe(1);
    expect(t.out()).toMatch(/echo-client: .*1011 \(internal error on the server\) "oops"/);
  });
});
