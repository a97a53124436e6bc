// echo-client bench --ws: ping-pong, open loop and connect cycles over WebSocket, every echo
// checked (a peer that alters one byte is caught).
import { once } from 'node:events';
import type net from 'node:net';
import { describe, expect, it, onTestFinished } from 'vitest';
import { WebSocketServer } from 'ws';
import { echoServer, runEchoClient } from './helpers.js';

async function bench(port: number, args: string[]) {
  const r = await runEchoClient([
    'bench',
    '--ws',
    '/',
    '--json',
    '-d',
    '1s',
    '--warmup',
    '0',
    ...args,
    '127.0.0.1',
    String(port),
  ]);
  const out = r.out.toString().trim();
  return { code: r.code, err: r.err, result: out ? JSON.parse(out) : undefined };
}

describe('echo-client bench --ws', () => {
  it('ping-pong, --rate and --mode connect against echo-server --ws: counted, every byte matched', async () => {
    const srv = await echoServer({ app: 'ws' });
    const port = srv.address.port;
    let r = await bench(port, ['-c', '2', '--requests', '200']);
    expect(r.code).toBe(0);
    expect(r.result).toMatchObject({ mode: 'pingpong', count: 200, mismatches: 0, errors: {} });
    r = await bench(port, ['-c', '1', '--rate', '100']);
    expect(r.result.count).toBeGreaterThan(20);
    expect(r.result.mismatches).toBe(0);
    r = await bench(port, ['-c', '2', '--mode', 'connect', '--requests', '20']);
    expect(r.result).toMatchObject({ mode: 'connect', count: 20, mismatches: 0, errors: {} });
    // the server saw WebSocket messages: one per round trip at least
    expect(srv.stats().messages?.messagesIn ?? 0).toBeGreaterThanOrEqual(220);
  });

  it('counts a peer whose echo differs as a mismatch', async () => {
    const wss = new WebSocketServer({ port: 0, host: '127.0.0.1' });
    wss.on('connection', (ws) =>
      ws.on('message', (m: Buffer) => {
        const b = Buffer.from(m);
        b[0]! ^= 1;
        ws.send(b, { binary: true });
      }),
    );
    await once(wss, 'listening');
    onTestFinished(
      () =>
        new Promise<void>((res) => {
          for (const c of wss.clients) c.terminate();
          wss.close(() => res());
        }),
    );
    const r = await bench((wss.address() as net.AddressInfo).port, ['-c', '1', '--requests', '10']);
    expect(r.result, r.err).toBeDefined();
    expect(r.result.mismatches).toBeGreaterThanOrEqual(1);
  });

  it('refuses --ws with --udp and --mode stream', async () => {
    let r = await runEchoClient(['bench', '--ws', '--udp']);
    expect([r.code, r.err]).toEqual([2, expect.stringMatching(/--ws.*--udp/)]);
    r = await runEchoClient(['bench', '--ws', '--mode', 'stream']);
    expect([r.code, r.err]).toEqual([2, expect.stringMatching(/--ws.*--mode stream/)]);
  });
});
