// echo-lab's ladders and timers against independent witnesses: tcpdump on the same interface
// (same segments, kernel times within 1 ms), and the kernel's SYN schedule computed from the
// live sysctls against the SYNs on the wire (within 10 %). Slow: run by `npm run test:e2e`.

import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { once } from 'node:events';
import { closeSync, mkdtempSync, openSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { captureUnavailable, type Segment } from '../src/lab/capture.js';
import { findScenario, SCENARIOS, scenarioPorts, traced } from '../src/lab/index.js';
import { netnsUnavailable } from '../src/lab/netns.js';
import { onPort } from '../src/lab/recorder.js';
import { FULL_MATRIX } from './helpers.js';
import { CAPTURE_FLAGS, tcpdumpPath } from './tcpdump.js';

const noCapture = !FULL_MATRIX
  ? 'these run in npm run test:e2e'
  : process.platform === 'linux'
    ? captureUnavailable()
    : 'Linux only';
if (noCapture) console.warn(`skipping: ${noCapture}`);
if (!tcpdumpPath) console.warn('skipping the tcpdump comparison: tcpdump is not installed');

const dir = mkdtempSync(path.join(os.tmpdir(), 'lab-e2e-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

interface Dumped {
  us: number;
  key: string;
}

/**
 * A tcpdump on lo for one port, started the moment the scenario announces the port (before the
 * port is used): the announcement waits, blocking, until tcpdump says it is listening. One
 * tcpdump per port with a port filter keeps tcpdump's own queue small on a busy lo. Its ring
 * keeps headers only (-s 256: every TCP header with options fits) and is 16 MB (-B): with the
 * full snapshot libpcap sizes the ring's slots for lo's 64 KB MTU, so the default 2 MB ring
 * holds a few dozen packets and overflows ("packets dropped by kernel") while tcpdump waits
 * for a CPU.
 */
function startTcpdumpSync(file: string): ChildProcess & { port?: number } {
  const errFile = `${file}.err`;
  const port = Number(/-(\d+)\.pcap$/.exec(file)![1]);
  const fd = openSync(errFile, 'w');
  const p = spawn(tcpdumpPath!, ['-i', 'lo', ...CAPTURE_FLAGS, '-w', file, 'tcp', 'port', String(port)], {
    stdio: ['ignore', 'ignore', fd],
  });
  closeSync(fd);
  const nap = new Int32Array(new SharedArrayBuffer(4));
  const end = Date.now() + 20_000;
  while (Date.now() < end && !/listening on/.test(readFileSync(errFile, 'utf8'))) Atomics.wait(nap, 0, 0, 10);
  return p;
}

/** What tcpdump says on exit it lost itself: its ring was full ("N packets dropped by kernel"). */
function droppedByKernel(file: string): number {
  const m = /(\d+) packets? dropped by kernel/.exec(readFileSync(`${file}.err`, 'utf8'));
  return m ? Number(m[1]) : 0;
}

const LETTERS: Record<string, string> = { SYN: 'S', FIN: 'F', RST: 'R', PSH: 'P', ACK: '.', URG: 'U' };
const keyOf = (
  src: string,
  sport: number,
  dst: string,
  dport: number,
  flags: string,
  seq: number | undefined,
  ack: number,
  len: number,
) =>
  `${src}.${sport}>${dst}.${dport} [${[...flags].sort().join('')}] seq ${seq ?? '-'} ack ${ack} len ${len}`;
const ourKey = (s: Segment) =>
  keyOf(
    s.src,
    s.sport,
    s.dst,
    s.dport,
    s.flags.map((f) => LETTERS[f]).join(''),
    // tcpdump prints no seq for a bare ACK (no data, no SYN/FIN/RST)
    s.len > 0 || s.flags.some((f) => f === 'SYN' || f === 'FIN' || f === 'RST') ? s.seq : undefined,
    s.flags.includes('ACK') ? s.ack : 0,
    s.len,
  );

/** The pcap's TCP segments on these ports, as tcpdump prints them (-tt µs, -S absolute seq). */
function readDump(file: string, ports: Set<number>): Dumped[] {
  const out = execFileSync(tcpdumpPath!, ['-r', file, '-n', '-tt', '-S'], {
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'ignore'],
    maxBuffer: 1 << 28,
  });
  const rows: Dumped[] = [];
  for (const line of out.split('\n')) {
    const m =
      /^(\d+)\.(\d{6}) IP6? (\S+)\.(\d+) > (\S+)\.(\d+): Flags \[([^\]]*)\](?:, seq (\d+)(?::(\d+))?)?(?:, ack (\d+))?.*, length (\d+)/.exec(
        line,
      );
    if (!m) continue;
    const [, sec, usec, src, sp, dst, dp, flags, seq, , ack, len] = m;
    if (!ports.has(Number(sp)) && !ports.has(Number(dp))) continue;
    rows.push({
      us: Number(sec) * 1e6 + Number(usec),
      key: keyOf(
        src!,
        Number(sp),
        dst!,
        Number(dp),
        flags!,
        seq === undefined ? undefined : Number(seq),
        Number(ack ?? 0),
        Number(len),
      ),
    });
  }
  return rows;
}

// the scenarios whose traffic is on lo (the namespace ones are on their own veth)
const onLo = SCENARIOS.filter((s) => !s.netns).map((s) => s.name);

describe.skipIf(!!noCapture || !tcpdumpPath)('every ladder matches tcpdump on the same ports', () => {
  /** One traced run of a scenario with a tcpdump per announced port; tcpdump's rows deduplicated. */
  async function run(name: string, attempt: number) {
    const dumps = new Map<number, ChildProcess>();
    const fileOf = (port: number) => path.join(dir, `${name}-${attempt}-${port}.pcap`);
    const stopHearing = onPort((port) => {
      if (!dumps.has(port)) dumps.set(port, startTcpdumpSync(fileOf(port)));
    });
    let r: Awaited<ReturnType<typeof traced>>;
    try {
      r = await traced(findScenario(name)!);
    } finally {
      stopHearing();
      // let tcpdump's buffer reach the file, then stop it
      await new Promise((res) => setTimeout(res, 300));
      await Promise.all(
        [...dumps.values()].map(async (d) => {
          d.kill('SIGINT');
          if (d.exitCode === null && d.signalCode === null) await once(d, 'exit');
        }),
      );
    }
    if (!r.trace || !('segments' in r.trace)) throw new Error(`no trace: ${JSON.stringify(r.trace)}`);
    const ours = r.trace.segments;
    // the ports the capture's kernel filter let through: the scenario's own
    const ports = new Set(r.trace.ports ?? scenarioPorts(r));
    // one tcpdump per port: a connection between two of them is in both files (each tcpdump
    // stamps its own copy, µs apart): keep one copy
    const all = [...dumps.keys()]
      .flatMap((p) => readDump(fileOf(p), ports).map((d) => ({ ...d, p })))
      .sort((a, b) => a.us - b.us);
    const theirs = all.filter(
      (d, i) => !all.slice(0, i).some((e) => e.p !== d.p && e.key === d.key && d.us - e.us < 1000),
    );
    const dropped = [...dumps.keys()].reduce((n, p) => n + droppedByKernel(fileOf(p)), 0);
    const worst = Math.max(0, ...ours.map((s, i) => Math.abs(s.epochUs - (theirs[i]?.us ?? Infinity))));
    const same = ours.map(ourKey).join('\n') === theirs.map((d) => d.key).join('\n') && worst < 1000;
    return { r, dumps, ports, ours, theirs, dropped, worst, same };
  }

  for (const name of onLo) {
    it(name, async () => {
      let a = await run(name, 0);
      // tcpdump that lost packets itself is no witness: the scenario is run once more; a second
      // loss is reported as such (the comparison is not loosened)
      if (!a.same && a.dropped > 0) {
        console.warn(`${name}: tcpdump dropped ${a.dropped} packet(s) itself; running the scenario again`);
        a = await run(name, 1);
        if (!a.same && a.dropped > 0)
          throw new Error(
            `tcpdump dropped ${a.dropped} packet(s) itself ("packets dropped by kernel") on two runs: its file lacks segments, so it cannot witness this ladder`,
          );
      }
      const { r, dumps, ports, ours, theirs, worst } = a;
      expect(r.checks.filter((c) => !c.ok)).toEqual([]);
      expect([...dumps.keys()].sort()).toEqual([...ports].sort());
      // same segments, in the same order
      expect(ours.map(ourKey)).toEqual(theirs.map((d) => d.key));
      // the same kernel clock: µs times within 1 ms of tcpdump's
      expect(worst).toBeLessThan(1000);
      for (const s of ours) expect(s.clock).toBe('kernel');
    }, 180_000);
  }
});

describe.skipIf(!!noCapture)('timers: computed from live sysctls, within 10 % of the run', () => {
  it('syn-retries: each SYN retransmission and ETIMEDOUT as computed', async () => {
    const r = await traced(findScenario('syn-retries')!);
    expect(r.ok).toBe(true);
    if (!r.trace || !('segments' in r.trace)) throw new Error('no trace');
    // read the wire directly: the connection that never got an answer
    const dropped = r.trace.ladders.find((l) => l.rows.every((x) => x.flags.join() === 'SYN'))!;
    expect(dropped.rows.slice(1).every((x) => x.retransmission)).toBe(true);
    const timers = r.timers ?? [];
    const rtx = timers.filter((t) => t.what.startsWith('SYN retransmission'));
    expect(rtx.length).toBe(dropped.rows.length - 1);
    rtx.forEach((t, i) => {
      const wire = dropped.rows[i + 1]!.t;
      expect(Math.abs(wire - t.predictedMs)).toBeLessThanOrEqual(t.predictedMs * 0.1);
    });
    const et = timers.find((t) => t.what === 'ETIMEDOUT')!;
    // read on this process's clock: not early, and within 10 % less the event loop's lateness then
    expect(et.measuredMs!).toBeGreaterThanOrEqual(et.predictedMs * 0.9);
    expect(Math.abs(et.measuredMs! - (et.loopLateMs ?? 0) - et.predictedMs)).toBeLessThanOrEqual(
      et.predictedMs * 0.1,
    );
    // the printed kernel setting carries the computed default schedule, not "6 ≈ 127 s"
    const k = r.kernel.find((x) => x.name === 'tcp_syn_retries')!;
    expect(k.meaning).toMatch(/ETIMEDOUT at \d+ s/);
  }, 60_000);
});

const noNetns = process.platform === 'linux' ? netnsUnavailable() : 'Linux only';
describe.skipIf(!!noCapture || !!noNetns)('namespace scenarios: captured on their veth', () => {
  it('keepalive: the probes are drawn and marked, then the RST', async () => {
    const r = await traced(findScenario('keepalive')!);
    expect(r.checks.filter((c) => !c.ok)).toEqual([]);
    if (!r.trace || !('ladders' in r.trace)) throw new Error(`no ladder: ${JSON.stringify(r.trace)}`);
    const [l, ...more] = r.trace.ladders;
    expect(more).toHaveLength(0);
    expect(l!.rows.slice(0, 3).map((x) => x.flags.join())).toEqual(['SYN', 'SYN,ACK', 'ACK']);
    const probes = l!.rows.filter((x) => x.keepaliveProbe);
    expect(probes.length).toBe(3); // TCP_KEEPCNT
    expect(l!.rows.at(-1)!.flags).toContain('RST');
    // probes TCP_KEEPINTVL (1 s) apart, on the kernel's clock
    for (let i = 1; i < probes.length; i++) {
      const gap = probes[i]!.t - probes[i - 1]!.t;
      expect(Math.abs(gap - 1000)).toBeLessThanOrEqual(100);
    }
  }, 60_000);

  it('close-outage: FIN_WAIT1, the FIN retransmitted with doubling waits, then no TIME_WAIT', async () => {
    const r = await traced(findScenario('close-outage')!);
    expect(r.checks.filter((c) => !c.ok)).toEqual([]);
    if (!r.trace || !('ladders' in r.trace)) throw new Error(`no ladder: ${JSON.stringify(r.trace)}`);
    const l = r.trace.ladders[0]!;
    const fins = l.rows.filter((x) => x.toServer && x.flags.includes('FIN'));
    expect(fins.length).toBeGreaterThan(2);
    expect(fins.slice(1).every((x) => x.retransmission)).toBe(true);
    expect(fins[0]!.clientState).toBe('FIN_WAIT1');
    expect(l.rows.map((x) => x.clientState)).not.toContain('TIME_WAIT');
    // the waits between retransmissions double
    const gaps = fins.slice(1).map((x, i) => x.t - fins[i]!.t);
    for (let i = 2; i < gaps.length; i++) expect(gaps[i]! / gaps[i - 1]!).toBeGreaterThan(1.5);
    // and the socket is gone from the client's namespace (ss / /proc there), never in TIME_WAIT
    const after = r.states.find((s) => s.label === 'after the kernel gave up')!;
    expect(after.entries).toEqual([]);
  }, 60_000);

  it('time-wait-why: the last ACK lost, the FIN resent, TIME_WAIT still there and restarted', async () => {
    const r = await traced(findScenario('time-wait-why')!);
    expect(r.checks.filter((c) => !c.ok)).toEqual([]);
    if (!r.trace || !('ladders' in r.trace)) throw new Error(`no ladder: ${JSON.stringify(r.trace)}`);
    const l = r.trace.ladders[0]!;
    // the server closed first; the client's FIN is resent because the last ACK never arrives
    const fins = l.rows.filter((x) => x.flags.includes('FIN'));
    expect(fins[0]!.toServer).toBe(false);
    const clientFins = fins.filter((x) => x.toServer);
    expect(clientFins.length).toBeGreaterThanOrEqual(4);
    expect(clientFins.slice(1).every((x) => x.retransmission)).toBe(true);
    // the server's socket is still in TIME_WAIT (ss in its namespace) while they arrive
    expect(r.states[0]!.entries.some((e) => e.state === 'TIME_WAIT')).toBe(true);
  }, 60_000);
});
