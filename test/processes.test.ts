// --mode workers and --mode fork: real processes, checked by pid.
import { once } from 'node:events';
import { describe, expect, it } from 'vitest';
import { echo } from '../src/index.js';
import {
  alive,
  connect,
  jsonLines,
  readAll,
  readN,
  spawnCli,
  spawnServer,
  streamUntilServerCloses,
  until,
} from './helpers.js';

/** Wait (bounded) for processes to be gone: exit is not an event we can subscribe to from here. */
function gone(pids: number[], timeoutMs = 10_000): Promise<boolean> {
  return until(() => !pids.some(alive), timeoutMs, 'the processes gone').then(
    () => true,
    () => false,
  );
}

const closedLines = (stderr: string) => jsonLines(stderr).filter((l) => l.msg?.startsWith('closed '));

describe('--mode workers', () => {
  it('connections are served by more than one worker pid', async () => {
    const srv = await spawnServer(['--mode', 'workers', '--workers', '2']);
    for (let i = 0; i < 10; i++)
      expect((await echo({ port: srv.port, message: `m${i}` })).reply.toString()).toBe(`m${i}`);
    srv.child.kill('SIGTERM');
    expect((await srv.exit).code).toBe(0);
    const pids = new Set(closedLines(srv.stderr()).map((l) => l.worker));
    expect(pids.size).toBe(2);
    expect(pids.has(srv.child.pid)).toBe(false);
    expect(jsonLines(srv.stderr()).at(-1)).toMatchObject({ connections: 10, bytesIn: 20, bytesOut: 20 });
  });

  it('a worker killed with SIGKILL is replaced; the port keeps serving', async () => {
    const srv = await spawnServer(['--mode', 'workers', '--workers', '2']);
    const [, a, b] = (await srv.waitStderr(/2 workers: (\d+), (\d+)/)).map(Number);
    // a connection held open on each worker, to see that only the killed one is lost
    const held = await Promise.all([connect(srv.port), connect(srv.port)]);
    for (const [i, h] of held.entries()) {
      h.write(`held ${i}`);
      await readN(h, 6);
    }
    // listen for each held connection's fate before the kill
    const fates = held.map(
      (h) =>
        new Promise<string>((resolve) => {
          h.once('error', (e: NodeJS.ErrnoException) => resolve(e.code ?? 'error'));
          h.once('end', () => resolve('end'));
          h.on('data', (d: Buffer) => {
            if (d.toString() === 'again') resolve('again');
          });
        }),
    );
    process.kill(a!, 'SIGKILL');
    const m = await srv.waitStderr(new RegExp(`worker (\\d+) replaced ${a}`));
    const replacement = Number(m[1]);
    expect(alive(replacement)).toBe(true);
    expect(replacement).not.toBe(b);
    // the survivor's held connection still echoes; the killed worker's one was reset or closed
    for (const h of held) if (!h.destroyed) h.write('again', () => {});
    const results = await Promise.all(fates);
    expect(results.filter((r) => r === 'again')).toHaveLength(1);
    for (let i = 0; i < 10; i++)
      expect((await echo({ port: srv.port, message: `after ${i}` })).reply.toString()).toBe(`after ${i}`);
    // the survivor's connection is still open at SIGTERM; it closes its side once the server has
    // closed its own, as a client does (else the shutdown waits out --grace, 5 s)
    for (const h of held) h.once('end', () => h.end());
    srv.child.kill('SIGTERM');
    expect((await srv.exit).code).toBe(0);
    expect(await gone([b!, replacement])).toBe(true);
  });

  it('SIGTERM under load loses no echoed byte and leaves no worker behind', async () => {
    const srv = await spawnServer(['--mode', 'workers', '--workers', '2']);
    const [, a, b] = (await srv.waitStderr(/2 workers: (\d+), (\d+)/)).map(Number);
    let started = 0;
    const streams = Array.from({ length: 4 }, () =>
      streamUntilServerCloses(srv.port, {
        onEchoing: () => {
          if (++started === 4) srv.child.kill('SIGTERM');
        },
      }),
    );
    const results = await Promise.all(streams);
    for (const r of results) {
      expect(r.exact).toBe(true);
      expect(r.length).toBeGreaterThan(0);
    }
    expect((await srv.exit).code).toBe(0);
    expect(await gone([a!, b!])).toBe(true);
    // every byte a worker read was echoed back, by the workers' own count
    const totals = jsonLines(srv.stderr()).at(-1)!;
    expect(totals.bytesOut).toBe(totals.bytesIn);
    expect(totals.bytesIn).toBe(results.reduce((s, r) => s + r.length, 0));
  });

  it('--exclusive without --reuse-port: the second worker cannot bind, and says why', async () => {
    const p = spawnCli('echo-server', ['--mode', 'workers', '--workers', '2', '--exclusive', '--port', '0']);
    expect((await p.exit).code).toBe(1);
    expect(p.stderr()).toMatch(/EADDRINUSE .* without --reuse-port only the first can bind the port/);
    expect(p.stderr()).not.toMatch(/accept failed/);
  });

  it(`--exclusive --reuse-port: each worker has its own socket, the kernel balances (Node ${process.versions.node})`, async () => {
    const srv = await spawnServer(['--mode', 'workers', '--workers', '2', '--exclusive', '--reuse-port']);
    for (let i = 0; i < 30; i++) await echo({ port: srv.port, message: 'x' });
    srv.child.kill('SIGTERM');
    expect((await srv.exit).code).toBe(0);
    expect(new Set(closedLines(srv.stderr()).map((l) => l.worker)).size).toBe(2);
  });
});

describe('--mode fork', () => {
  it('each client gets its own child process, gone after the client leaves', async () => {
    const srv = await spawnServer(['--mode', 'fork']);
    for (let i = 0; i < 3; i++)
      expect((await echo({ port: srv.port, message: `f${i}` })).reply.toString()).toBe(`f${i}`);
    await srv.waitStderr(/("msg":"closed [\s\S]*?){3}/);
    const pids = closedLines(srv.stderr()).map((l) => l.child as number);
    expect(new Set(pids).size).toBe(3);
    expect(pids).not.toContain(srv.child.pid);
    expect(await gone(pids)).toBe(true);
    srv.child.kill('SIGTERM');
    expect((await srv.exit).code).toBe(0);
  });

  it('--max-children: a client beyond the limit waits until a child is free', async () => {
    const srv = await spawnServer(['--mode', 'fork', '--max-children', '1']);
    const a = await connect(srv.port);
    a.write('A');
    expect((await readN(a, 1)).toString()).toBe('A');
    const b = await connect(srv.port);
    let aClosed = false;
    const bEcho = new Promise<boolean>((resolve) => b.once('data', () => resolve(aClosed)));
    b.write('B');
    await srv.waitStderr(/busy \(--max-children 1\)/);
    a.end();
    await once(a, 'close');
    aClosed = true;
    expect(await bEcho).toBe(true);
    b.end();
    await readAll(b);
    srv.child.kill('SIGTERM');
    expect((await srv.exit).code).toBe(0);
  });

  it('SIGTERM under load loses no echoed byte and leaves no child behind', async () => {
    const srv = await spawnServer(['--mode', 'fork']);
    let started = 0;
    const streams = Array.from({ length: 3 }, () =>
      streamUntilServerCloses(srv.port, {
        onEchoing: () => {
          if (++started === 3) srv.child.kill('SIGTERM');
        },
      }),
    );
    const results = await Promise.all(streams);
    for (const r of results) expect(r.exact).toBe(true);
    expect((await srv.exit).code).toBe(0);
    const lines = closedLines(srv.stderr());
    expect(lines).toHaveLength(3);
    expect(await gone(lines.map((l) => l.child))).toBe(true);
    for (const l of lines) expect(l.bytesOut).toBe(l.bytesIn);
    const pidsInLog = jsonLines(srv.stderr()).map((l) => l.pid as number);
    expect(await gone(pidsInLog.filter((p) => p !== srv.child.pid))).toBe(true);
  });
});
