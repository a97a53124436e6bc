// host-unreachable read against the run itself: the capture on the client's link (the router's
// ICMP, the SYNs before and after it) and the connect errors with the time the program met them,
// not the printed steps. Three network namespaces; about 6 s, so it runs in `npm run test:e2e`.

import { execFileSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { captureUnavailable, type Segment } from '../src/lab/capture.js';
import { findScenario, traced } from '../src/lab/index.js';
import { netnsUnavailable, ROUTER_ADDR } from '../src/lab/netns.js';
import { FULL_MATRIX } from './helpers.js';

const skip = !FULL_MATRIX
  ? 'these run in npm run test:e2e'
  : process.platform !== 'linux'
    ? 'Linux only'
    : (netnsUnavailable() ?? captureUnavailable());
if (skip) console.warn(`skipping host-unreachable: ${skip}`);

/** the targets, the ICMP code the router answers each with, and whether ARP delays it */
const TARGETS = [
  { addr: '198.18.2.5', code: 1, arp: false },
  { addr: '198.18.2.6', code: 13, arp: false },
  { addr: '198.18.1.9', code: 1, arp: true },
];

describe.skipIf(!!skip)('host-unreachable: an ICMP from a router during connect, on the wire', () => {
  it('the ICMP arrives, no SYN follows it, connect() fails with EHOSTUNREACH at once', async () => {
    const r = await traced(findScenario('host-unreachable')!);
    expect(r.skipped).toBeUndefined();
    expect(r.checks.filter((c) => !c.ok)).toEqual([]);
    if (!r.trace || !('segments' in r.trace)) throw new Error(`no trace: ${JSON.stringify(r.trace)}`);
    const segs = r.trace.segments as Segment[];
    // one connect error per target, each stamped with when the program met it
    // (and EACCES from the client's own prohibit route, last)
    expect(r.errors.map((e) => e.code)).toEqual(['EHOSTUNREACH', 'EHOSTUNREACH', 'EHOSTUNREACH', 'EACCES']);
    TARGETS.forEach((t, i) => {
      const syns = segs.filter((s) => !s.icmp && s.dst === t.addr && s.flags.join() === 'SYN');
      const icmps = segs.filter((s) => s.icmp?.quoted.dst === t.addr);
      expect(syns.length, t.addr).toBeGreaterThan(0);
      expect(icmps.length, t.addr).toBeGreaterThan(0);
      const icmp = icmps[0]!;
      // the real ICMP: destination unreachable with the code the route or ARP calls for, sent
      // by the router, quoting this connection's SYN
      expect(icmp.icmp!.type).toBe(3);
      expect(icmp.icmp!.code).toBe(t.code);
      expect(icmp.src).toBe(ROUTER_ADDR);
      expect(icmp.icmp!.quoted.sport).toBe(syns[0]!.sport);
      expect(icmp.icmp!.quoted.seq).toBe(syns[0]!.seq);
      // Linux: no SYN after it. The ARP case shows that retransmissions do reach this capture
      // (the router answers only after its ARP probes): 1 s apart until the ICMP, then none
      const before = syns.filter((s) => s.epochUs <= icmp.epochUs);
      expect(syns.filter((s) => s.epochUs > icmp.epochUs)).toEqual([]);
      if (t.arp) {
        expect(before.length).toBeGreaterThanOrEqual(2);
        const arpMs = (icmp.epochUs - syns[0]!.epochUs) / 1000;
        expect(arpMs).toBeGreaterThan(2500);
        expect(arpMs).toBeLessThan(4500);
      } else expect(before.length).toBe(1);
      // the connect error reached the program right after the ICMP: far sooner than the next
      // SYN would have left (1 s); a few ms on an idle machine
      const err = r.errors[i]!;
      expect(err.atUs).toBeDefined();
      const lagMs = (err.atUs! - icmp.epochUs) / 1000;
      expect(lagMs).toBeGreaterThan(-2);
      expect(lagMs).toBeLessThan(500);
    });
    // the scenario kept capturing past the next SYN's due time after the last ICMP: the check
    // holds only when the window covered it
    expect(r.checks.filter((c) => /no SYN after the ICMP/.test(c.what)).length).toBe(3);
    // the ladder: each failed connect's ICMP row closes the client; the control connection is whole
    const ladders = r.trace.ladders;
    for (const t of TARGETS) {
      const l = ladders.find((x) => x.server === `${t.addr}:7007`)!;
      expect(l, t.addr).toBeDefined();
      const row = l.rows.find((x) => x.icmp)!;
      expect(row.toServer).toBe(false);
      expect(row.icmp!.from).toBe(ROUTER_ADDR);
      expect(row.icmp!.errno).toBe('EHOSTUNREACH');
      expect(row.clientState).toBe('CLOSED');
    }
    // the client's own prohibit route: nothing on the wire for that address, not even a SYN
    expect(segs.filter((s) => s.dst === '198.18.3.6' || s.icmp?.quoted.dst === '198.18.3.6')).toEqual([]);
    expect(
      ladders.some(
        (l) =>
          l.rows
            .slice(0, 3)
            .map((x) => x.flags.join())
            .join(' ') === 'SYN SYN,ACK ACK',
      ),
    ).toBe(true);
    // and its three namespaces are gone (named after this process's pid)
    const left = execFileSync('ip', ['netns', 'list'], { encoding: 'utf8' })
      .split('\n')
      .filter((l) => new RegExp(`^ek[CRS]-${process.pid % 100000}\\d`).test(l));
    expect(left).toEqual([]);
  }, 90_000);
});
