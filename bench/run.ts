// npm run bench: every server mode against a plain `net.createServer(s => s.pipe(s))` baseline
// and the C epoll reference of ../shared/perf, all in one run on this machine, driven by our
// bench client and by the C load generator. Writes bench/results.md and bench/latency.svg.
// Absolute numbers drift on shared 2-core machines: the ratios measured in one run are the
// result. Every server is up at once and runs are interleaved across servers and repeated
// (BENCH_REPS), so a disturbance hits every server alike; each figure is the median.

import { type ChildProcess, spawn } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import type { BenchResult } from '../src/client/bench.js';
import { selfSignedTls } from '../src/core/tls.js';
import { c100k } from './c100k.js';
import type { LgRun, OurRun, ScaleFigures, ServerFigures } from './figures.js';
import { type Frame, type ProfileLoad, profileLoad, profileLoads, profileMarkdown } from './profile.js';
import { PROXY_REPS, proxyBench, proxyTable } from './proxy.js';
import { partialReport, writeReport } from './report.js';
import {
  binDir,
  buildC,
  firstEchoMs,
  freePort,
  holdMemory,
  type LgResult,
  lg,
  lgArgs,
  medianRun,
  node,
  ourBench,
  type Running,
  root,
  SECONDS,
  startServer,
} from './tools.js';

const REPS = Number(process.env.BENCH_REPS ?? 3);
const HOLD = Number(process.env.BENCH_HOLD ?? 10_000); // idle connections for the memory figure (the target is stated at 10,000)
const echoServer = path.join(root, 'bin', 'echo-server.js');

interface ServerSpec {
  name: string;
  command: (port: number) => [string, string[]];
  ours: OurRun[];
  lg: LgRun[];
  /** connections in flight for the connect-rate run */
  connInFlight?: number;
  /** RSS per idle connection, on a fresh process */
  memory?: boolean;
  /** median time to the first echo of a new connection */
  firstEcho?: boolean;
  udp?: boolean;
  needsC?: boolean;
  /** a Unix-socket server listening here */
  unixPath?: string;
  /** what echo-client bench adds to reach it (--tls --insecure, --unix PATH) */
  client?: string[];
  /** an URL a watcher process keeps open (GET, body read and dropped) while this server is measured */
  watch?: string;
}

const ours =
  (...args: string[]) =>
  (p: number): [string, string[]] => [
    node,
    [echoServer, '--port', String(p), '--log-format', 'json', ...args],
  ];
const ALL_OURS: OurRun[] = ['pp', 'bulk', 'conn'];
const ALL_LG: LgRun[] = ['lgPp', 'lgBulk', 'lgConn'];

export const TCP: ServerSpec[] = [
  {
    name: 'baseline',
    command: (p) => [
      node,
      ['-e', `require('net').createServer(s=>{s.on('error',()=>{});s.pipe(s)}).listen(${p},'127.0.0.1')`],
    ],
    ours: ALL_OURS,
    lg: ALL_LG,
    memory: true,
  },
  { name: 'evented', command: ours(), ours: ALL_OURS, lg: ALL_LG, memory: true, firstEcho: true },
  { name: 'evented -q', command: ours('-q'), ours: [], lg: ['lgConn'] },
  // net.Server's own accept path (the public fallback of the shared-read accept, core/internals.ts)
  {
    name: 'evented, public accept',
    command: (p) => ['/usr/bin/env', ['ECHO_SHARED_READ=0', ...ours()(p).flat()]],
    ours: [],
    lg: ['lgConn'],
  },
  {
    name: 'evented -q, public accept',
    command: (p) => ['/usr/bin/env', ['ECHO_SHARED_READ=0', ...ours('-q')(p).flat()]],
    ours: [],
    lg: ['lgConn'],
  },
  { name: 'workers ×2', command: ours('--mode', 'workers', '--workers', '2'), ours: ALL_OURS, lg: ALL_LG },
  {
    name: 'workers ×2 exclusive',
    command: ours('--mode', 'workers', '--workers', '2', '--exclusive', '--reuse-port'),
    ours: [],
    lg: ALL_LG,
  },
  {
    name: 'fork',
    command: ours('--mode', 'fork', '--max-children', '200'),
    ours: ['conn'],
    lg: [],
    connInFlight: 8,
    firstEcho: true,
  },
  {
    name: 'C epoll',
    command: (p) => [path.join(binDir, 'echo_epoll'), [String(p)]],
    ours: ALL_OURS,
    lg: ALL_LG,
    memory: true,
    needsC: true,
  },
];

export const UDP: ServerSpec[] = [
  {
    name: 'baseline',
    command: (p) => [
      node,
      [
        '-e',
        `const s=require('dgram').createSocket('udp4');s.on('message',(m,r)=>s.send(m,r.port,r.address));s.bind(${p},'127.0.0.1')`,
      ],
    ],
    ours: ['pp'],
    lg: ['lgPp'],
    udp: true,
  },
  // no rate limit: a benchmark is one source on purpose
  {
    name: 'echo-server --udp',
    command: ours('--udp', '--rate-limit', '0'),
    ours: ['pp'],
    lg: ['lgPp'],
    udp: true,
  },
  {
    name: 'C udp_echo',
    command: (p) => [path.join(binDir, 'udp_echo'), [String(p)]],
    ours: ['pp'],
    lg: ['lgPp'],
    udp: true,
    needsC: true,
  },
];

function ourArgs(run: OurRun, spec: ServerSpec): string[] {
  const extra = spec.client ?? [];
  if (spec.udp) return ['--udp', '-c', '32', '-s', '64'];
  if (run === 'pp') return ['-c', '100', '-s', '64', ...extra];
  if (run === 'bulk') return ['--mode', 'stream', '-c', '1', '-s', '64k', ...extra];
  return ['--mode', 'connect', '-c', String(spec.connInFlight ?? 50), '-s', '64', ...extra];
}

/** TLS and Unix sockets: each of ours against a plain Node server of the same transport. */
function transportSpecs(): ServerSpec[] {
  mkdirSync(binDir, { recursive: true });
  const cert = path.join(binDir, 'bench.crt');
  const key = path.join(binDir, 'bench.key');
  const sock = (n: string) => path.join(binDir, `bench-${n}-${process.pid}.sock`);
  const tlsClient = ['--tls', '--insecure'];
  const plainUnix = sock('baseline');
  const ourUnix = sock('evented');
  return [
    {
      name: 'tls baseline',
      command: (p) => [
        node,
        [
          '-e',
          `const fs=require('fs');require('tls').createServer({cert:fs.readFileSync(${JSON.stringify(cert)}),key:fs.readFileSync(${JSON.stringify(key)})},s=>{s.on('error',()=>{});s.pipe(s)}).listen(${p},'127.0.0.1')`,
        ],
      ],
      ours: ALL_OURS,
      lg: [],
      client: tlsClient,
    },
    {
      name: 'evented --tls',
      command: ours('--tls', '--cert', cert, '--key', key),
      ours: ALL_OURS,
      lg: [],
      client: tlsClient,
    },
    {
      name: 'unix baseline',
      command: () => [
        node,
        [
          '-e',
          `require('net').createServer(s=>{s.on('error',()=>{});s.pipe(s)}).listen(${JSON.stringify(plainUnix)})`,
        ],
      ],
      ours: ALL_OURS,
      lg: [],
      unixPath: plainUnix,
      client: ['--unix', plainUnix],
    },
    {
      name: 'evented --unix',
      command: () => [node, [echoServer, '--unix', ourUnix, '--log-format', 'json']],
      ours: ALL_OURS,
      lg: [],
      unixPath: ourUnix,
      client: ['--unix', ourUnix],
    },
  ];
}

/**
 * The admin page: echo-server --metrics with nobody watching against the same with one page
 * open (a process holding GET /events, which pushes a snapshot every 500 ms): what a watcher costs.
 */
export async function adminSpecs(): Promise<ServerSpec[]> {
  const [closed, open] = [await freePort(), await freePort()];
  const runs = { ours: ['pp', 'conn'] as OurRun[], lg: ['lgPp', 'lgConn'] as LgRun[] };
  return [
    { name: 'admin page closed', command: ours('--metrics', `127.0.0.1:${closed}`), ...runs },
    {
      name: 'admin page open',
      command: ours('--metrics', `127.0.0.1:${open}`),
      watch: `http://127.0.0.1:${open}/events`,
      ...runs,
    },
  ];
}

/** Start a process that holds `url` open and reads what comes; resolves once the first bytes came. */
async function watcher(url: string): Promise<ChildProcess> {
  const child = spawn(
    node,
    [
      '-e',
      `require('http').get(${JSON.stringify(url)},r=>{let f=1;r.on('data',()=>{if(f){f=0;console.log('open')}})}).on('error',e=>{console.error(e.message);process.exit(1)})`,
    ],
    { stdio: ['ignore', 'pipe', 'inherit'] },
  );
  await new Promise<void>((resolve, reject) => {
    child.stdout!.once('data', () => resolve());
    child.once('exit', (code) =>
      reject(new Error(`watcher of ${url} exited (${code}) before the first event`)),
    );
  });
  return child;
}

/** WebSocket: echo-server --ws against a plain `ws` echo server (the one-liner of the ws library). */
export function wsSpecs(): ServerSpec[] {
  const lib = JSON.stringify(path.join(root, 'node_modules', 'ws'));
  const both: OurRun[] = ['pp', 'conn'];
  return [
    {
      name: 'ws baseline',
      command: (p) => [
        node,
        [
          '-e',
          `const{WebSocketServer}=require(${lib});new WebSocketServer({port:${p},host:'127.0.0.1'}).on('connection',s=>s.on('message',(m,b)=>s.send(m,{binary:b})))`,
        ],
      ],
      ours: both,
      lg: [],
      client: ['--ws'],
    },
    { name: 'evented --ws', command: ours('--ws'), ours: both, lg: [], client: ['--ws'] },
    {
      name: 'workers ×2 --ws',
      command: ours('--ws', '--mode', 'workers', '--workers', '2'),
      ours: both,
      lg: [],
      client: ['--ws'],
    },
  ];
}

/** One self-signed certificate both TLS servers use (the same key type: the same handshake cost). */
async function benchCertificate(): Promise<void> {
  const t = await selfSignedTls('127.0.0.1');
  writeFileSync(path.join(binDir, 'bench.crt'), t.cert);
  writeFileSync(path.join(binDir, 'bench.key'), t.key);
}

/** Bring every server up, run each measurement REPS times interleaved across them, keep medians. */
async function measure(
  specs: ServerSpec[],
  hasC: boolean,
  reps = REPS,
): Promise<Record<string, ServerFigures>> {
  const active = specs.filter((s) => hasC || !s.needsC);
  const up = new Map<string, Running>();
  const watchers: ChildProcess[] = [];
  const runs = new Map(
    active.map((s) => [s.name, { ours: new Map<OurRun, BenchResult[]>(), lg: new Map<LgRun, LgResult[]>() }]),
  );
  try {
    for (const s of active) {
      up.set(s.name, await startServer(s.name, s.command, s.udp, s.unixPath));
      if (s.watch) watchers.push(await watcher(s.watch));
    }
    for (let rep = 0; rep < reps; rep++) {
      for (const run of ALL_OURS) {
        for (const s of active.filter((x) => x.ours.includes(run))) {
          const r = runs.get(s.name)!.ours;
          r.set(run, [...(r.get(run) ?? []), ourBench(up.get(s.name)!.port, ourArgs(run, s))]);
        }
        // the C generator loads a server harder than a Node client can: it drives every server too
        const lgRun: LgRun = run === 'pp' ? 'lgPp' : run === 'bulk' ? 'lgBulk' : 'lgConn';
        for (const s of hasC ? active.filter((x) => x.lg.includes(lgRun)) : []) {
          const r = runs.get(s.name)!.lg;
          const srv = up.get(s.name)!;
          r.set(lgRun, [
            ...(r.get(lgRun) ?? []),
            lg(lgArgs(s.udp ? 'udp' : lgRun, srv.port), { serverPid: srv.pid }),
          ]);
        }
      }
    }
    const out: Record<string, ServerFigures> = {};
    for (const s of active) {
      const r = runs.get(s.name)!;
      out[s.name] = {
        ours: Object.fromEntries(
          [...r.ours].map(([k, v]) => [k, medianRun(v, (x) => (k === 'bulk' ? x.mb_per_s : x.rate_per_s))]),
        ),
        lg: Object.fromEntries(
          [...r.lg].map(([k, v]) => [k, medianRun(v, (x) => (k === 'lgBulk' ? x.rate_MBps! : x.rate!))]),
        ),
      };
      if (s.firstEcho) {
        out[s.name]!.firstEchoMs = await firstEchoMs(up.get(s.name)!.port);
        out[s.name]!.firstEchoSpacedMs = await firstEchoMs(up.get(s.name)!.port, 10, 300);
      }
    }
    return out;
  } finally {
    for (const w of watchers) w.kill();
    for (const srv of up.values()) await srv.stop();
  }
}

/**
 * Workers with their own listening sockets (--exclusive --reuse-port), the server pinned to
 * `cpus` and the generator to CPU 1: one worker on CPU 0, then two on CPUs 0 and 1. On a 2-core
 * machine the second worker shares its core with the generator, so this shows what 2 cores
 * allow; the server's CPU time per round trip says whether a worker costs more when there
 * are more of them (then N free cores would not give N times one).
 */
async function scaling(hasC: boolean): Promise<ScaleFigures | undefined> {
  if (!hasC || process.platform !== 'linux') return undefined;
  const setups = [
    { workers: 1, cpus: '0' },
    { workers: 2, cpus: '0,1' },
  ];
  const up: Running[] = [];
  const runs = setups.map(() => [] as LgResult[]);
  try {
    for (const s of setups)
      up.push(
        await startServer(`scale-${s.workers}`, (p) => [
          'taskset',
          [
            '-c',
            s.cpus,
            ...ours(
              '--mode',
              'workers',
              '--workers',
              String(s.workers),
              '--exclusive',
              '--reuse-port',
            )(p).flat(),
          ],
        ]),
      );
    for (let rep = 0; rep < REPS; rep++) {
      for (const [i, srv] of up.entries()) {
        runs[i]!.push(
          lg(['pp', '-p', String(srv.port), '-d', String(SECONDS), '-c', '100', '-m', '64', '-w', '0.5'], {
            serverPid: srv.pid,
            cpus: '1',
          }),
        );
      }
    }
  } finally {
    for (const srv of up) await srv.stop();
  }
  return {
    rows: setups.map((s, i) => {
      const m = medianRun(runs[i]!, (x) => x.rate!)!;
      return { workers: s.workers, cpus: s.cpus, rate: m.rate!, cpuUs: m.server_cpu_us };
    }),
  };
}

/** --cpu-prof under each load of profile.ts: where the time goes. */
async function profiles(hasC: boolean): Promise<{ load: ProfileLoad; rate: number; frames: Frame[] }[]> {
  if (!hasC) return [];
  const out = [];
  for (const load of profileLoads()) {
    console.error(`bench: profiling ${load.name}`);
    out.push({ load, ...(await profileLoad(load)) });
  }
  return out;
}

/** RSS per idle connection, each server on a fresh process (a heap grown by load hides growth). */
async function memory(specs: ServerSpec[], into: Record<string, ServerFigures>): Promise<void> {
  for (const s of specs.filter((x) => x.memory && into[x.name])) {
    console.error(`bench: ${s.name}: memory with ${HOLD} idle connections (fresh process)`);
    const fresh = await startServer(`${s.name}-mem`, s.command);
    try {
      await new Promise((r) => setTimeout(r, 500));
      into[s.name]!.mem = await holdMemory(fresh, HOLD);
    } finally {
      await fresh.stop();
    }
  }
}

/**
 * BENCH_ONLY=proxy: only the forwarder rows (bench/proxy.ts); BENCH_ONLY=transports: only the TLS and Unix rows; BENCH_ONLY=core: only the plain baseline and
 * evented rows (a quick check of the hot path). Partial runs print their tables and write
 * bench/results-partial.md, leaving the full results.md alone.
 */
async function partial(only: string): Promise<void> {
  const hasC = false;
  if (only === 'admin') {
    const md = partialReport(only, await measure(await adminSpecs(), buildC()), SECONDS, REPS);
    writeFileSync(path.join(root, 'bench', 'results-partial.md'), md);
    console.log(md);
    return;
  }
  if (only === 'ws') {
    const md = partialReport(only, await measure(wsSpecs(), hasC), SECONDS, REPS);
    writeFileSync(path.join(root, 'bench', 'results-partial.md'), md);
    console.log(md);
    return;
  }
  if (only === 'proxy') {
    const md = `# Bench, partial run (BENCH_ONLY=proxy)\n${proxyTable(await proxyBench(measure, buildC()), PROXY_REPS).join('\n')}\n`;
    writeFileSync(path.join(root, 'bench', 'results-partial.md'), md);
    console.log(md);
    return;
  }
  const figures =
    only === 'transports'
      ? await (async () => {
          mkdirSync(binDir, { recursive: true });
          await benchCertificate();
          return measure(transportSpecs(), hasC);
        })()
      : await measure(
          TCP.filter((s) => s.name === 'baseline' || s.name === 'evented'),
          hasC,
        );
  const md = partialReport(only, figures, SECONDS, REPS);
  writeFileSync(path.join(root, 'bench', 'results-partial.md'), md);
  console.log(md);
}

async function main(): Promise<void> {
  if (process.argv.includes('--c100k')) {
    console.log(await c100k());
    return;
  }
  if (process.argv.includes('--profile')) {
    // only the profiles (the full run ends with them too)
    const md = `# Profiles\n\n${profileMarkdown(await profiles(buildC()))}`;
    // BENCH_PROFILE_OUT=bench/profiles/NAME.md: where to write it (default bench/results-profile.md)
    writeFileSync(path.resolve(root, process.env.BENCH_PROFILE_OUT ?? 'bench/results-profile.md'), md);
    console.log(md);
    return;
  }
  const only = process.env.BENCH_ONLY;
  if (only) return partial(only);
  const hasC = buildC();
  const tcp = await measure(TCP, hasC);
  if (hasC) await memory(TCP, tcp);
  const udp = await measure(UDP, hasC);
  mkdirSync(binDir, { recursive: true });
  await benchCertificate();
  const transports = await measure(transportSpecs(), hasC);
  const ws = await measure(wsSpecs(), hasC);
  const admin = await measure(await adminSpecs(), hasC);
  const proxyFigures = await proxyBench(measure, hasC);
  const proxy = proxyTable(proxyFigures, PROXY_REPS);
  const scale = await scaling(hasC);
  const prof = await profiles(hasC);
  console.log(
    writeReport({
      tcp,
      udp,
      transports,
      ws,
      proxy,
      proxyFigures,
      admin,
      scale,
      profiles: prof,
      hasC,
      seconds: SECONDS,
      reps: REPS,
    }),
  );
}

main().catch((err) => {
  console.error(`bench: ${(err as Error).stack ?? err}`);
  process.exitCode = 1;
});
