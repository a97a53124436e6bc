// npm run bench-ab -- --before DIR [--after DIR] [--reps N] [--seconds S] [--loads L,…] [--configs C;…]
// Same-run A/B of the plain path: echo-server from DIR ("before", a built checkout of this
// repo) against echo-server from this tree or --after DIR ("after"), next to the plain Node
// `s.pipe(s)` baseline, all up at once on port 0 (loopback), driven by the C load generator
// with the loads of npm run bench. Runs go round-robin across the servers within each rep
// (the order rotated each rep), so a disturbance hits every server alike; each figure is the
// median over reps, and the after/before ratio comes with its min–max over the reps' ratios.
// The C epoll server of ../shared/perf runs in the same rounds on TCP loads (÷ C: the ratio to it).
// --loads (pp, bulk, conn, udp) and --configs (texts separated by `;`, a config is run when
// its name contains one of them, e.g. `-q;workers`) pick a subset, for a quicker A/B of one path.
// Prints a markdown table and writes it to bench/results-ab.md.

import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import {
  closeSync,
  existsSync,
  mkdirSync,
  openSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  writeFileSync,
} from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';
import type { LgRun } from './figures.js';

function usage(msg: string): never {
  console.error(`bench-ab: ${msg}`);
  console.error(
    'usage: npm run bench-ab -- --before DIR [--after DIR] [--reps N] [--seconds S] [--loads pp,bulk,conn,udp] [--configs TEXT;…]',
  );
  process.exit(2);
}

const opts = (() => {
  try {
    return parseArgs({
      options: {
        before: { type: 'string' },
        after: { type: 'string' },
        reps: { type: 'string', default: '5' },
        seconds: { type: 'string', default: '3' },
        loads: { type: 'string' },
        configs: { type: 'string' },
      },
      strict: true,
      allowPositionals: false,
    }).values;
  } catch (err) {
    return usage((err as Error).message);
  }
})();
if (!opts.before) usage('--before DIR is required (a built checkout of this repo)');
const reps = Number(opts.reps);
const seconds = Number(opts.seconds);
if (!Number.isInteger(reps) || reps < 1 || reps > 100)
  usage(`--reps must be an integer 1..100, got ${opts.reps}`);
if (!Number.isFinite(seconds) || seconds <= 0 || seconds > 60)
  usage(`--seconds must be a number in (0, 60], got ${opts.seconds}`);
// tools.ts reads the run length (lg's -d and its timeout) from here when it loads
process.env.BENCH_SECONDS = String(seconds);
const { binDir, buildC, childPids, freePort, lg, lgArgs, median, node, root } = await import('./tools.js');

const beforeDir = path.resolve(opts.before);
const afterDir = path.resolve(opts.after ?? root);
for (const [flag, dir] of [
  ['--before', beforeDir],
  ['--after', afterDir],
] as const) {
  for (const f of ['bin/echo-server.js', 'dist/cli/echo-server.js'])
    if (!existsSync(path.join(dir, f)))
      usage(`${flag} ${dir}: no ${f} (is it a built checkout? run npm run build there)`);
}

type Load = LgRun | 'udp';
const ALL_LOADS: { load: Load; name: string; figure: string; unit: string }[] = [
  { load: 'lgPp', name: 'pp', figure: 'ping-pong 100 conn × 64 B', unit: 'round trips/s' },
  { load: 'lgBulk', name: 'bulk', figure: 'bulk 1 conn × 64 KiB', unit: 'MB/s' },
  { load: 'lgConn', name: 'conn', figure: 'connect/echo/close, 50 in flight', unit: 'conn/s' },
  { load: 'udp', name: 'udp', figure: 'UDP 32 outstanding × 64 B', unit: 'datagrams/s' },
];
const pickedLoads = opts.loads?.split(',').map((x) => x.trim());
for (const l of pickedLoads ?? [])
  if (!ALL_LOADS.some((x) => x.name === l)) usage(`--loads: unknown load ${l} (pp, bulk, conn, udp)`);
const LOADS = ALL_LOADS.filter((l) => !pickedLoads || pickedLoads.includes(l.name));

/** One server of the A/B: the plain Node baseline, or echo-server from the before or after tree. */
interface Server {
  key: string;
  config: string;
  side: 'baseline' | 'c' | 'before' | 'after';
  udp: boolean;
  command: [string, string[]];
  env?: Record<string, string>;
}

const TCP_BASELINE = `require('net').createServer(s=>{s.on('error',()=>{});s.pipe(s)}).listen(0,'127.0.0.1')`;
const UDP_BASELINE = `const s=require('dgram').createSocket('udp4');s.on('message',(m,r)=>s.send(m,r.port,r.address));s.bind(0,'127.0.0.1')`;

/**
 * The configurations compared: the same flags (and environment) on both sides (port 0,
 * loopback). `public accept` turns the shared-read accept path off (net.Server's own accept).
 */
const ALL_CONFIGS: { config: string; udp: boolean; flags: string[]; env?: Record<string, string> }[] = [
  { config: 'evented, json logs', udp: false, flags: ['--log-format', 'json'] },
  { config: 'evented, -q', udp: false, flags: ['--log-format', 'json', '-q'] },
  {
    config: 'evented, json logs, public accept',
    udp: false,
    flags: ['--log-format', 'json'],
    env: { ECHO_SHARED_READ: '0' },
  },
  {
    config: 'evented, -q, public accept',
    udp: false,
    flags: ['--log-format', 'json', '-q'],
    env: { ECHO_SHARED_READ: '0' },
  },
  {
    config: 'workers ×2, json logs',
    udp: false,
    flags: ['--log-format', 'json', '--mode', 'workers', '--workers', '2'],
  },
  {
    // the hand-over's fallback (ECHO_HANDOVER=ipc: Node's IPC, as before the descriptor channel)
    config: 'workers ×2, json logs, IPC hand-over',
    udp: false,
    flags: ['--log-format', 'json', '--mode', 'workers', '--workers', '2'],
    env: { ECHO_HANDOVER: 'ipc' },
  },
  {
    config: 'workers ×2 --exclusive --reuse-port, json logs',
    udp: false,
    flags: ['--log-format', 'json', '--mode', 'workers', '--workers', '2', '--exclusive', '--reuse-port'],
  },
  { config: 'udp, json logs', udp: true, flags: ['--log-format', 'json', '--udp', '--rate-limit', '0'] },
  { config: 'udp, -q', udp: true, flags: ['--log-format', 'json', '-q', '--udp', '--rate-limit', '0'] },
];
const pickedConfigs = opts.configs?.split(';').map((x) => x.trim());
const CONFIGS = ALL_CONFIGS.filter(
  (c) =>
    (!pickedConfigs || pickedConfigs.some((w) => c.config.includes(w))) &&
    LOADS.some((l) => (l.load === 'udp') === c.udp),
);
if (!CONFIGS.length) usage(`--configs ${opts.configs}: no configuration matches`);

const SERVERS: Server[] = (
  [
    {
      key: 'baseline tcp',
      config: 'Node s.pipe(s)',
      side: 'baseline',
      udp: false,
      command: [node, ['-e', TCP_BASELINE]],
    },
    {
      key: 'baseline udp',
      config: 'Node dgram echo',
      side: 'baseline',
      udp: true,
      command: [node, ['-e', UDP_BASELINE]],
    },
  ] as Server[]
).filter((s) => LOADS.some((l) => (l.load === 'udp') === s.udp));
SERVERS.push(
  ...CONFIGS.flatMap((c) =>
    (['before', 'after'] as const).map((side) => ({
      key: `${side} ${c.config}`,
      config: c.config,
      side,
      udp: c.udp,
      env: c.env,
      command: [
        node,
        [
          path.join(side === 'before' ? beforeDir : afterDir, 'bin', 'echo-server.js'),
          '--port',
          '0',
          ...c.flags,
        ],
      ] as [string, string[]],
    })),
  ),
);

interface Up {
  server: Server;
  pid: number;
  port: number;
  child: ChildProcess;
  log: string;
}

/**
 * The port a process (or one of its children) is bound to, read from /proc: the socket inodes
 * among its file descriptors matched against /proc/net/{tcp,udp}[6], TCP in LISTEN state. This
 * works whether or not the server logs its address (a -q server does not have to).
 */
function boundPort(pid: number, udp: boolean): number | undefined {
  const inodes = new Set<string>();
  for (const p of [pid, ...childPids(pid)]) {
    let fds: string[] = [];
    try {
      fds = readdirSync(`/proc/${p}/fd`);
    } catch {}
    for (const fd of fds) {
      try {
        const m = /^socket:\[(\d+)\]$/.exec(readlinkSync(`/proc/${p}/fd/${fd}`));
        if (m) inodes.add(m[1]!);
      } catch {}
    }
  }
  for (const table of udp ? ['udp', 'udp6'] : ['tcp', 'tcp6']) {
    let text = '';
    try {
      text = readFileSync(`/proc/net/${table}`, 'utf8');
    } catch {
      continue;
    }
    for (const line of text.trim().split('\n').slice(1)) {
      const f = line.trim().split(/\s+/);
      // f[1] local address:port (hex), f[3] state (0A = LISTEN; 07 = an unconnected UDP socket), f[9] inode
      if (!inodes.has(f[9]!)) continue;
      if (udp ? f[3] !== '07' : f[3] !== '0A') continue;
      return Number.parseInt(f[1]!.split(':')[1]!, 16);
    }
  }
  return undefined;
}

const tail = (log: string) => readFileSync(log, 'utf8').slice(-2000);

async function start(server: Server): Promise<Up> {
  mkdirSync(binDir, { recursive: true });
  // the server logs to a file: a pipe would fill while this runner blocks in execFileSync
  const log = path.join(binDir, `ab-${server.key.replace(/\W+/g, '-')}.log`);
  const fd = openSync(log, 'w');
  const child = spawn(server.command[0], server.command[1], {
    stdio: ['ignore', 'ignore', fd],
    env: server.env ? { ...process.env, ...server.env } : process.env,
  });
  closeSync(fd);
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  const t0 = Date.now();
  // the same port on two polls in a row: at start an echo-server listens for a few ms on a
  // port of its own (the check of its shared-read accept path), which is gone by the next poll
  let seen: number | undefined;
  for (;;) {
    const port = child.pid ? boundPort(child.pid, server.udp) : undefined;
    if (port && port === seen) return { server, pid: child.pid!, port, child, log };
    seen = port;
    if (child.exitCode !== null || child.signalCode !== null)
      throw new Error(`${server.key} exited before listening: ${tail(log)}`);
    if (Date.now() - t0 > 15_000) {
      child.kill('SIGKILL');
      throw new Error(`${server.key} did not listen within 15 s: ${tail(log)}`);
    }
    // poll /proc every 50 ms, or stop polling as soon as the process exits
    await Promise.race([exited, new Promise((r) => setTimeout(r, 50))]);
  }
}

async function stop(up: Up): Promise<string | undefined> {
  const { child } = up;
  const died =
    child.exitCode !== null || child.signalCode !== null
      ? `${up.server.key} had exited (${child.exitCode ?? child.signalCode}): ${tail(up.log)}`
      : undefined;
  if (!died) {
    const exit = new Promise((r) => child.once('exit', r));
    child.kill('SIGTERM');
    const t = setTimeout(() => child.kill('SIGKILL'), 8000);
    await exit;
    clearTimeout(t);
  }
  return died;
}

function commitOf(dir: string): string {
  try {
    const id = execFileSync('git', ['-C', dir, 'rev-parse', '--short=12', 'HEAD'], {
      encoding: 'utf8',
    }).trim();
    const dirty = execFileSync('git', ['-C', dir, 'status', '--porcelain', '--untracked-files=no'], {
      encoding: 'utf8',
    }).trim();
    return dirty ? `${id} + uncommitted changes` : id;
  } catch {
    return 'unknown (not a git checkout)';
  }
}

const fmt = (x: number | undefined, unit: string) =>
  x === undefined ? '–' : unit === 'MB/s' ? x.toFixed(1) : Math.round(x).toLocaleString('en-US');
const fmtCpu = (x: number | undefined) => (x === undefined ? '–' : x.toFixed(1));
const fmtRatio = (x: number | undefined) => (x === undefined || !Number.isFinite(x) ? '–' : x.toFixed(3));

async function main(): Promise<void> {
  if (!buildC()) {
    console.error('bench-ab: the C load generator could not be built (Linux, gcc and ../shared/perf needed)');
    process.exitCode = 1;
    return;
  }
  const figure = (load: Load, r: Record<string, number>) => (load === 'lgBulk' ? r.rate_MBps : r.rate);
  /** results[load][server key] = one figure per rep (NaN when a run failed) */
  const results = new Map<Load, Map<string, number[]>>(LOADS.map((l) => [l.load, new Map()]));
  /** cpu[load][server key] = the server's CPU µs per operation (per MB for bulk), one per rep */
  const cpu = new Map<Load, Map<string, number[]>>(LOADS.map((l) => [l.load, new Map()]));
  const up: Up[] = [];
  const problems: string[] = [];
  // the C epoll server of ../shared/perf (built by buildC) on TCP loads: the ratio to the physical limit
  if (LOADS.some((l) => l.load !== 'udp'))
    SERVERS.unshift({
      key: 'c tcp',
      config: 'C epoll',
      side: 'c',
      udp: false,
      command: [path.join(binDir, 'echo_epoll'), [String(await freePort())]],
    });
  try {
    for (const s of SERVERS) up.push(await start(s));
    for (const u of up) console.error(`bench-ab: ${u.server.key}: pid ${u.pid}, 127.0.0.1:${u.port}`);
    for (let rep = 0; rep < reps; rep++) {
      for (const { load } of LOADS) {
        const targets = up.filter((u) => u.server.udp === (load === 'udp'));
        // rotate the order each rep so no server always runs right after the same one
        const order = targets.map((_, i) => targets[(i + rep) % targets.length]!);
        for (const u of order) {
          console.error(`bench-ab: rep ${rep + 1}/${reps} ${load} → ${u.server.key}`);
          let value = Number.NaN;
          let cpuUs = Number.NaN;
          try {
            const r = lg(lgArgs(load, u.port), { serverPid: u.pid });
            value = figure(load, r) ?? Number.NaN;
            cpuUs = r.server_cpu_us ?? Number.NaN;
          } catch (err) {
            problems.push(
              `rep ${rep + 1} ${load} → ${u.server.key}: ${(err as Error).message.split('\n')[0]}`,
            );
          }
          const m = results.get(load)!;
          m.set(u.server.key, [...(m.get(u.server.key) ?? []), value]);
          const c = cpu.get(load)!;
          c.set(u.server.key, [...(c.get(u.server.key) ?? []), cpuUs]);
        }
      }
    }
  } finally {
    for (const u of up) {
      const died = await stop(u);
      if (died) problems.push(died);
    }
  }

  const rows: string[] = [];
  for (const { load, figure: name, unit } of LOADS) {
    const m = results.get(load)!;
    const baseline = median(m.get(load === 'udp' ? 'baseline udp' : 'baseline tcp') ?? []);
    const cRef = load === 'udp' ? undefined : median(m.get('c tcp') ?? []);
    const cCpu = load === 'udp' ? undefined : median(cpu.get(load)!.get('c tcp') ?? []);
    for (const c of CONFIGS.filter((x) => x.udp === (load === 'udp'))) {
      const b = m.get(`before ${c.config}`) ?? [];
      const a = m.get(`after ${c.config}`) ?? [];
      const mb = median(b);
      const ma = median(a);
      const cb = median(cpu.get(load)!.get(`before ${c.config}`) ?? []);
      const ca = median(cpu.get(load)!.get(`after ${c.config}`) ?? []);
      // per rep: after and before measured within the same round
      const ratios = a.map((x, i) => x / b[i]!).filter((x) => Number.isFinite(x));
      const spread = ratios.length
        ? `${fmtRatio(Math.min(...ratios))}–${fmtRatio(Math.max(...ratios))}`
        : '–';
      rows.push(
        `| ${name} (${unit}) | ${c.config} | ${fmt(baseline, unit)} | ${fmt(mb, unit)} | ${fmt(ma, unit)} | ${fmtRatio(
          ma !== undefined && mb ? ma / mb : undefined,
        )} | ${spread} | ${fmtRatio(mb !== undefined && baseline ? mb / baseline : undefined)} / ${fmtRatio(
          ma !== undefined && baseline ? ma / baseline : undefined,
        )} | ${fmt(cRef, unit)} | ${fmtRatio(mb !== undefined && cRef ? mb / cRef : undefined)} / ${fmtRatio(
          ma !== undefined && cRef ? ma / cRef : undefined,
        )} | ${fmtCpu(cb)} / ${fmtCpu(ca)} / ${fmtCpu(cCpu)} |`,
      );
    }
  }
  const md = [
    '# Same-run A/B: echo-server before vs after',
    '',
    `- date: ${new Date().toISOString()}`,
    `- before: \`${beforeDir}\` at ${commitOf(beforeDir)}`,
    `- after: \`${afterDir}\` at ${commitOf(afterDir)}`,
    `- Node ${process.version}, ${reps} reps × ${seconds} s per run, C load generator (\`bench/bin/lg\`), loopback, every server up at once, runs round-robin across servers within each rep`,
    "- figures: median over reps; after/before: ratio of the medians, with the min–max of the per-rep ratios; the baseline is one plain Node server per transport, shown on each row; ÷ Node: each side's median over the baseline's",
    "- C epoll: the C reference server (`../shared/perf/echo_epoll.c`) in the same rounds, TCP loads only; ÷ C: each side's median over its median",
    "- server CPU: user + system time of the server process and its children during the run, per round trip, connection or datagram (per MB for bulk), median over reps; the last figure is the C server's",
    ...(reps % 2 ? [] : ['- an even number of reps: each median is the upper of the two middle values']),
    '',
    '| figure | config | Node baseline | before | after | after/before | per-rep ratio min–max | ÷ Node before / after | C epoll | ÷ C before / after | server CPU µs/op before / after / C |',
    '|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|',
    ...rows,
    ...(problems.length ? ['', '## Problems during the run', '', ...problems.map((p) => `- ${p}`)] : []),
    '',
  ].join('\n');
  writeFileSync(path.join(root, 'bench', 'results-ab.md'), md);
  console.log(md);
  if (problems.length) process.exitCode = 1;
}

main().catch((err) => {
  console.error(`bench-ab: ${(err as Error).message}`);
  process.exitCode = 1;
});
