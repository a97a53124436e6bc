// The ladder's ICMP rows, from frames built here byte by byte: the capture's parser reads an
// ICMP error and the TCP segment it quotes, the ladder draws it in that segment's connection
// (back to the side that sent it), and the state it shows follows what that side did next.

import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { describe, expect, it } from 'vitest';
import { explainError } from '../src/core/errors.js';
import { parseFrame, type Segment } from '../src/lab/capture.js';
import { formatLadder, ladderSvg, ladders } from '../src/lab/ladder.js';
import { ROOT } from './helpers.js';

const CLIENT = '198.18.0.1';
const ROUTER = '198.18.0.254';
const TARGET = '198.18.2.5';
const ISN = 0x89abcdef;

const addr = (a: string) => Buffer.from(a.split('.').map(Number));

function ipHeader(proto: number, src: string, dst: string, payload: number): Buffer {
  const h = Buffer.alloc(20);
  h[0] = 0x45;
  h.writeUInt16BE(20 + payload, 2);
  h[8] = 64;
  h[9] = proto;
  addr(src).copy(h, 12);
  addr(dst).copy(h, 16);
  return h;
}

function tcpHeader(sport: number, dport: number, seq: number, flags: number): Buffer {
  const t = Buffer.alloc(20);
  t.writeUInt16BE(sport, 0);
  t.writeUInt16BE(dport, 2);
  t.writeUInt32BE(seq, 4);
  t[12] = 5 << 4;
  t[13] = flags;
  t.writeUInt16BE(64240, 14);
  return t;
}

const ether = (payload: Buffer) => {
  const e = Buffer.alloc(14);
  e.writeUInt16BE(0x0800, 12);
  return Buffer.concat([e, payload]);
};

/** a SYN from the client's port to the target */
const synFrame = (sport: number) =>
  ether(Buffer.concat([ipHeader(6, CLIENT, TARGET, 20), tcpHeader(sport, 7007, ISN, 0x02)]));

/** the router's ICMP error quoting that SYN (its IP header and first 8 TCP bytes) */
function icmpFrame(type: number, code: number, sport: number, quotedProto = 6): Buffer {
  const quoted = Buffer.concat([
    ipHeader(quotedProto, CLIENT, TARGET, 20),
    tcpHeader(sport, 7007, ISN, 0x02).subarray(0, 8),
  ]);
  const icmp = Buffer.concat([Buffer.from([type, code, 0, 0, 0, 0, 0, 0]), quoted]);
  return ether(Buffer.concat([ipHeader(1, ROUTER, CLIENT, icmp.length), icmp]));
}

const at = (s: Segment | undefined, ms: number): Segment => {
  if (!s) throw new Error('the frame did not parse');
  return { ...s, t: ms, us: Math.round(ms * 1000), epochUs: 1_700_000_000_000_000 + Math.round(ms * 1000) };
};

describe('the capture reads ICMP errors about TCP segments', () => {
  it('an ICMP host unreachable: type, code, sender, and the quoted segment', () => {
    const s = parseFrame(icmpFrame(3, 1, 40950), 0.5, true)!;
    expect(s).toBeDefined();
    expect(s.icmp).toEqual({
      type: 3,
      code: 1,
      quoted: { src: CLIENT, sport: 40950, dst: TARGET, dport: 7007, seq: ISN },
    });
    // addressed as the packet was; ports as a reply on that connection carries them
    expect([s.src, s.dst, s.sport, s.dport]).toEqual([ROUTER, CLIENT, 7007, 40950]);
    expect(s.flags).toEqual([]);
    expect(s.seq).toBe(ISN);
  });

  it('only when asked: a TCP-only capture, and ICMP about UDP or cut short, stay out', () => {
    expect(parseFrame(icmpFrame(3, 1, 40950), 0)).toBeUndefined();
    expect(parseFrame(icmpFrame(3, 3, 40950, 17), 0, true)).toBeUndefined();
    expect(parseFrame(icmpFrame(3, 1, 40950).subarray(0, 14 + 20 + 8 + 20 + 4), 0, true)).toBeUndefined();
    expect(parseFrame(icmpFrame(0, 0, 40950), 0, true)).toBeUndefined(); // an echo reply
    // TCP frames parse as before with the option on
    expect(parseFrame(synFrame(40950), 0, true)?.flags).toEqual(['SYN']);
  });
});

describe('the ladder draws an ICMP row in the connection it is about', () => {
  it('SYN, then ICMP 3/1 and nothing more: the client is CLOSED, connect() failed', () => {
    const syn = at(parseFrame(synFrame(40950), 0), 0);
    const icmp = at(parseFrame(icmpFrame(3, 1, 40950), 0, true), 0.035);
    const [l, ...more] = ladders([syn, icmp], new Set([7007]));
    expect(more).toEqual([]);
    expect(l!.client).toBe(`${CLIENT}:40950`);
    expect(l!.server).toBe(`${TARGET}:7007`); // the SYN's destination, not the router
    const [first, row] = l!.rows;
    expect(first!.clientState).toBe('SYN_SENT');
    expect(row!.toServer).toBe(false);
    expect(row!.label).toBe('ICMP 3/1 host unreachable');
    expect(row!.us).toBe(35);
    expect(row!.flags).toEqual([]);
    expect(row!.icmp).toEqual({
      type: 3,
      code: 1,
      name: 'host unreachable',
      from: ROUTER,
      errno: 'EHOSTUNREACH',
      quoted: { src: `${CLIENT}:40950`, dst: `${TARGET}:7007`, seq: 0 },
    });
    expect(row!.clientState).toBe('CLOSED');
    expect(row!.states).toEqual({ client: 'CLOSED', server: '' });
    expect(row!.notes.join(' ')).toMatch(/from 198\.18\.0\.254.*SYN seq=0/);
    expect(row!.notes.join(' ')).toMatch(/no retry: connect\(\) failed \(EHOSTUNREACH\)/);
    const text = formatLadder(l!);
    expect(text.some((x) => x.includes('<') && x.includes('ICMP 3/1 host unreachable'))).toBe(true);
    for (const line of text) expect(line.length).toBeLessThanOrEqual(80);
    expect(ladderSvg([l!], 'icmp')).toMatch(/stroke="#d35400" stroke-width="1.5" stroke-dasharray/);
  });

  it('a SYN sent again after the ICMP: the client carried on (a soft error), not CLOSED', () => {
    const syn = at(parseFrame(synFrame(40950), 0), 0);
    const icmp = at(parseFrame(icmpFrame(3, 1, 40950), 0, true), 0.04);
    const again = at(parseFrame(synFrame(40950), 0), 1000);
    const rows = ladders([syn, icmp, again], new Set([7007]))[0]!.rows;
    expect(rows.map((x) => x.label.split(' ')[0])).toEqual(['SYN', 'ICMP', 'SYN']);
    expect(rows[1]!.clientState).toBeUndefined();
    expect(rows[1]!.states.client).toBe('SYN_SENT');
    expect(rows[1]!.notes.join(' ')).toMatch(/carried on: a soft error/);
    expect(rows[2]!.retransmission).toBe(true);
  });

  it('code 13 (administratively prohibited) is EHOSTUNREACH on Linux, not EACCES', () => {
    const syn = at(parseFrame(synFrame(43944), 0), 0);
    const icmp = at(parseFrame(icmpFrame(3, 13, 43944), 0, true), 0.03);
    const row = ladders([syn, icmp], new Set([7007]))[0]!.rows[1]!;
    expect(row.label).toBe('ICMP 3/13 admin prohibited');
    expect(row.icmp?.name).toBe('communication administratively prohibited');
    expect(row.icmp?.errno).toBe('EHOSTUNREACH');
  });

  it('a later ICMP about the same SYN finds no socket; one about an uncaptured segment draws nothing', () => {
    const syn = at(parseFrame(synFrame(40950), 0), 0);
    const i1 = at(parseFrame(icmpFrame(3, 1, 40950), 0, true), 3000);
    const i2 = at(parseFrame(icmpFrame(3, 1, 40950), 0, true), 3000.002);
    const rows = ladders([syn, i1, i2], new Set([7007]))[0]!.rows;
    expect(rows[2]!.notes.join(' ')).toMatch(/no socket for it any more/);
    expect(ladders([at(parseFrame(icmpFrame(3, 1, 5555), 0, true), 1)], new Set([7007]))).toEqual([]);
  });

  it('the browser page keeps the ICMP in its connection, with the lab’s row and label', async () => {
    const diagram = (await import(pathToFileURL(path.join(ROOT, 'web', 'lab', 'diagram.js')).href)) as {
      connections: (r: unknown) => { segs: { toServer: boolean; row: { icmp?: unknown } }[] }[];
      segmentLabel: (conn: unknown, j: number) => string;
    };
    const segments = [
      at(parseFrame(synFrame(40950), 0), 0),
      at(parseFrame(icmpFrame(3, 1, 40950), 0, true), 0.03),
    ];
    const conns = diagram.connections({ trace: { segments, ladders: ladders(segments, new Set([7007])) } });
    expect(conns).toHaveLength(1);
    expect(conns[0]!.segs.map((x) => x.toServer)).toEqual([true, false]);
    expect(conns[0]!.segs[1]!.row.icmp).toBeDefined(); // the lab's rows were matched up
    expect(diagram.segmentLabel(conns[0], 1)).toBe('ICMP 3/1 host unreachable');
  });
});

describe('the error lines the scenario prints are right for Linux', () => {
  it('connect EACCES (a prohibit route) is not explained with the privileged-port advice', () => {
    const e = explainError(
      Object.assign(new Error('connect EACCES'), {
        code: 'EACCES',
        syscall: 'connect',
        address: '198.18.3.6',
        port: 7007,
      }),
    );
    expect(e.hint).not.toMatch(/port above 1023/);
    expect(e.hint).toMatch(/prohibit/);
    // bind keeps its advice
    const b = explainError(Object.assign(new Error('bind EACCES'), { code: 'EACCES', syscall: 'bind' }));
    expect(b.hint).toMatch(/port above 1023/);
  });

  it('EHOSTUNREACH names every way Linux gets it: ICMP host unreachable or prohibited, ARP', () => {
    const e = explainError(Object.assign(new Error('x'), { code: 'EHOSTUNREACH', syscall: 'connect' }));
    expect(e.meaning).toMatch(/host unreachable/);
    expect(e.meaning).toMatch(/prohibited/);
    expect(e.meaning).toMatch(/ARP/);
    const n = explainError(Object.assign(new Error('x'), { code: 'ENETUNREACH', syscall: 'connect' }));
    expect(n.meaning).toMatch(/ICMP net unreachable/);
  });
});
