// The timers echo-lab prints for user-timeout, close-wait and close-outage against the run:
// the start of each span read off the traced capture (an AF_PACKET capture of its own, apart
// from the one the scenario times with), the end from the run (the program's error, or the
// socket's disappearance from /proc/net/tcp polled here). Slow: run by `npm run test:e2e`.

import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { captureUnavailable, type Segment } from '../src/lab/capture.js';
import { findScenario, traced } from '../src/lab/index.js';
import { netnsUnavailable } from '../src/lab/netns.js';
import { onPort } from '../src/lab/recorder.js';
import { FULL_MATRIX } from './helpers.js';

const noCapture = !FULL_MATRIX
  ? 'these run in npm run test:e2e'
  : process.platform !== 'linux'
    ? 'Linux only'
    : captureUnavailable();
const noNetns = noCapture ?? netnsUnavailable();
if (noCapture) console.warn(`skipping: ${noCapture}`);
else if (noNetns) console.warn(`skipping the namespace timers: ${noNetns}`);

const run = promisify(execFile);
const nowUs = () => (performance.timeOrigin + performance.now()) * 1000;

const tracedRun = async (name: string) => {
  const r = await traced(findScenario(name)!);
  expect(r.checks.filter((c) => !c.ok).map((c) => c.what)).toEqual([]);
  if (!r.trace || !('segments' in r.trace)) throw new Error(`no trace: ${JSON.stringify(r.trace)}`);
  return { r, segments: r.trace.segments as Segment[] };
};

/** The client's first retransmission on the wire: the head of its queue, resent by the RTO timer. */
function firstRetransmission(segments: Segment[]): { first: Segment; rtx: Segment } {
  const client = segments.find((s) => s.flags.join() === 'SYN')!;
  const sent = segments.filter(
    (s) => s.sport === client.sport && (s.len > 0 || s.flags.includes('FIN')) && !s.flags.includes('RST'),
  );
  const rtx = sent.find((s, i) => sent.slice(0, i).some((e) => e.seq === s.seq))!;
  expect(rtx).toBeDefined();
  return { first: sent.find((s) => s.seq === rtx.seq)!, rtx };
}

describe.skipIf(!!noNetns)('dead-peer timers and TCP_USER_TIMEOUT, timed on the wire', () => {
  it('user-timeout: ETIMEDOUT 3 s (within 10 %) after the first retransmission of the unacknowledged data', async () => {
    const { r, segments } = await tracedRun('user-timeout');
    const t = r.timers!.find((x) => x.what.startsWith('user-timeout: ETIMEDOUT'))!;
    expect(t.predictedMs).toBe(3000); // TCP_USER_TIMEOUT as set
    const { first, rtx } = firstRetransmission(segments);
    expect(first.len).toBeGreaterThan(0);
    // the scenario's own capture saw the same retransmission: the same kernel stamp
    expect(Math.abs(t.fromUs! - rtx.epochUs)).toBeLessThan(1000);
    // from that retransmission on this capture to the program's ETIMEDOUT
    const measured = (t.toUs! - rtx.epochUs) / 1000;
    expect(Math.abs(measured - 3000)).toBeLessThanOrEqual(300);
    // the retransmission came one RTO after the data first left: not counted by the timer
    expect(rtx.epochUs - first.epochUs).toBeGreaterThan(150_000);
  }, 60_000);

  it('keepalive: the dead peer reported 4 s (within 10 %) after the last segment from the server', async () => {
    const { r, segments } = await tracedRun('keepalive');
    const t = r.timers!.find((x) => x.what.startsWith('keepalive: ') && x.fromUs !== undefined)!;
    expect(t.predictedMs).toBe(4000); // 1 s idle + 3 probes 1 s apart
    const client = segments.find((s) => s.flags.join() === 'SYN')!;
    const last = segments.filter((s) => s.dport === client.sport && s.epochUs < t.toUs!).at(-1)!;
    expect(Math.abs(t.fromUs! - last.epochUs)).toBeLessThan(1000);
    expect(Math.abs((t.toUs! - last.epochUs) / 1000 - 4000)).toBeLessThanOrEqual(400);
    // nothing but the probes left the client after the last segment it received
    const after = segments.filter((s) => s.sport === client.sport && s.epochUs > last.epochUs);
    expect(after.filter((s) => s.len > 0)).toEqual([]);
    expect(after.length).toBeGreaterThanOrEqual(3);
  }, 60_000);

  it('heartbeat: reported 3 s (within 10 %) after the unanswered echo left, 4 s after the cut', async () => {
    const { r, segments } = await tracedRun('heartbeat');
    const t = r.timers!.find((x) => x.what.startsWith('heartbeat: ') && x.fromUs !== undefined)!;
    expect(t.predictedMs).toBe(3000); // --heartbeat-timeout
    const client = segments.find((s) => s.flags.join() === 'SYN')!;
    const data = segments.filter((s) => s.sport === client.sport && s.len > 0);
    // the echo never answered: the last one sent, at its first transmission
    const echo = data.find((s) => s.seq === data.at(-1)!.seq)!;
    expect(segments.some((s) => s.dport === client.sport && s.epochUs > echo.epochUs && s.len > 0)).toBe(
      false,
    );
    expect(Math.abs(t.fromUs! - echo.epochUs)).toBeLessThan(1000);
    expect(Math.abs((t.toUs! - echo.epochUs) / 1000 - 3000)).toBeLessThanOrEqual(300);
    // and 1 s of quiet + 3 s, from the cut on the scenario's clock
    const fromCut = r.timers!.find((x) => x.what.startsWith('heartbeat: ') && x.fromUs === undefined)!;
    expect(fromCut.predictedMs).toBe(4000);
    expect(Math.abs(fromCut.measuredMs! - 4000)).toBeLessThanOrEqual(400);
  }, 60_000);

  it('close-outage: ETIMEDOUT cuts the FIN retransmissions short, at least 2 s after the first', async () => {
    const { r, segments } = await tracedRun('close-outage');
    const t = r.timers!.find((x) => x.what.startsWith('close-outage: ETIMEDOUT'))!;
    expect(t.predictedMs).toBe(2000);
    const { first, rtx } = firstRetransmission(segments);
    expect(first.flags).toContain('FIN');
    expect(Math.abs(t.fromUs! - rtx.epochUs)).toBeLessThan(1000);
    const fins = segments.filter((s) => s.sport === first.sport && s.flags.includes('FIN'));
    const last = fins.at(-1)!.epochUs;
    const nextDue = last + 2 * (last - fins.at(-2)!.epochUs);
    expect(t.toUs! - rtx.epochUs).toBeGreaterThanOrEqual(1_800_000);
    expect(t.toUs!).toBeLessThan(nextDue);
  }, 60_000);
});

/** whether a socket connected to `port` is in FIN_WAIT2 (ss, filtered in the kernel) */
async function finWait2To(port: number): Promise<boolean> {
  const { stdout } = await run('ss', ['-tanH', 'state', 'fin-wait-2', '(', 'dport', '=', `:${port}`, ')']);
  return stdout.trim() !== '';
}

describe.skipIf(!!noCapture)('FIN_WAIT2 lifetime (TCP_LINGER2), from the wire to /proc/net/tcp', () => {
  it('close-wait: the orphaned FIN_WAIT2 lives 2 s (within 10 %) from the ACK of its FIN', async (ctx) => {
    // watch it here too, apart from the scenario: the client's FIN_WAIT2 toward the server's
    // port, polled with ss from the moment the port is made until it is gone
    let seenUs: number | undefined;
    let goneUs: number | undefined;
    let watching: Promise<void> | undefined;
    const stop = onPort((port) => {
      watching ??= (async () => {
        const end = Date.now() + 15_000;
        while (goneUs === undefined && Date.now() < end) {
          const at = nowUs();
          if (await finWait2To(port)) seenUs ??= at;
          else if (seenUs !== undefined) goneUs = nowUs();
          await new Promise((res) => setTimeout(res, 2));
        }
      })();
    });
    let r: Awaited<ReturnType<typeof traced>>;
    try {
      r = await traced(findScenario('close-wait')!);
    } finally {
      stop();
    }
    await watching;
    // the FIN_WAIT2 lives in a TIME_WAIT-table entry: with that table full (another program's
    // load) the kernel closes it at once, and the scenario reports the run as skipped
    if (r.skipped) return ctx.skip(r.skipped);
    expect(r.checks.filter((c) => !c.ok).map((c) => c.what)).toEqual([]);
    if (!r.trace || !('segments' in r.trace)) throw new Error(`no trace: ${JSON.stringify(r.trace)}`);
    const segments = r.trace.segments;
    const t = r.timers!.find((x) => x.what.startsWith('close-wait'))!;
    expect(t.predictedMs).toBe(2000); // TCP_LINGER2 2 s, above 3.5 × the 200 ms RTO of lo
    // the ACK of the client's FIN, on the traced capture
    const syn = segments.find((s) => s.flags.join() === 'SYN')!;
    const fin = segments.find((s) => s.sport === syn.sport && s.flags.includes('FIN'))!;
    const ack = segments.find(
      (s) => s.dport === syn.sport && s.flags.includes('ACK') && s.ack === (fin.seq + 1) >>> 0,
    )!;
    expect(ack).toBeDefined();
    expect(Math.abs(t.fromUs! - ack.epochUs)).toBeLessThan(1000);
    // the kernel's timer (ss -o in the scenario) runs out 2 s (within 10 %) after that ACK
    expect(Math.abs((t.toUs! - ack.epochUs) / 1000 - 2000)).toBeLessThanOrEqual(200);
    // and the socket, seen here in FIN_WAIT2 after the ACK, is seen gone only once it has
    expect(seenUs).toBeGreaterThan(ack.epochUs);
    expect(goneUs).toBeGreaterThan(t.toUs! - 50_000);
    expect(goneUs! - ack.epochUs).toBeLessThan(2000_000 + 5_000_000);
  }, 60_000);
});

describe.skipIf(!!noNetns)('TIME_WAIT length, restarted by each FIN', () => {
  it('time-wait-why: 60 s (within 10 %) from the last FIN received, at first and after the resent FINs', async () => {
    const { r, segments } = await tracedRun('time-wait-why');
    const tw = r.timers!.filter((x) => x.what.startsWith('time-wait-why: TIME_WAIT'));
    expect(tw).toHaveLength(2);
    const client = segments.find((s) => s.flags.join() === 'SYN')!;
    const fins = segments.filter((s) => s.sport === client.sport && s.flags.includes('FIN'));
    const started = tw.map((t) => {
      expect(t.predictedMs).toBe(60_000);
      // the FIN it counts from is on this capture too, stamped alike
      const fin = fins.find((s) => Math.abs(s.epochUs - t.fromUs!) < 1000)!;
      expect(fin).toBeDefined();
      expect(Math.abs((t.toUs! - fin.epochUs) / 1000 - 60_000)).toBeLessThanOrEqual(6000);
      return fin;
    });
    // the later reading counts from a resent FIN, seconds after the first: the timer restarted
    expect(started[1]!.epochUs - started[0]!.epochUs).toBeGreaterThan(1_000_000);
    expect(tw[1]!.toUs! - tw[0]!.toUs!).toBeGreaterThan(1_000_000);
  }, 60_000);
});

describe.skipIf(!!noCapture)('SYN timers on lo', () => {
  it('backlog: the dropped SYN is retransmitted when computed, and the connect completes then', async () => {
    const { r, segments } = await tracedRun('backlog');
    const t = r.timers!.find((x) => x.what.startsWith('backlog: '))!;
    // the connection whose first SYN went unanswered
    const syns = segments.filter((s) => s.flags.join() === 'SYN');
    const byPort = new Map<number, Segment[]>();
    for (const s of syns) byPort.set(s.sport, [...(byPort.get(s.sport) ?? []), s]);
    const late = [...byPort.values()].find((l) => l.length > 1)!;
    expect(late).toBeDefined();
    const [first, rtx] = late;
    // the scenario's own capture timed the same two SYNs
    expect(Math.abs(t.fromUs! - first!.epochUs)).toBeLessThan(1000);
    expect(Math.abs((rtx!.epochUs - first!.epochUs) / 1000 - t.predictedMs)).toBeLessThanOrEqual(
      t.predictedMs * 0.1,
    );
    // answered: the SYN,ACK follows the retransmission
    const synAck = segments.find((s) => s.dport === first!.sport && s.flags.join() === 'SYN,ACK')!;
    expect(synAck.epochUs).toBeGreaterThanOrEqual(rtx!.epochUs);
    expect(Math.abs(t.toUs! - rtx!.epochUs)).toBeLessThan(1000);
  }, 60_000);

  it('connect-timeout: ETIMEDOUT 1 s (within 10 %) after the unanswered SYN left', async () => {
    const { r, segments } = await tracedRun('connect-timeout');
    const t = r.timers!.find((x) => x.what.startsWith('connect-timeout: '))!;
    expect(t.predictedMs).toBe(1000);
    const clients = segments.filter((s) => s.flags.join() === 'SYN');
    const ports = [...new Set(clients.map((s) => s.sport))];
    expect(ports).toHaveLength(3);
    const third = clients.find((s) => s.sport === ports[2])!;
    // never answered
    expect(segments.filter((s) => s.dport === third.sport)).toEqual([]);
    // the end is read on this process's clock: not early, and within 10 % less the event loop's
    // lateness at the deadline (loopLateMs, a timer due then), which a loaded machine adds
    const ms = (t.toUs! - third.epochUs) / 1000;
    expect(ms).toBeGreaterThanOrEqual(900);
    expect(Math.abs(ms - (t.loopLateMs ?? 0) - 1000)).toBeLessThanOrEqual(100);
  }, 60_000);
});
