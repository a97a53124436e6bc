// The processes of the workers and fork modes: what a child can be seen holding (/proc),
// shutdown while connections are still being handed over, signals during start-up, and the
// file-descriptor limit in the workers mode.
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import tls from 'node:tls';
import { afterAll, beforeAll, describe, expect, it, onTestFinished } from 'vitest';
import { selfSignedTls } from '../src/core/tls.js';
import { alive, jsonLines, SERVER_MODES, spawnCli, spawnServer, until } from './helpers.js';

const linux = process.platform === 'linux';
const hasPrlimit = spawnSync('prlimit', ['--version'], { stdio: 'ignore' }).status === 0;
if (!hasPrlimit) console.warn('skipped the fd-limit tests: prlimit (util-linux) is not installed');

/** The direct children of a process (Linux: /proc/PID/task/TID/children). */
function childrenOf(pid: number): number[] {
  const out: number[] = [];
  try {
    for (const tid of readdirSync(`/proc/${pid}/task`)) {
      const list = readFileSync(`/proc/${pid}/task/${tid}/children`, 'utf8').trim();
      if (list) out.push(...list.split(/\s+/).map(Number));
    }
  } catch {} // gone meanwhile
  return out;
}

/** A process and all its descendants, now. */
function tree(pid: number): number[] {
  const all = [pid];
  for (let i = 0; i < all.length; i++) all.push(...childrenOf(all[i]!));
  return all;
}

const procFile = (pid: number, file: string) => {
  try {
    return readFileSync(`/proc/${pid}/${file}`).toString('latin1');
  } catch {
    return '';
  }
};

/** One message over TLS (the test's own self-signed server), its echo as text. */
async function tlsEcho(port: number, message: string): Promise<string> {
  const c = tls.connect({ port, host: '127.0.0.1', rejectUnauthorized: false });
  try {
    await new Promise<void>((resolve, reject) => {
      c.once('secureConnect', () => resolve());
      c.once('error', reject);
    });
    c.write(message);
    let back = '';
    for await (const d of c) {
      back += d;
      if (back.length >= message.length) break;
    }
    return back;
  } finally {
    c.destroy();
  }
}

/** Connections waiting in a loopback listener's accept queue (`ss`: Recv-Q of a listening socket). */
function acceptQueue(port: number): number | undefined {
  const out = spawnSync('ss', ['-ltnH', `sport = :${port}`], { encoding: 'utf8' }).stdout.trim();
  const q = /^LISTEN\s+(\d+)/.exec(out);
  return q ? Number(q[1]) : undefined;
}

const totalsLine = (stderr: string) => jsonLines(stderr).find((l) => l.msg?.startsWith('totals: '));

describe.skipIf(!linux)('the TLS private key is in no process environment, argv or log', () => {
  let dir: string;
  let files: { cert: string; key: string };
  let keyLines: string[];
  beforeAll(async () => {
    dir = mkdtempSync(path.join(tmpdir(), 'echo-trust-children-'));
    const t = await selfSignedTls('127.0.0.1');
    files = { cert: path.join(dir, 'c.pem'), key: path.join(dir, 'k.pem') };
    writeFileSync(files.cert, t.cert);
    writeFileSync(files.key, t.key, { mode: 0o600 });
    // every line of the key's base64 body: any of them found anywhere is a leak
    keyLines = t.key
      .split('\n')
      .map((l) => l.trim())
      .filter((l) => l && !l.startsWith('-----'));
    expect(keyLines.length).toBeGreaterThanOrEqual(2);
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  const leaks = (text: string) => keyLines.filter((l) => text.includes(l));

  it.each([
    ['workers', ['--mode', 'workers', '--workers', '2'], 3],
    ['workers --exclusive', ['--mode', 'workers', '--workers', '2', '--exclusive', '--reuse-port'], 3],
    ['fork', ['--mode', 'fork'], 3], // the parent, the child serving the client, the warm spare
  ])(
    '--mode %s: /proc/PID/environ and cmdline of every process hold no part of the key',
    async (_m, args, procs) => {
      const srv = await spawnServer(['--tls', '--cert', files.cert, '--key', files.key, ...args]);
      // a client being served: in fork mode its child exists only then
      const c = tls.connect({ port: srv.port, host: '127.0.0.1', rejectUnauthorized: false });
      onTestFinished(() => void c.destroy());
      c.on('error', () => {});
      await new Promise<void>((resolve) => c.once('secureConnect', () => resolve()));
      c.write('ping');
      await new Promise<void>((resolve) => c.once('data', () => resolve())); // the config reached the child
      await until(() => tree(srv.child.pid!).length >= procs, 10_000, `${procs} processes`);
      const pids = tree(srv.child.pid!);
      const check = (list: number[]) => {
        for (const pid of list) {
          const environ = procFile(pid, 'environ');
          expect(environ.length, `environ of ${pid}`).toBeGreaterThan(0); // readable: the check means something
          expect(leaks(environ), `environ of ${pid}`).toEqual([]);
          expect(leaks(procFile(pid, 'cmdline')), `cmdline of ${pid}`).toEqual([]);
        }
      };
      check(pids);
      if (args.includes('workers')) {
        // a replacement worker gets its config the same way
        const victim = pids.find((p) => p !== srv.child.pid && alive(p))!;
        process.kill(victim, 'SIGKILL');
        const m = await srv.waitStderr(new RegExp(`worker (\\d+) replaced ${victim}`));
        check([Number(m[1])]);
        expect(await tlsEcho(srv.port, 'again')).toBe('again');
      }
      c.destroy();
      srv.child.kill('SIGTERM');
      expect((await srv.exit).code).toBe(0);
      expect(leaks(srv.stderr() + srv.stdout())).toEqual([]);
    },
  );
});

describe.skipIf(!linux)('--mode fork: SIGTERM while connections are being handed to children', () => {
  it('10 clients that each sent 100 KB: every one gets an exact prefix of its bytes, then FIN; no child died', async () => {
    const srv = await spawnServer(['--mode', 'fork', '--grace', '20s']);
    const n = 10;
    const size = 100 * 1024;
    let written = 0;
    let results!: Promise<{ payload: Buffer; back: Buffer; error?: string }[]>;
    const signalled = new Promise<void>((resolve) => {
      const clients = Array.from({ length: n }, () => {
        const payload = randomBytes(size);
        const s = net.connect({ port: srv.port, host: '127.0.0.1', allowHalfOpen: true });
        onTestFinished(() => void s.destroy());
        const got: Buffer[] = [];
        s.on('data', (d: Buffer) => got.push(d));
        s.write(payload, () => {
          if (++written === n) resolve();
        });
        return new Promise<{ payload: Buffer; back: Buffer; error?: string }>((done) => {
          s.once('end', () => {
            s.end();
            done({ payload, back: Buffer.concat(got) });
          });
          s.once('error', (e: NodeJS.ErrnoException) =>
            done({ payload, back: Buffer.concat(got), error: e.code }),
          );
        });
      });
      results = Promise.all(clients);
    });
    await signalled; // every client's 100 KB is with the kernel
    // and every connection accepted by the server (the listening socket's accept queue is
    // empty); most hand-overs to children are still under way
    await until(() => acceptQueue(srv.port) === 0, 10_000, 'accept queue empty');
    const t0 = Date.now();
    srv.child.kill('SIGTERM');
    const all = await results;
    expect((await srv.exit).code).toBe(0);
    const took = Date.now() - t0;
    for (const r of all) {
      expect(r.error).toBeUndefined();
      expect(r.back.equals(r.payload.subarray(0, r.back.length))).toBe(true);
    }
    const t = totalsLine(srv.stderr())!;
    expect(t.errors).toEqual({});
    expect(t.bytesOut).toBe(all.reduce((sum, r) => sum + r.back.length, 0));
    expect(t.connections + t.refused).toBe(n);
    // everything drained: the exit does not wait out the 20 s grace
    expect(took).toBeLessThan(10_000);
  });
});

describe.skipIf(!linux)('a signal during start-up ends the process and its children', () => {
  const modes: [string, string[]][] = [
    ...SERVER_MODES,
    ['workers --exclusive', ['--mode', 'workers', '--workers', '2', '--exclusive', '--reuse-port']],
  ];
  it.each(modes)('--mode %s: SIGTERM before "listening on"', async (mode, args) => {
    const p = spawnCli('echo-server', ['--port', '0', '--log-format', 'json', '--grace', '3s', ...args]);
    const pid = p.child.pid!;
    const seen = new Set<number>();
    if (mode === 'evented' || mode === 'iterative') {
      p.child.kill('SIGTERM');
    } else {
      // the start-up window of a multi-process mode: its first child exists, nothing listens yet
      await until(() => childrenOf(pid).length > 0, 15_000, 'a child process');
      for (const c of tree(pid)) seen.add(c);
      p.child.kill('SIGTERM');
    }
    const t0 = Date.now();
    const timeout = new Promise<'timeout'>((resolve) => setTimeout(() => resolve('timeout'), 8_000).unref());
    const how = await Promise.race([p.exit, timeout]);
    for (const c of tree(pid)) seen.add(c);
    expect(how, `still running 8 s after SIGTERM:\n${p.stderr()}`).not.toBe('timeout');
    const { code, signal } = how as Awaited<typeof p.exit>;
    // before Node installs its handlers the default action ends it (signal); after, 143 or a drained 0
    expect(signal === 'SIGTERM' || code === 143 || code === 0).toBe(true);
    expect(Date.now() - t0).toBeLessThan(8_000);
    // no orphan: every process of its tree is gone too
    seen.delete(pid);
    await until(() => [...seen].every((c) => !alive(c)), 5_000, `children ${[...seen]} gone`);
    expect(p.stderr()).not.toMatch(/\n\s+at /);
  });
});

describe.skipIf(!linux || !hasPrlimit)('workers at the file-descriptor limit refuse visibly', () => {
  it.each([
    ['workers', ['--mode', 'workers', '--workers', '2']],
    ['workers --exclusive', ['--mode', 'workers', '--workers', '2', '--exclusive', '--reuse-port']],
  ])(
    '--mode %s under prlimit --nofile=64: 200 clients, each served or refused and counted',
    async (_m, args) => {
      const srv = await spawnServer(args, { prefix: ['prlimit', '--nofile=64:64'] });
      const socks: net.Socket[] = [];
      onTestFinished(() => {
        for (const s of socks) s.destroy();
      });
      const fates = Array.from({ length: 200 }, () => {
        const s = net.connect({ port: srv.port, host: '127.0.0.1', allowHalfOpen: true });
        socks.push(s);
        return new Promise<'echoed' | 'closed'>((resolve) => {
          s.on('error', () => resolve('closed'));
          s.once('end', () => resolve('closed'));
          s.once('close', () => resolve('closed'));
          s.once('data', () => resolve('echoed')); // held open after: the descriptors stay in use
          s.write('x');
        });
      });
      const got = await Promise.all(fates);
      const echoed = got.filter((f) => f === 'echoed').length;
      await srv.waitStderr(/the file-descriptor limit \(64\) is nearly reached; raise ulimit -n/);
      for (const s of socks) s.destroy();
      srv.child.kill('SIGTERM');
      expect((await srv.exit).code).toBe(0);
      const t = totalsLine(srv.stderr())!;
      // nobody closed silently: every client was served or refused, and counted as such
      expect(t.refusedBy['fd-limit']).toBeGreaterThan(0);
      expect(t.connections).toBe(echoed);
      expect(t.connections + t.refused).toBe(200);
      expect(echoed).toBeGreaterThan(0);
      expect(srv.stderr()).not.toMatch(/SentHandleNotReceived|\n\s+at /);
      // the refusal is logged once per interval, not once per client
      expect(srv.stderr().match(/nearly reached/g)!.length).toBeLessThan(10);
    },
  );
  it("--mode workers --workers 1 under prlimit --nofile=64: clients one after another stop at the worker's limit, refused and counted", async () => {
    // one at a time: the primary never holds more than one socket; the worker's descriptors run out
    const srv = await spawnServer(['--mode', 'workers', '--workers', '1'], {
      prefix: ['prlimit', '--nofile=64:64'],
    });
    const socks: net.Socket[] = [];
    onTestFinished(() => {
      for (const s of socks) s.destroy();
    });
    let echoed = 0;
    for (let i = 0; i < 70; i++) {
      const s = net.connect({ port: srv.port, host: '127.0.0.1', allowHalfOpen: true });
      socks.push(s);
      const fate = await new Promise<'echoed' | 'closed'>((resolve) => {
        s.on('error', () => resolve('closed'));
        s.once('end', () => resolve('closed'));
        s.once('data', () => resolve('echoed'));
        s.write('x');
      });
      if (fate === 'echoed') echoed++;
    }
    await srv.waitStderr(/the file-descriptor limit \(64\) is nearly reached; raise ulimit -n/);
    for (const s of socks) s.destroy();
    srv.child.kill('SIGTERM');
    expect((await srv.exit).code).toBe(0);
    const t = totalsLine(srv.stderr())!;
    expect(t.connections).toBe(echoed);
    expect(t.refusedBy['fd-limit']).toBe(70 - echoed);
    expect(srv.stderr()).not.toMatch(/SentHandleNotReceived|\n\s+at /);
  });
});
