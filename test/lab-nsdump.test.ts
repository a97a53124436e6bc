// The namespace scenarios' ladders against tcpdump run inside the same namespace, on the same
// veth: tcpdump is started (and listening) before the scenario's first segment, through the
// hook withTwoHosts and withRouter call once the veth is up. Same segments (flags, order,
// lengths, seq/ack, absolute and relative), µs times within 1 ms; the same ICMP errors (type,
// code, sender, quoted segment), µs times within 1 ms. Slow: run by `npm run test:e2e`.

import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { captureUnavailable, type Segment } from '../src/lab/capture.js';
import { findScenario, SCENARIOS, traced } from '../src/lab/index.js';
import type { Ladder } from '../src/lab/ladder.js';
import { type NamespacePair, netnsUnavailable, onNamespaces, ROUTER_ADDR } from '../src/lab/netns.js';
import { FULL_MATRIX } from './helpers.js';
import { CAPTURE_FLAGS, tcpdumpPath } from './tcpdump.js';

const noRun = !FULL_MATRIX
  ? 'these run in npm run test:e2e'
  : process.platform !== 'linux'
    ? 'Linux only'
    : (captureUnavailable() ?? netnsUnavailable());
if (noRun) console.warn(`skipping: ${noRun}`);
if (!tcpdumpPath) console.warn('skipping the namespace tcpdump comparison: tcpdump is not installed');

const dir = mkdtempSync(path.join(os.tmpdir(), 'lab-nsdump-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/**
 * tcpdump inside the client's namespace on its veth end, writing nanosecond stamps; resolves
 * once it says it is listening (so before any scenario traffic). Keeps TCP, ICMP, and the UDP
 * datagram the lab's capture sends to port 9 when it stops: what follows the last one the lab
 * never read. Headers only (-s 256) in a 16 MB ring (-B), so a busy moment does not fill it.
 */
async function startTcpdump(pair: NamespacePair, file: string): Promise<() => Promise<void>> {
  const p: ChildProcess = spawn(
    'ip',
    [
      'netns',
      'exec',
      pair.client,
      tcpdumpPath!,
      '-i',
      pair.clientIf,
      ...CAPTURE_FLAGS,
      '--time-stamp-precision=nano',
      '-w',
      file,
      'tcp or icmp or (udp and dst port 9)',
    ],
    { stdio: ['ignore', 'ignore', 'pipe'] },
  );
  let err = '';
  await new Promise<void>((resolve, reject) => {
    const bound = setTimeout(() => reject(new Error(`tcpdump did not start: ${err}`)), 20_000);
    p.stderr!.on('data', (d) => {
      err += d;
      if (/listening on/.test(err)) {
        clearTimeout(bound);
        resolve();
      }
    });
    p.once('exit', (code) => {
      clearTimeout(bound);
      reject(new Error(`tcpdump exited (${code}): ${err}`));
    });
  });
  return async () => {
    if (p.exitCode !== null || p.signalCode !== null) return;
    p.kill('SIGINT');
    await once(p, 'exit');
  };
}

interface Dumped {
  /** µs since the epoch (from tcpdump's ns stamp) */
  us: number;
  src: string;
  sport: number;
  dst: string;
  dport: number;
  /** tcpdump's letters, sorted */
  flags: string;
  seq?: number;
  ack?: number;
  len: number;
  /** an ICMP unreachable quoting a TCP segment (src/dst its IP ends; sport/dport/flags/len 0) */
  icmp?: {
    type: number;
    code: number;
    quoted: { src: string; sport: number; dst: string; dport: number; seq: number };
  };
}

/** An ICMP packet's bytes as tcpdump -x prints them (from the IP header) → what it says about TCP. */
function icmpOf(hex: string): Dumped['icmp'] {
  const b = Buffer.from(hex, 'hex');
  const at = (b[0]! & 0x0f) * 4;
  const q = at + 8;
  if (b.length < q + 20 || b[q + 9] !== 6) return undefined; // not quoting TCP
  const qt = q + (b[q]! & 0x0f) * 4;
  if (b.length < qt + 8) return undefined;
  const addr = (o: number) => [...b.subarray(o, o + 4)].join('.');
  return {
    type: b[at]!,
    code: b[at + 1]!,
    quoted: {
      src: addr(q + 12),
      sport: b.readUInt16BE(qt),
      dst: addr(q + 16),
      dport: b.readUInt16BE(qt + 2),
      seq: b.readUInt32BE(qt + 4),
    },
  };
}

/**
 * The pcap's TCP segments and ICMP unreachables about TCP segments, up to the lab capture's last
 * stop marker (-tt ns stamps, -S absolute seq, -x each packet's bytes under its line).
 */
function readDump(file: string): Dumped[] {
  const out = execFileSync(
    tcpdumpPath!,
    ['-r', file, '-n', '-tt', '-S', '-x', '--time-stamp-precision=nano'],
    {
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'ignore'],
      maxBuffer: 1 << 28,
    },
  );
  const rows: (Dumped | 'marker')[] = [];
  // an ICMP line waiting for its bytes (the hex lines after it)
  let icmpRow: { row: Dumped; hex: string } | undefined;
  const endIcmp = () => {
    if (!icmpRow) return;
    const icmp = icmpOf(icmpRow.hex);
    if (icmp) rows.push({ ...icmpRow.row, icmp });
    icmpRow = undefined;
  };
  for (const line of out.split('\n')) {
    const hex = /^\s+0x[0-9a-f]+:\s+((?:[0-9a-f]{2,4} ?)+)/.exec(line);
    if (hex) {
      if (icmpRow) icmpRow.hex += hex[1]!.replace(/\s/g, '');
      continue;
    }
    endIcmp();
    if (/^\d+\.\d{9} IP \S+ > \S+\.9: UDP/.test(line)) {
      rows.push('marker');
      continue;
    }
    const u = /^(\d+)\.(\d{9}) IP (\S+) > (\S+): ICMP .*unreachable/.exec(line);
    if (u) {
      const [, sec, nsec, src, dst] = u;
      const row = { us: Number(sec) * 1e6 + Number(nsec) / 1000, src: src!, sport: 0, dst: dst!, dport: 0 };
      icmpRow = { row: { ...row, flags: '', len: 0 }, hex: '' };
      continue;
    }
    const m =
      /^(\d+)\.(\d{9}) IP (\S+)\.(\d+) > (\S+)\.(\d+): Flags \[([^\]]*)\](?:, seq (\d+)(?::(\d+))?)?(?:, ack (\d+))?.*, length (\d+)/.exec(
        line,
      );
    if (!m) continue;
    const [, sec, nsec, src, sp, dst, dp, flags, seq, , ack, len] = m;
    rows.push({
      us: Number(sec) * 1e6 + Number(nsec) / 1000,
      src: src!,
      sport: Number(sp),
      dst: dst!,
      dport: Number(dp),
      flags: [...flags!].sort().join(''),
      ...(seq !== undefined ? { seq: Number(seq) } : {}),
      ...(ack !== undefined ? { ack: Number(ack) } : {}),
      len: Number(len),
    });
  }
  endIcmp();
  const last = rows.lastIndexOf('marker');
  return (last < 0 ? rows : rows.slice(0, last)).filter((x): x is Dumped => x !== 'marker');
}

const LETTERS: Record<string, string> = { SYN: 'S', FIN: 'F', RST: 'R', PSH: 'P', ACK: '.', URG: 'U' };
const letters = (flags: string[]) =>
  flags
    .map((f) => LETTERS[f])
    .join('')
    .split('')
    .sort()
    .join('');
/** tcpdump prints no seq for a bare ACK (no data, no SYN/FIN/RST) */
const hasSeq = (flags: string, len: number) => len > 0 || /[SFR]/.test(flags);
const keyOfDump = (d: Dumped) =>
  `${d.src}.${d.sport}>${d.dst}.${d.dport} [${d.flags}] seq ${d.seq ?? '-'} ack ${d.ack ?? 0} len ${d.len}`;
const keyOfOurs = (s: Segment) => {
  const f = letters(s.flags);
  return keyOfDump({
    us: 0,
    src: s.src,
    sport: s.sport,
    dst: s.dst,
    dport: s.dport,
    flags: f,
    ...(hasSeq(f, s.len) ? { seq: s.seq } : {}),
    ack: s.flags.includes('ACK') ? s.ack : 0,
    len: s.len,
  });
};

/**
 * tcpdump's rows grouped per connection (in order of first appearance), as the ladder groups
 * them: an ICMP error joins the connection of the segment it quotes
 */
function connections(rows: Dumped[]): Dumped[][] {
  const conns = new Map<string, Dumped[]>();
  for (const d of rows) {
    const e = d.icmp?.quoted ?? d;
    const k = [`${e.src}|${e.sport}`, `${e.dst}|${e.dport}`].sort().join('—');
    const list = conns.get(k);
    if (list) list.push(d);
    else conns.set(k, [d]);
  }
  return [...conns.values()];
}

/** One ladder against one connection of tcpdump's: relative seq/ack and times from its first row. */
function compareLadder(l: Ladder, conn: Dumped[]): void {
  expect(l.rows.length).toBe(conn.length);
  // relative numbers: from each side's first sequence number, as the ladder counts them
  const isn = new Map<string, number>();
  for (const d of conn)
    if (d.seq !== undefined && !isn.has(`${d.src}|${d.sport}`)) isn.set(`${d.src}|${d.sport}`, d.seq);
  const rel = (n: number, side: string) => (n - isn.get(side)!) >>> 0;
  l.rows.forEach((row, i) => {
    const d = conn[i]!;
    expect(Math.abs(row.us - (d.us - conn[0]!.us))).toBeLessThan(1000);
    if (d.icmp) {
      // an ICMP row: the same error, from the same sender, about the same segment
      expect(row.icmp).toBeDefined();
      expect([row.icmp!.type, row.icmp!.code, row.icmp!.from]).toEqual([d.icmp.type, d.icmp.code, d.src]);
      const q = d.icmp.quoted;
      expect(row.seq).toBe(rel(q.seq, `${q.src}|${q.sport}`));
      return;
    }
    expect(row.icmp).toBeUndefined();
    expect(letters(row.flags)).toBe(d.flags);
    expect(row.len).toBe(d.len);
    if (d.seq !== undefined) expect(row.seq).toBe(rel(d.seq, `${d.src}|${d.sport}`));
    if (d.flags.includes('.')) expect(row.ack).toBe(rel(d.ack!, `${d.dst}|${d.dport}`));
  });
}

// every scenario whose traffic runs in its own namespaces, and half-close, which runs its
// LAST_ACK part there (its part on lo is compared with tcpdump on lo by lab-e2e)
const inNamespaces = [...SCENARIOS.filter((s) => s.netns).map((s) => s.name), 'half-close'];

describe.skipIf(!!noRun || !tcpdumpPath)('namespace ladders match tcpdump in the same namespace', () => {
  for (const name of inNamespaces) {
    it(name, async () => {
      const pairs: { pair: NamespacePair; file: string }[] = [];
      const stopHearing = onNamespaces(async (pair) => {
        const file = path.join(dir, `${name}-${pairs.length}.pcap`);
        pairs.push({ pair, file });
        return startTcpdump(pair, file);
      });
      let r: Awaited<ReturnType<typeof traced>>;
      try {
        r = await traced(findScenario(name)!);
      } finally {
        stopHearing();
      }
      expect(r.checks.filter((c) => !c.ok).map((c) => c.what)).toEqual([]);
      if (!r.trace || !('segments' in r.trace)) throw new Error(`no trace: ${JSON.stringify(r.trace)}`);
      // one pair of namespaces per scenario, each watched by its own tcpdump from the start
      expect(pairs).toHaveLength(1);
      const dumped = readDump(pairs[0]!.file);
      const theirs = dumped.filter((d) => !d.icmp);
      const all = r.trace.netnsSegments ?? r.trace.segments;
      const ours = all.filter((s) => !s.icmp);
      // same segments, in the same order: flags, absolute seq/ack, lengths
      expect(ours.map(keyOfOurs)).toEqual(theirs.map(keyOfDump));
      if (name === 'unreachable') {
        // the routing table refuses both connects: not one segment leaves the namespace
        expect(dumped).toEqual([]);
        return;
      }
      expect(ours.length).toBeGreaterThan(2);
      // the same kernel clock: µs times within 1 ms of tcpdump's
      const worst = Math.max(...ours.map((s, i) => Math.abs(s.epochUs - theirs[i]!.us)));
      expect(worst).toBeLessThan(1000);
      for (const s of all) expect(s.clock).toBe('kernel');
      // the same ICMP errors, in the same order: type/code, sender, the segment quoted, µs times
      // within 1 ms (the router's, when the scenario has one)
      const icmpOurs = all.filter((s) => s.icmp);
      const icmpTheirs = dumped.filter((d) => d.icmp);
      const icmpKey = (
        src: string,
        type: number,
        code: number,
        q: { src: string; sport: number; dst: string; dport: number; seq: number },
      ) => `ICMP ${type}/${code} from ${src} about ${q.src}.${q.sport}>${q.dst}.${q.dport} seq ${q.seq}`;
      expect(icmpOurs.map((s) => icmpKey(s.src, s.icmp!.type, s.icmp!.code, s.icmp!.quoted))).toEqual(
        icmpTheirs.map((d) => icmpKey(d.src, d.icmp!.type, d.icmp!.code, d.icmp!.quoted)),
      );
      for (const [i, s] of icmpOurs.entries())
        expect(Math.abs(s.epochUs - icmpTheirs[i]!.us)).toBeLessThan(1000);
      if (name === 'host-unreachable') {
        // the router's errors on the wire, per target: host unreachable, administratively
        // prohibited, and host unreachable once its ARP gave up (one for each SYN it had queued)
        const codes = new Map<string, Set<string>>();
        for (const d of icmpTheirs) {
          expect(d.src).toBe(ROUTER_ADDR);
          const q = d.icmp!.quoted.dst;
          codes.set(q, (codes.get(q) ?? new Set()).add(`${d.icmp!.type}/${d.icmp!.code}`));
        }
        expect(Object.fromEntries([...codes].map(([a, c]) => [a, [...c]]))).toEqual({
          '198.18.2.5': ['3/1'],
          '198.18.2.6': ['3/13'],
          '198.18.1.9': ['3/1'],
        });
      }
      // the drawn ladders: one per connection, relative seq/ack and times as tcpdump's
      const conns = connections(dumped);
      // the namespace part's ladders come last (after any on lo)
      const drawn = r.trace.ladders.slice(-conns.length);
      expect(drawn.length).toBe(conns.length);
      if (!r.trace.netnsSegments) expect(r.trace.ladders.length).toBe(conns.length);
      for (const [i, l] of drawn.entries()) compareLadder(l, conns[i]!);
    }, 120_000);
  }
});
