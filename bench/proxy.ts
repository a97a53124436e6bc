// The proxy rows of npm run bench: ping-pong and bulk through echo-proxy (no toxic) against
// the same upstream reached straight, through `socat TCP-LISTEN,fork TCP:` and through HAProxy
// `mode tcp`, all up at once and interleaved in one run, medians of BENCH_PROXY_REPS (5).
// The upstream is the plain Node echo server (`s.pipe(s)`), one process for every forwarder.

import { execFileSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import type { LgRun, OurRun, ServerFigures } from './figures.js';
import { binDir, node, root, startServer } from './tools.js';

export const PROXY_REPS = Number(process.env.BENCH_PROXY_REPS ?? 5);

export interface ProxySpec {
  name: string;
  command: (port: number) => [string, string[]];
  ours: OurRun[];
  lg: LgRun[];
}

const has = (cmd: string, arg = '-V') => {
  try {
    execFileSync(cmd, [arg], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
};
const HAPROXY = '/usr/sbin/haproxy';
const echoProxy = path.join(root, 'bin', 'echo-proxy.js');
export const UPSTREAM: (port: number) => [string, string[]] = (p) => [
  node,
  ['-e', `require('net').createServer(s=>{s.on('error',()=>{});s.pipe(s)}).listen(${p},'127.0.0.1')`],
];

/** The forwarders in front of an upstream on `up`, and that upstream's twin reached straight. */
export function proxySpecs(up: number): ProxySpec[] {
  const runs = { ours: ['pp', 'bulk'] as OurRun[], lg: ['lgPp', 'lgBulk'] as LgRun[] };
  const specs: ProxySpec[] = [
    { name: 'straight', command: UPSTREAM, ...runs },
    {
      name: 'echo-proxy',
      command: (p) => [
        node,
        [
          echoProxy,
          '--listen',
          `127.0.0.1:${p}`,
          '--upstream',
          `127.0.0.1:${up}`,
          '--no-api',
          '-q',
          '--log-format',
          'json',
        ],
      ],
      ...runs,
    },
  ];
  if (has('socat'))
    specs.push({
      name: 'socat',
      command: (p) => ['socat', [`TCP-LISTEN:${p},bind=127.0.0.1,fork,reuseaddr`, `TCP:127.0.0.1:${up}`]],
      ...runs,
    });
  if (has(HAPROXY, '-v'))
    specs.push({
      name: 'haproxy',
      command: (p) => {
        const cfg = path.join(binDir, `haproxy-${p}.cfg`);
        writeFileSync(
          cfg,
          [
            'global',
            '  maxconn 4096',
            'defaults',
            '  mode tcp',
            '  timeout connect 5s',
            '  timeout client 60s',
            '  timeout server 60s',
            'frontend f',
            `  bind 127.0.0.1:${p}`,
            '  default_backend b',
            'backend b',
            `  server up 127.0.0.1:${up}`,
            '',
          ].join('\n'),
        );
        return [HAPROXY, ['-f', cfg, '-db']];
      },
      ...runs,
    });
  return specs;
}

/** Bring the upstream up, measure the forwarders in front of it, stop it. */
export async function proxyBench(
  measure: (specs: ProxySpec[], hasC: boolean, reps: number) => Promise<Record<string, ServerFigures>>,
  hasC: boolean,
): Promise<Record<string, ServerFigures>> {
  const up = await startServer('proxy-upstream', UPSTREAM);
  try {
    return await measure(proxySpecs(up.port), hasC, PROXY_REPS);
  } finally {
    await up.stop();
  }
}

const fmt = (x: number | undefined, d = 0) => (x === undefined || Number.isNaN(x) ? '—' : x.toFixed(d));
const ratio = (a: number | undefined, b: number | undefined) => (a && b ? (a / b).toFixed(2) : '—');

/** The proxy table of results.md: each forwarder against straight, socat and HAProxy. */
export function proxyTable(X: Record<string, ServerFigures>, reps: number): string[] {
  const s = X.straight;
  const socat = X.socat;
  const ha = X.haproxy;
  const L = [
    '',
    '## In front of a service: echo-proxy vs socat vs HAProxy (no toxic)',
    '',
    `The same upstream (a plain Node \`s.pipe(s)\` echo) reached straight, through \`echo-proxy\`, \`socat TCP-LISTEN,fork TCP:\` and HAProxy \`mode tcp\`; medians of ${reps} interleaved runs. echo-client bench: ping-pong 100 connections × 64 B, bulk 1 connection × 64 KiB; the C generator's figures where it was built, with the forwarder's own CPU time per round trip (µs; socat's per-connection children are counted only while alive, so its figure is low) — steadier than the rates on a shared machine.`,
    '',
    '| forwarder | ping-pong rt/s | × straight | × socat | × HAProxy | bulk MB/s | × straight | × socat | × HAProxy | C gen pp rt/s | × HAProxy | C gen pp CPU µs/rt | C gen bulk MB/s | × socat |',
    '|---|---|---|---|---|---|---|---|---|---|---|---|---|---|',
  ];
  for (const [name, f] of Object.entries(X)) {
    const pp = f.ours.pp?.rate_per_s;
    const bulk = f.ours.bulk?.mb_per_s;
    const lpp = f.lg.lgPp?.rate;
    const lbulk = f.lg.lgBulk?.rate_MBps;
    L.push(
      `| ${name} | ${fmt(pp)} | ${ratio(pp, s?.ours.pp?.rate_per_s)} | ${ratio(pp, socat?.ours.pp?.rate_per_s)} | ${ratio(pp, ha?.ours.pp?.rate_per_s)} | ${fmt(bulk)} | ${ratio(bulk, s?.ours.bulk?.mb_per_s)} | ${ratio(bulk, socat?.ours.bulk?.mb_per_s)} | ${ratio(bulk, ha?.ours.bulk?.mb_per_s)} | ${fmt(lpp)} | ${ratio(lpp, ha?.lg.lgPp?.rate)} | ${fmt(f.lg.lgPp?.server_cpu_us, 1)} | ${fmt(lbulk)} | ${ratio(lbulk, socat?.lg.lgBulk?.rate_MBps)} |`,
    );
  }
  return L;
}
