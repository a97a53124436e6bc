// The bench's instruments: start a server process, drive it with our client (`echo-client
// bench --json`, typed as BenchResult) or with the C load generator, read a process tree's RSS,
// time the first echo. Loopback only; every run is bounded in time.

import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { closeSync, existsSync, mkdirSync, openSync, readFileSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import getPort from 'get-port';
import type { BenchResult } from '../src/client/bench.js';

export const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
export const binDir = path.join(root, 'bench', 'bin');
const perfSrc = path.resolve(root, '..', 'shared', 'perf');
export const node = process.execPath;
/** seconds per measured run */
export const SECONDS = Number(process.env.BENCH_SECONDS ?? 3);

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Build the C reference (server, UDP echo, load generator) from ../shared/perf; false if it cannot. */
export function buildC(): boolean {
  if (process.platform !== 'linux' || !existsSync(perfSrc)) return false;
  mkdirSync(binDir, { recursive: true });
  try {
    for (const [out, src, libs] of [
      ['echo_epoll', 'echo_epoll.c', []],
      ['udp_echo', 'udp_echo.c', []],
      ['lg', 'lg.c', ['-lm']],
    ] as [string, string, string[]][]) {
      const dst = path.join(binDir, out);
      if (!existsSync(dst))
        execFileSync('gcc', ['-O2', '-Wall', '-o', dst, path.join(perfSrc, src), ...libs]);
    }
    return true;
  } catch (err) {
    console.error(`bench: could not build the C reference (${(err as Error).message}); running without it`);
    return false;
  }
}

export const freePort = () => getPort({ host: '127.0.0.1' });

export interface Running {
  name: string;
  pid: number;
  port: number;
  stop(): Promise<void>;
}

/** Start a server process on a free port and wait until it accepts (TCP) or a moment (UDP). */
export async function startServer(
  name: string,
  command: (port: number) => [string, string[]],
  udp = false,
  /** a Unix-socket server: wait until this path accepts */
  unixPath?: string,
): Promise<Running> {
  const port = await freePort();
  // the server logs to a file: a pipe would fill while this runner blocks in execFileSync
  mkdirSync(binDir, { recursive: true });
  const log = path.join(binDir, `${name.replace(/\W+/g, '-')}.log`);
  const fd = openSync(log, 'w');
  const [cmd, args] = command(port);
  const child: ChildProcess = spawn(cmd, args, { stdio: ['ignore', 'ignore', fd] });
  closeSync(fd);
  const tail = () => readFileSync(log, 'utf8').slice(-2000);
  if (udp) await sleep(500);
  else {
    const t0 = Date.now();
    while (!(await accepts(port, unixPath))) {
      if (Date.now() - t0 > 10_000) throw new Error(`${name} did not start: ${tail()}`);
      await sleep(50);
    }
  }
  return {
    name,
    pid: child.pid!,
    port,
    async stop() {
      if (child.exitCode !== null || child.signalCode !== null) {
        throw new Error(`${name} had exited (${child.exitCode ?? child.signalCode}): ${tail()}`);
      }
      child.kill('SIGTERM');
      const t = setTimeout(() => child.kill('SIGKILL'), 8000);
      await new Promise((r) => child.once('exit', r));
      clearTimeout(t);
    },
  };
}

function accepts(port: number, unixPath?: string): Promise<boolean> {
  return new Promise((resolve) => {
    const s = unixPath ? net.connect(unixPath) : net.connect(port, '127.0.0.1');
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}

/** `echo-client bench … --json` against a port. */
export function ourBench(port: number, args: string[]): BenchResult {
  console.error(`bench:   echo-client bench ${args.join(' ')}`);
  const out = execFileSync(
    node,
    [
      path.join(root, 'bin', 'echo-client.js'),
      'bench',
      ...(args.includes('--unix') ? [] : [`127.0.0.1:${port}`]),
      '--json',
      '-d',
      `${SECONDS}s`,
      '--warmup',
      '500ms',
      ...args,
    ],
    { encoding: 'utf8', timeout: (SECONDS + 30) * 1000 },
  );
  return JSON.parse(out) as BenchResult;
}

/** What the C load generator prints: `mode=pp conns=100 … rate=123456 …`, numbers parsed. */
export type LgResult = Record<string, number>;

export function lg(args: string[], opts: { serverPid?: number; cpus?: string } = {}): LgResult {
  const before = opts.serverPid ? cpuSeconds(opts.serverPid) : 0;
  const bin = path.join(binDir, 'lg');
  const [cmd, argv] = opts.cpus ? ['taskset', ['-c', opts.cpus, bin, ...args]] : [bin, args];
  const out = execFileSync(cmd, argv, {
    encoding: 'utf8',
    timeout: (SECONDS + 40) * 1000,
  });
  const line = out.trim().split('\n').join(' ');
  const r: LgResult = Object.fromEntries(
    line
      .split(' ')
      .filter((kv) => kv.includes('='))
      .map((kv) => [kv.split('=')[0]!, Number(kv.split('=')[1])]),
  );
  // the server's CPU time per operation (round trip, connection, datagram; MB for bulk), in µs
  if (opts.serverPid) {
    const ops = r.ops ?? (r.rate_MBps !== undefined ? r.rate_MBps * (r.dur ?? SECONDS) : undefined);
    const spent = cpuSeconds(opts.serverPid) - before;
    // lg's warm-up (0.5 s by default) is not in ops: count the CPU of the measured part only
    const measured =
      (r.dur ?? SECONDS) /
      ((r.dur ?? SECONDS) + (args.includes('-w') ? Number(args[args.indexOf('-w') + 1]) : 0.5));
    if (ops) r.server_cpu_us = (spent * measured * 1e6) / ops;
  }
  return r;
}

/** The load generator's arguments for one load against a port (npm run bench and bench-ab alike). */
export function lgArgs(run: 'lgPp' | 'lgBulk' | 'lgConn' | 'udp', port: number): string[] {
  const p = ['-p', String(port), '-d', String(SECONDS)];
  if (run === 'udp') return ['udp', ...p, '-c', '32', '-m', '64'];
  if (run === 'lgPp') return ['pp', ...p, '-c', '100', '-m', '64', '-w', '0.5'];
  if (run === 'lgConn') return ['conn', ...p, '-P', '50', '-m', '64'];
  return ['bulk', ...p, '-c', '1', '-b', '65536', '-W', '4194304'];
}

/** CPU time (user + system) of a process and its children so far, seconds. */
export function cpuSeconds(pid: number): number {
  let ticks = 0;
  for (const p of [pid, ...childPids(pid)]) {
    try {
      const stat = readFileSync(`/proc/${p}/stat`, 'utf8');
      const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      ticks += Number(f[11]) + Number(f[12]); // utime, stime (fields 14 and 15)
    } catch {}
  }
  return ticks / 100; // USER_HZ
}

/** The direct children of `pid` (pgrep -P); [] when it has none or is gone. */
export function childPids(pid: number): number[] {
  try {
    return execFileSync('pgrep', ['-P', String(pid)], { encoding: 'utf8' })
      .trim()
      .split('\n')
      .filter(Boolean)
      .map(Number);
  } catch {
    return [];
  }
}

/** RSS of a process and its children, kB. */
export function rssKb(pid: number): number {
  const pids = [pid, ...childPids(pid)];
  let kb = 0;
  for (const p of pids)
    kb += Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${p}/status`, 'utf8'))?.[1] ?? 0);
  return kb;
}

/** `lg hold`: open n idle connections to port and keep them `seconds`; resolves once they are up. */
async function holdIdle(
  port: number,
  n: number,
  seconds: number,
): Promise<{ held: number; exited: Promise<unknown> }> {
  const child = spawn(
    path.join(binDir, 'lg'),
    ['hold', '-p', String(port), '-n', String(n), '-m', '0', '-d', String(seconds)],
    { stdio: ['ignore', 'pipe', 'ignore'] },
  );
  const exited = new Promise((r) => child.once('exit', r));
  let out = '';
  await new Promise<void>((resolve) => {
    child.stdout!.on('data', (d) => {
      out += d;
      if (/held=\d+/.test(out)) resolve();
    });
    void exited.then(() => resolve());
  });
  return { held: Number(/held=(\d+)/.exec(out)?.[1] ?? 0), exited };
}

/**
 * Bytes of server RSS per idle connection while `lg hold` keeps `n` of them open: counted from
 * none (`bytesPerConn`, which includes the heap's one-off growth as the first thousands arrive)
 * and for the second half only (`marginal`: what each further connection costs).
 */
export async function holdMemory(
  srv: Running,
  n: number,
): Promise<{ held: number; bytesPerConn: number | undefined; marginal: number | undefined }> {
  const before = rssKb(srv.pid);
  const first = await holdIdle(srv.port, Math.floor(n / 2), 8);
  await sleep(1000); // let the server settle its accepts
  const mid = rssKb(srv.pid);
  const second = await holdIdle(srv.port, n - Math.floor(n / 2), 4);
  await sleep(1000);
  const after = rssKb(srv.pid);
  await Promise.all([first.exited, second.exited]);
  const held = first.held + second.held;
  return {
    held,
    bytesPerConn: held ? Math.round(((after - before) * 1024) / held) : undefined,
    marginal: second.held ? Math.round(((after - mid) * 1024) / second.held) : undefined,
  };
}

/**
 * Time from connect to the first echoed byte, median of n fresh connections (the fork mode's
 * cost). With gapMs, connections come that far apart, so a warm spare child has time to start.
 */
export async function firstEchoMs(port: number, n = 30, gapMs = 0): Promise<number> {
  const times: number[] = [];
  for (let i = 0; i < n; i++) {
    if (gapMs) await sleep(gapMs);
    const t0 = performance.now();
    await new Promise<void>((resolve, reject) => {
      const s = net.connect(port, '127.0.0.1', () => s.write('x'));
      s.once('data', () => {
        times.push(performance.now() - t0);
        s.destroy();
        resolve();
      });
      s.once('error', reject);
    });
  }
  return median(times)!;
}

export function median(xs: number[]): number | undefined {
  const v = xs.filter((x) => Number.isFinite(x)).sort((a, b) => a - b);
  return v.length ? v[Math.floor(v.length / 2)] : undefined;
}

/** The run whose headline figure is the median, so every field reported comes from one real run. */
export function medianRun<T>(runs: T[], figure: (r: T) => number): T | undefined {
  const m = median(runs.map(figure));
  return runs.find((r) => figure(r) === m);
}
