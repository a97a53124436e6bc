// --mode workers with the descriptor channel (SCM_RIGHTS, batched) and with its fallback,
// Node's IPC hand-over: the same behaviour either way, the fallback chosen when the
// channel's self-test fails or ECHO_HANDOVER=ipc asks for it.
import { once } from 'node:events';
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { fdPassAvailable } from '../src/core/fdpass.js';
import {
  connect,
  jsonLines,
  readAll,
  spawnCli,
  spawnServer,
  streamUntilServerCloses,
  until,
} from './helpers.js';

const linux = process.platform === 'linux';
const can = linux && fdPassAvailable() === undefined;

const CHANNEL = /hand-over: descriptor channel/;
const FALLBACK =
  /hand-over over Node's IPC, one socket per message: the descriptor channel failed its self-test \(([^)]*)\)/;

const PATHS: [string, NodeJS.ProcessEnv][] = [
  ['the descriptor channel', {}],
  ["Node's IPC (ECHO_HANDOVER=ipc)", { ECHO_HANDOVER: 'ipc' }],
];

/** `n` clients at once, each sending its own line and reading it back to the server's FIN. */
async function burst(port: number, n: number, tag: string): Promise<string[]> {
  return Promise.all(
    Array.from({ length: n }, async (_, i) => {
      const s = await connect(port);
      s.end(`${tag} ${i}\n`);
      return String(await readAll(s));
    }),
  );
}

const openFds = (pid: number) => readdirSync(`/proc/${pid}/fd`).length;

describe.skipIf(!can).each(PATHS)('--mode workers, hand-over by %s', (name, env) => {
  it('80 clients at once are each echoed exactly; the totals count every byte; the primary keeps no descriptor', async () => {
    const srv = await spawnServer(['--mode', 'workers', '--workers', '2', '-v'], { env });
    if (name.startsWith('the descriptor')) expect(srv.stderr()).toMatch(CHANNEL);
    else expect(srv.stderr()).not.toMatch(CHANNEL);
    expect(srv.stderr()).not.toMatch(FALLBACK);
    const before = openFds(srv.child.pid!);
    for (let round = 0; round < 3; round++) {
      const got = await burst(srv.port, 80, `r${round}`);
      expect(got).toEqual(Array.from({ length: 80 }, (_, i) => `r${round} ${i}\n`));
    }
    // every copy the primary held was closed once handed over
    await until(() => openFds(srv.child.pid!) <= before, 10_000, "the primary's descriptors back");
    srv.child.kill('SIGTERM');
    expect((await srv.exit).code).toBe(0);
    const totals = jsonLines(srv.stderr()).at(-1)!;
    const bytes = [0, 1, 2].reduce(
      (sum, r) =>
        sum + Array.from({ length: 80 }, (_, i) => `r${r} ${i}\n`.length).reduce((a, b) => a + b, 0),
      0,
    );
    expect(totals).toMatchObject({ connections: 240, refused: 0, bytesIn: bytes, bytesOut: bytes });
  });

  it('SIGTERM while clients stream: every echo is an exact prefix, the workers drain and exit 0', async () => {
    const srv = await spawnServer(['--mode', 'workers', '--workers', '2'], { env });
    let started = 0;
    const streams = Array.from({ length: 6 }, () =>
      streamUntilServerCloses(srv.port, {
        payloadBytes: 4 * 1024 * 1024,
        onEchoing: () => {
          if (++started === 6) srv.child.kill('SIGTERM');
        },
      }),
    );
    const results = await Promise.all(streams);
    for (const r of results) expect(r.exact && r.length > 0).toBe(true);
    expect((await srv.exit).code).toBe(0);
    const totals = jsonLines(srv.stderr()).at(-1)!;
    expect(totals.bytesOut).toBe(totals.bytesIn);
    expect(totals.bytesIn).toBe(results.reduce((s, r) => s + r.length, 0));
  });

  it('--proxy-protocol: the header is read by the primary, the bytes after it reach the worker, the client named', async () => {
    const srv = await spawnServer(['--mode', 'workers', '--workers', '2', '--proxy-protocol', '-v'], { env });
    const replies = await Promise.all(
      Array.from({ length: 6 }, async (_, i) => {
        const s = await connect(srv.port);
        // header and payload in one write: the primary reads both, the payload travels as `head`
        s.end(`PROXY TCP4 192.0.2.${i + 1} 127.0.0.1 4000${i} 7\r\npayload ${i}`);
        return String(await readAll(s));
      }),
    );
    expect(replies).toEqual(Array.from({ length: 6 }, (_, i) => `payload ${i}`));
    srv.child.kill('SIGTERM');
    expect((await srv.exit).code).toBe(0);
    const peers = jsonLines(srv.stderr())
      .filter((l) => l.msg?.startsWith('closed '))
      .map((l) => l.peer);
    for (let i = 0; i < 6; i++)
      expect(peers.some((p) => p?.startsWith(`192.0.2.${i + 1}:4000${i} via`))).toBe(true);
  });

  it('--unix: Unix-domain clients are handed over too, named by their credentials', async (ctx) => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'handover-'));
    ctx.onTestFinished(() => rmSync(dir, { recursive: true, force: true }));
    const sock = path.join(dir, 'echo.sock');
    const srv = spawnCli(
      'echo-server',
      ['--unix', sock, '--log-format', 'json', '--mode', 'workers', '--workers', '2'],
      {
        env,
      },
    );
    await srv.waitStderr(/listening on/);
    const replies = await Promise.all(
      [0, 1, 2, 3].map(async (i) => {
        const s = net.connect({ path: sock, allowHalfOpen: true });
        await once(s, 'connect');
        s.end(`unix ${i}`);
        return String(await readAll(s));
      }),
    );
    expect(replies).toEqual([0, 1, 2, 3].map((i) => `unix ${i}`));
    srv.child.kill('SIGTERM');
    expect((await srv.exit).code).toBe(0);
    const closed = jsonLines(srv.stderr()).filter((l) => l.msg?.startsWith('closed unix pid'));
    expect(closed).toHaveLength(4);
    expect(jsonLines(srv.stderr()).at(-1)).toMatchObject({ connections: 4, bytesIn: 24, bytesOut: 24 });
  });

  it('--max-connections 3: the fourth held client is refused, the three held are echoed', async () => {
    const srv = await spawnServer(['--mode', 'workers', '--workers', '2', '--max-connections', '3'], { env });
    const held = await Promise.all([0, 1, 2].map(() => connect(srv.port)));
    for (const [i, h] of held.entries()) h.write(`held ${i}`);
    for (const [i, h] of held.entries()) {
      const first = await new Promise<string>((r) => h.once('data', (d) => r(String(d))));
      expect(first).toBe(`held ${i}`);
    }
    const fourth = await connect(srv.port);
    fourth.on('error', () => {});
    fourth.end('four');
    expect(String(await readAll(fourth).catch(() => Buffer.alloc(0)))).toBe('');
    for (const h of held) h.end();
    srv.child.kill('SIGTERM');
    expect((await srv.exit).code).toBe(0);
    expect(jsonLines(srv.stderr()).at(-1)).toMatchObject({ connections: 3, refused: 1 });
  });
});

describe.skipIf(!can)('the descriptor channel self-test chooses Node IPC when it fails', () => {
  it.each([
    ['broken', /ECONNRESET|closed without the echo|bytes came back/],
    ['silent', /no echo within \d+ ms/],
  ])('ECHO_HANDOVER=%s: a warning says why, and every client is still echoed', async (broken, why) => {
    const srv = await spawnServer(['--mode', 'workers', '--workers', '2', '-v'], {
      env: { ECHO_HANDOVER: broken },
    });
    const m = srv.stderr().match(FALLBACK);
    expect(m?.[1]).toMatch(why);
    expect(srv.stderr()).not.toMatch(CHANNEL);
    const got = await burst(srv.port, 20, 'fallback');
    expect(got).toEqual(Array.from({ length: 20 }, (_, i) => `fallback ${i}\n`));
    srv.child.kill('SIGTERM');
    expect((await srv.exit).code).toBe(0);
    expect(jsonLines(srv.stderr()).at(-1)).toMatchObject({ connections: 20, refused: 0 });
  });
});

describe.skipIf(!can)('the descriptor channel when the worker does not read it', () => {
  it('a stopped worker: hand-overs wait in the primary (EAGAIN) without loss, and every client is echoed once it runs', async () => {
    const srv = await spawnServer(['--mode', 'workers', '--workers', '1', '-v']);
    const [, pid] = (await srv.waitStderr(/1 worker: (\d+)/)).map(Number);
    expect(srv.stderr()).toMatch(CHANNEL);
    process.kill(pid!, 'SIGSTOP');
    try {
      // one after another, so each is handed over in a message of its own: more messages than
      // the stopped worker's socket queues (net.unix.max_dgram_qlen, 10 by default)
      const clients = [];
      for (let i = 0; i < 40; i++) {
        const c = await connect(srv.port);
        c.end(`stopped ${i}\n`);
        clients.push(c);
      }
      const echoes = clients.map((c) => readAll(c).then(String));
      await until(() => srv.stderr().split('serves 127.0.0.1').length > 10, 10_000, 'ten hand-overs sent');
      process.kill(pid!, 'SIGCONT');
      expect(await Promise.all(echoes)).toEqual(clients.map((_, i) => `stopped ${i}\n`));
    } finally {
      process.kill(pid!, 'SIGCONT');
    }
    srv.child.kill('SIGTERM');
    expect((await srv.exit).code).toBe(0);
    expect(jsonLines(srv.stderr()).at(-1)).toMatchObject({ connections: 40, refused: 0 });
  });

  it('a worker killed with sockets in flight: their clients are closed, their slots freed; the replacement serves', async () => {
    const srv = await spawnServer(['--mode', 'workers', '--workers', '1', '--max-connections', '4', '-v']);
    const [, pid] = (await srv.waitStderr(/1 worker: (\d+)/)).map(Number);
    process.kill(pid!, 'SIGSTOP');
    const stuck = await Promise.all([0, 1, 2, 3].map(() => connect(srv.port)));
    for (const s of stuck) {
      s.on('error', () => {});
      s.write('never read');
    }
    const over = stuck.map((s) => new Promise<void>((r) => s.once('close', () => r())));
    // all four sent to the stopped worker: in flight in its socket, read by nobody
    await until(() => srv.stderr().split(`worker ${pid} serves`).length > 4, 10_000, 'four hand-overs sent');
    process.kill(pid!, 'SIGKILL');
    await Promise.all(over); // the kernel closed what the dead worker's socket held
    await srv.waitStderr(new RegExp(`worker (\\d+) replaced ${pid}`));
    // the four slots are free again: --max-connections 4 admits four more, each echoed
    const got = await burst(srv.port, 4, 'after');
    expect(got).toEqual([0, 1, 2, 3].map((i) => `after ${i}\n`));
    srv.child.kill('SIGTERM');
    expect((await srv.exit).code).toBe(0);
    const totals = jsonLines(srv.stderr()).at(-1)!;
    expect(totals).toMatchObject({ connections: 8, refused: 0 });
  });
});
