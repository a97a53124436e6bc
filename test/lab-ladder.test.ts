// The packet ladder read against the run itself: the capture's own segments (kernel receive
// timestamps, TCP options) and what the kernel did (the segments that came back), not the
// printed text.

import { describe, expect, it } from 'vitest';
import { captureUnavailable, type Segment } from '../src/lab/capture.js';
import { findScenario, traced } from '../src/lab/index.js';
import type { Ladder } from '../src/lab/ladder.js';

const noCapture = process.platform === 'linux' ? captureUnavailable() : 'Linux only';
if (noCapture) console.warn(`skipping the ladder tests: ${noCapture}`);

const tracedRun = async (name: string) => {
  const r = await traced(findScenario(name)!);
  if (!r.trace || !('ladders' in r.trace)) throw new Error(`no ladder: ${JSON.stringify(r.trace)}`);
  return { r, segments: r.trace.segments as Segment[], ladders: r.trace.ladders as Ladder[] };
};
const flagsOf = (l: Ladder) => l.rows.map((x) => `${x.toServer ? '>' : '<'} ${x.flags.join(',')}`);

describe.skipIf(!!noCapture)('the ladder is the run', () => {
  it('every scenario hands the capture its ports: sockopts, sigpipe, fork-holds-port draw ladders', async () => {
    for (const name of ['sockopts', 'sigpipe', 'fork-holds-port']) {
      const { r, ladders } = await tracedRun(name);
      expect(r.ok, name).toBe(true);
      expect(ladders.length, name).toBeGreaterThan(0);
      for (const l of ladders) expect(flagsOf(l)[0], name).toBe('> SYN');
    }
  });

  it('nonblocking-connect draws its refused and its dropped-SYN connections too', async () => {
    const { ladders } = await tracedRun('nonblocking-connect');
    const shapes = ladders.map((l) => flagsOf(l).join(' '));
    expect(shapes).toContain('> SYN < RST,ACK'); // refused
    // the dropped SYN: only SYNs from the client, nothing back
    expect(shapes.some((s) => /^> SYN( > SYN)*$/.test(s))).toBe(true);
    expect(shapes.some((s) => s.startsWith('> SYN < SYN,ACK > ACK'))).toBe(true);
  });

  it('times are the kernel receive timestamps, in µs', async () => {
    const { segments, ladders } = await tracedRun('econnreset');
    expect(segments.length).toBeGreaterThan(3);
    for (const s of segments) expect(s.clock).toBe('kernel');
    // Date.now() in the reader gives whole ms; kernel stamps have µs in them
    expect(segments.some((s) => !Number.isInteger(s.t))).toBe(true);
    const rows = ladders[0]!.rows;
    // the handshake's ACK leaves in the same softirq that received the SYN,ACK: µs apart
    const synAck = rows.findIndex((x) => x.flags.join() === 'SYN,ACK');
    expect(rows[synAck + 1]!.flags).toEqual(['ACK']);
    expect(rows[synAck + 1]!.us - rows[synAck]!.us).toBeLessThan(1000);
  });

  it('econnrefused: a SYN answered by RST puts no server in SYN_RECV', async () => {
    const { ladders } = await tracedRun('econnrefused');
    expect(flagsOf(ladders[0]!)).toEqual(['> SYN', '< RST,ACK']);
    expect(ladders[0]!.rows.map((x) => x.serverState).filter(Boolean)).toEqual([]);
  });

  it('connect-timeout: a dropped SYN puts no server in SYN_RECV', async () => {
    const { ladders } = await tracedRun('connect-timeout');
    const dropped = ladders.filter((l) => l.rows.every((x) => x.toServer && x.flags.join() === 'SYN'));
    expect(dropped.length).toBe(1);
    expect(dropped[0]!.rows.map((x) => x.serverState).filter(Boolean)).toEqual([]);
  });

  it('window fields are scaled by the sender’s wscale from its SYN', async () => {
    const { segments, ladders } = await tracedRun('time-wait');
    const l = ladders[0]!;
    const syns = segments.filter((s) => s.flags.includes('SYN'));
    expect(syns.every((s) => s.wscale !== undefined)).toBe(true);
    const data = l.rows.find((x) => x.toServer && x.len > 0)!;
    expect(data.wscale).toBe(syns[0]!.wscale);
    expect(data.win).toBe(data.rawWin * 2 ** data.wscale!);
    expect(data.label).toContain(`win=${data.win}`);
  });
});

describe.skipIf(!!noCapture)('the ladder is the run (seconds long)', () => {
  it('close-wait: the late FIN meets an expired FIN_WAIT2, answered with RST: no TIME_WAIT', async () => {
    const { ladders } = await tracedRun('close-wait');
    const l = ladders[0]!;
    const f = flagsOf(l);
    const lateFin = f.lastIndexOf('< FIN,ACK');
    expect(lateFin).toBeGreaterThan(0);
    expect(f[lateFin + 1]).toBe('> RST');
    expect(l.rows.map((x) => x.clientState)).not.toContain('TIME_WAIT');
    expect(l.rows[lateFin]!.states.client).toBe('CLOSED');
  }, 20_000);
});
