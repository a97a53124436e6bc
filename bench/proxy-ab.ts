// tsx bench/proxy-ab.ts --before DIR [--mid DIR] [--reps N] [--seconds S] [--loads pp,bulk]
// Same-run A/B of echo-proxy's forwarding path: echo-proxy from DIR ("before", a built
// checkout of this repo) against echo-proxy from this tree ("after") and HAProxy `mode tcp`,
// (and with --mid, echo-proxy from a third checkout: one change's A/B inside a series),
// all in front of one plain Node `s.pipe(s)` upstream, up at once on port 0 (loopback) and
// driven by the C load generator with npm run bench's loads. Runs go round-robin within each
// rep (the order rotated each rep); each figure is the median over reps, with the forwarder's
// own CPU time per round trip (pp) or per MB (bulk) from /proc, and the after/before ratio's
// min–max over the reps. Prints a markdown table and writes it to bench/results-proxy-ab.md.

import { existsSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';

const opts = parseArgs({
  options: {
    before: { type: 'string' },
    mid: { type: 'string' },
    reps: { type: 'string', default: '5' },
    seconds: { type: 'string', default: '3' },
    loads: { type: 'string', default: 'pp,bulk' },
  },
  strict: true,
}).values;
if (!opts.before || !existsSync(path.join(opts.before, 'bin', 'echo-proxy.js'))) {
  console.error('proxy-ab: --before DIR (a built checkout with bin/echo-proxy.js) is required');
  process.exit(2);
}
const reps = Number(opts.reps);
process.env.BENCH_SECONDS = opts.seconds;
const { lg, lgArgs, median, root, startServer } = await import('./tools.js');
const { proxySpecs, UPSTREAM } = await import('./proxy.js');

const loads = opts.loads!.split(',') as ('pp' | 'bulk')[];
const up = await startServer('pxy-ab-upstream', UPSTREAM);
const specs = proxySpecs(up.port);
const ha = specs.find((s) => s.name === 'haproxy');
const ours = specs.find((s) => s.name === 'echo-proxy')!;
const fromDir = (dir: string) => (p: number) => {
  const [cmd, args] = ours.command(p);
  return [cmd, [path.join(dir, 'bin', 'echo-proxy.js'), ...args.slice(1)]] as [string, string[]];
};
const names = ['before', ...(opts.mid ? ['mid'] : []), 'after', ...(ha ? ['haproxy'] : [])];
const commands: Record<string, (p: number) => [string, string[]]> = {
  before: fromDir(path.resolve(opts.before)),
  ...(opts.mid ? { mid: fromDir(path.resolve(opts.mid)) } : {}),
  after: fromDir(root),
  ...(ha ? { haproxy: ha.command } : {}),
};
const servers = [];
for (const n of names) servers.push(await startServer(`pxy-ab-${n}`, commands[n]!));
type Fig = { rate: number; cpu: number };
const figs: Record<string, Record<string, Fig[]>> = {};
try {
  for (let r = 0; r < reps; r++) {
    for (const load of loads) {
      for (let i = 0; i < servers.length; i++) {
        const s = servers[(i + r) % servers.length]!;
        const res = lg(lgArgs(load === 'pp' ? 'lgPp' : 'lgBulk', s.port), { serverPid: s.pid });
        const rate = load === 'pp' ? res.rate! : res.rate_MBps!;
        figs[load] ??= {};
        const byName = figs[load];
        byName[s.name] ??= [];
        byName[s.name].push({ rate, cpu: res.server_cpu_us! });
        console.error(
          `rep ${r + 1} ${load} ${s.name}: ${rate.toFixed(0)} cpu ${res.server_cpu_us?.toFixed(2)}`,
        );
      }
    }
  }
} finally {
  for (const s of servers) await s.stop();
  await up.stop();
}

const f = (x: number | undefined, d = 0) => (x === undefined ? '—' : x.toFixed(d));
const L = [
  `<!-- tsx bench/proxy-ab.ts, ${new Date().toISOString().slice(0, 16)} UTC, ${reps} reps × ${opts.seconds} s; 2 shared cores, other engineers' benches running -->`,
  '',
  '| load | forwarder | rate (median) | CPU µs per round trip (pp) or MB (bulk), median, min–max | × before (median, min–max over reps) | × HAProxy |',
  '|---|---|---|---|---|---|',
];
for (const load of loads) {
  const byName = figs[load]!;
  for (const n of names) {
    const rs = byName[`pxy-ab-${n}`]!;
    const rate = median(rs.map((x) => x.rate));
    const cpus = rs.map((x) => x.cpu);
    const before = byName['pxy-ab-before']!;
    const ratios = rs.map((x, i) => x.rate / before[i]!.rate);
    const haRate = byName['pxy-ab-haproxy'] ? median(byName['pxy-ab-haproxy'].map((x) => x.rate)) : undefined;
    L.push(
      `| ${load === 'pp' ? 'ping-pong rt/s' : 'bulk MB/s'} | ${n} | ${f(rate)} | ${f(median(cpus), 2)} (${f(Math.min(...cpus), 2)}–${f(Math.max(...cpus), 2)}) | ${f(median(ratios), 2)} (${f(Math.min(...ratios), 2)}–${f(Math.max(...ratios), 2)}) | ${rate && haRate ? (rate / haRate).toFixed(2) : '—'} |`,
    );
  }
}
const out = L.join('\n');
console.log(out);
writeFileSync(path.join(root, 'bench', 'results-proxy-ab.md'), `${out}\n`);
