// A packet ladder (a sequence diagram, as Wireshark's flow graph): one column per endpoint,
// one row per captured segment with its time (kernel receive timestamp, µs), direction, flags,
// relative seq/ack, payload length and window (scaled by the sender's window scale), the TCP
// state each side enters as the segments that came back show it, and marks for
// retransmissions, zero-window and keepalive probes, data on a FIN and an ACK riding on a FIN.
// As text for an 80-column terminal, and as SVG.

import { formatAddress } from '../core/parse.js';
import type { Segment } from './capture.js';

export interface LadderRow {
  /** ms since the connection's first segment, to the µs (kernel receive timestamps) */
  t: number;
  /** the same, in µs */
  us: number;
  /** true: client → server */
  toServer: boolean;
  label: string;
  /** the state the client / server enters with this segment, if it changes */
  clientState?: string;
  serverState?: string;
  /** the state of each side after this segment (unknown: no socket seen on that side) */
  states: { client: string; server: string };
  flags: string[];
  /** relative sequence / acknowledgement numbers (as Wireshark shows them) */
  seq: number;
  ack?: number;
  len: number;
  /** the window in bytes: the field shifted by the sender's window scale */
  win: number;
  /** the 16-bit window field as sent */
  rawWin: number;
  /** the sender's window scale shift, when both SYNs were seen with one */
  wscale?: number;
  /** this segment's sequence space was sent before */
  retransmission?: boolean;
  /** a probe of a zero window (one byte below the next sequence number, peer's window 0) */
  zeroWindowProbe?: boolean;
  /** a keepalive probe (the same shape, peer's window open) */
  keepaliveProbe?: boolean;
  /** what to point out on this row, in words */
  notes: string[];
  /**
   * An ICMP error about this connection's segment (flags empty; seq the quoted segment's,
   * relative; len, win and rawWin 0; toServer false when it quotes the client's segment)
   */
  icmp?: LadderIcmp;
}

export interface LadderIcmp {
  type: number;
  code: number;
  /** as tcpdump names it: "host unreachable", "communication administratively prohibited" … */
  name: string;
  /** who sent it (a router on the path, or the peer's host) */
  from: string;
  /** the errno Linux's TCP turns it into (icmp_err_convert), when it has one */
  errno?: string;
  /** the quoted segment, as sent: its ends and sequence number (relative) */
  quoted: { src: string; dst: string; seq: number };
}

/**
 * ICMP destination unreachable codes (type 3), each with the errno Linux's TCP turns it into
 * (and a shorter name for the ladder, where tcpdump has one).
 */
const UNREACH: [name: string, errno: string, short?: string][] = [
  ['net unreachable', 'ENETUNREACH'],
  ['host unreachable', 'EHOSTUNREACH'],
  ['protocol unreachable', 'ENOPROTOOPT'],
  ['port unreachable', 'ECONNREFUSED'],
  ['fragmentation needed', 'EMSGSIZE'],
  ['source route failed', 'EOPNOTSUPP'],
  ['net unknown', 'ENETUNREACH'],
  ['host unknown', 'EHOSTDOWN'],
  ['host isolated', 'ENONET'],
  ['net prohibited', 'ENETUNREACH'],
  ['host prohibited', 'EHOSTUNREACH'],
  ['net unreachable for TOS', 'ENETUNREACH'],
  ['host unreachable for TOS', 'EHOSTUNREACH'],
  ['communication administratively prohibited', 'EHOSTUNREACH', 'admin prohibited'],
  ['host precedence violation', 'EHOSTUNREACH'],
  ['precedence cutoff', 'EHOSTUNREACH'],
];

/** An ICMP error's name and the errno Linux's TCP gives it (tcp_v4_err, icmp_err_convert). */
export function icmpName(type: number, code: number): { name: string; errno?: string; short?: string } {
  if (type === 3) {
    const u = UNREACH[code];
    return u
      ? { name: u[0], errno: u[1], ...(u[2] ? { short: u[2] } : {}) }
      : { name: `destination unreachable, code ${code}` };
  }
  if (type === 11)
    return { name: code === 0 ? 'TTL exceeded in transit' : 'time exceeded', errno: 'EHOSTUNREACH' };
  if (type === 12) return { name: 'parameter problem', errno: 'EPROTO' };
  return { name: `type ${type} code ${code}` };
}

export interface Ladder {
  client: string;
  server: string;
  rows: LadderRow[];
}

const key = (a: string, p: number) => `${a}|${p}`;

/** Keep the segments of connections that touch one of `ports`; one ladder per connection. */
export function ladders(segments: Segment[], ports: ReadonlySet<number>): Ladder[] {
  const conns = new Map<string, Segment[]>();
  for (const s of segments) {
    if (!ports.has(s.sport) && !ports.has(s.dport)) continue;
    const ends = endsOf(s);
    const list = conns.get(ends);
    if (list) list.push(s);
    else conns.set(ends, [s]);
  }
  // (an ICMP error whose segment was not captured has no connection to be drawn in)
  return [...conns.values()].filter((l) => l.some((s) => !s.icmp)).map(ladderOf);
}

/** A connection's two ends, the same for both directions; an ICMP error joins the segment it quotes. */
function endsOf(s: Segment): string {
  const q = s.icmp?.quoted;
  return (q ? [key(q.src, q.sport), key(q.dst, q.dport)] : [key(s.src, s.sport), key(s.dst, s.dport)])
    .sort()
    .join('—');
}

type Side = 'client' | 'server';
/** a is after b in sequence space (mod 2^32) */
const after = (a: number, b: number) => ((a - b) | 0) > 0;

/**
 * One connection's rows. States follow what the kernel did, read from the segments that came
 * back: the server is SYN_RECV when it answers SYN,ACK (a SYN answered by RST found no listener,
 * an unanswered one was dropped); a side that answers a segment with RST had no socket for it
 * (a FIN to an expired FIN_WAIT2 does not put it in TIME_WAIT).
 */
function ladderOf(all: Segment[]): Ladder {
  // the TCP segments; the ICMP errors about them are drawn where they arrived
  const segs = all.filter((s) => !s.icmp);
  // the client sent the first SYN without ACK; failing that, the first segment
  const first = segs.find((s) => s.flags.includes('SYN') && !s.flags.includes('ACK')) ?? segs[0]!;
  const client = key(first.src, first.sport);
  const sideOf = (s: Segment): Side => (key(s.src, s.sport) === client ? 'client' : 'server');
  const isn = new Map<string, number>();
  for (const s of segs) if (!isn.has(key(s.src, s.sport))) isn.set(key(s.src, s.sport), s.seq);
  const rel = (n: number, base: number | undefined) => (base === undefined ? n : (n - base) >>> 0);
  // window scaling is on when both SYNs carried the option; each side's field is shifted by its own
  const synOf = (side: Side) => segs.find((s) => s.flags.includes('SYN') && sideOf(s) === side);
  const cSyn = synOf('client');
  const sSyn = synOf('server');
  const scale: Partial<Record<Side, number>> =
    cSyn?.wscale !== undefined && sSyn?.wscale !== undefined
      ? { client: cSyn.wscale, server: sSyn.wscale }
      : {};
  const handshake = first.flags.includes('SYN');
  const state: Record<Side, string> = handshake
    ? {
        client: 'CLOSED',
        server: segs.some((s) => sideOf(s) === 'server' && s.flags.includes('SYN')) ? 'LISTEN' : '',
      }
    : { client: 'ESTABLISHED', server: 'ESTABLISHED' };
  const finSeq: Partial<Record<Side, number>> = {};
  const ackedFin: Partial<Record<Side, boolean>> = {};
  /** the next sequence number each side has sent up to, and the last window it advertised */
  const nxt: Partial<Record<Side, number>> = {};
  const lastWin: Partial<Record<Side, number>> = {};
  const t0 = all[0]!.us ?? Math.round(all[0]!.t * 1000);
  const rows: LadderRow[] = [];
  let next = 0; // s's index in segs
  for (const s of all) {
    if (!s.icmp) {
      tcpRow(s, next++);
      continue;
    }
    // an ICMP error about the segment a side sent: it goes back to that side
    const q = s.icmp.quoted;
    const me: Side = key(q.src, q.sport) === client ? 'client' : 'server';
    const { name, errno, short } = icmpName(s.icmp.type, s.icmp.code);
    const seq = rel(q.seq, isn.get(key(q.src, q.sport)));
    const quoted = segs.filter((x) => sideOf(x) === me && x.seq === q.seq && x.us <= s.us).at(-1);
    const what = quoted ? quoted.flags.join(',') || 'segment' : 'segment';
    const notes = [`from ${s.src}, about the ${me}'s ${what} seq=${seq}`];
    const before = { ...state };
    // what the kernel did: a side in SYN_SENT that sends nothing more after it dropped the
    // connect (Linux: the error is reported and the socket closed); one that goes on took it
    // as a soft error
    const later = segs.some((x) => sideOf(x) === me && x.us > s.us);
    if (state[me] === 'SYN_SENT' && s.icmp.type === 3 && s.icmp.code !== 4 && !later) {
      state[me] = 'CLOSED';
      notes.push(`no retry: connect() failed${errno ? ` (${errno})` : ''}, socket closed`);
    } else if (later) notes.push(`the ${me} carried on: a soft error`);
    else if (state[me] === 'CLOSED') notes.push(`the ${me} has no socket for it any more`);
    const us = (s.us ?? Math.round(s.t * 1000)) - t0;
    rows.push({
      t: us / 1000,
      us,
      toServer: me === 'server',
      label: `ICMP ${s.icmp.type}/${s.icmp.code} ${short ?? name}`.slice(0, 36),
      ...(state.client !== before.client ? { clientState: state.client } : {}),
      ...(state.server !== before.server && state.server ? { serverState: state.server } : {}),
      states: { ...state },
      flags: [],
      seq,
      len: 0,
      win: 0,
      rawWin: 0,
      notes,
      icmp: {
        type: s.icmp.type,
        code: s.icmp.code,
        name,
        from: s.src,
        ...(errno ? { errno } : {}),
        quoted: { src: formatAddress(q.src, q.sport), dst: formatAddress(q.dst, q.dport), seq },
      },
    });
  }
  function tcpRow(s: Segment, i: number): void {
    const me = sideOf(s);
    const peer: Side = me === 'client' ? 'server' : 'client';
    const f = new Set(s.flags);
    const seq = rel(s.seq, isn.get(key(s.src, s.sport)));
    const ack = f.has('ACK') ? rel(s.ack, isn.get(key(s.dst, s.dport))) : undefined;
    const shift = f.has('SYN') ? undefined : scale[me];
    const win = s.win * 2 ** (shift ?? 0);
    const notes: string[] = [];
    // sequence space this segment uses: its bytes, and one each for SYN and FIN
    const span = s.len + (f.has('SYN') ? 1 : 0) + (f.has('FIN') ? 1 : 0);
    const end = (s.seq + span) >>> 0;
    let retransmission = false;
    let zeroWindowProbe = false;
    let keepaliveProbe = false;
    if (!f.has('RST')) {
      const sent = nxt[me];
      if (span > 0 && sent !== undefined && !after(end, sent)) retransmission = true;
      else if (span === 0 && sent !== undefined && ((sent - s.seq) | 0) === 1) {
        if (lastWin[peer] === 0) zeroWindowProbe = true;
        else keepaliveProbe = true;
      } else if (s.len === 1 && lastWin[peer] === 0 && sent !== undefined && ((s.seq - sent) | 0) === 0) {
        zeroWindowProbe = true; // a probe carrying the next byte
      }
      if (sent === undefined || after(end, sent)) nxt[me] = end;
    }
    lastWin[me] = f.has('SYN') ? s.win : win;
    if (retransmission) notes.push(`retransmission (seq ${seq} was sent before)`);
    if (zeroWindowProbe) notes.push('zero-window probe: the peer advertised win=0');
    if (keepaliveProbe) notes.push('keepalive probe: one byte below what was sent, no data');
    if (f.has('FIN') && s.len > 0) notes.push(`the FIN carries data (${s.len} bytes in the same segment)`);
    const peerFin = finSeq[peer];
    const acksPeerFin = ack !== undefined && peerFin !== undefined && !after(peerFin + 1, s.ack);
    if (f.has('FIN') && acksPeerFin && !ackedFin[me])
      notes.push("the ACK of the peer's FIN rides on this FIN (none alone)");
    if (acksPeerFin) ackedFin[me] = true;
    // answered at once by an RST that points at this very segment: the receiver had no socket
    // for it (an RST,ACK acknowledges it; a bare RST takes its sequence number from its ACK)
    const reply = segs[i + 1];
    const peerGone =
      !f.has('RST') &&
      span > 0 &&
      reply !== undefined &&
      sideOf(reply) === peer &&
      reply.flags.includes('RST') &&
      (reply.flags.includes('ACK') ? reply.ack === end : f.has('ACK') && reply.seq === s.ack);
    const before = { ...state };
    // what the sender enters by sending, then what the receiver enters on receipt
    if (f.has('RST')) {
      // a side with no socket (no listener: '') stays without a state
      if (state[me]) state[me] = 'CLOSED';
      if (state[peer]) state[peer] = 'CLOSED';
    } else if (f.has('SYN') && !f.has('ACK')) {
      state[me] = 'SYN_SENT';
    } else if (f.has('SYN') && f.has('ACK')) {
      state[me] = 'SYN_RECV';
      if (state[peer] === 'SYN_SENT') state[peer] = 'ESTABLISHED';
    } else {
      if (f.has('ACK') && state[peer] === 'SYN_RECV' && !f.has('FIN')) state[peer] = 'ESTABLISHED';
      if (f.has('ACK') && state[me] === 'SYN_RECV') state[me] = 'ESTABLISHED';
      // an ACK that covers the receiver's FIN
      if (acksPeerFin) {
        if (state[peer] === 'FIN_WAIT1') state[peer] = 'FIN_WAIT2';
        else if (state[peer] === 'LAST_ACK') state[peer] = 'CLOSED';
        else if (state[peer] === 'CLOSING') state[peer] = 'TIME_WAIT';
      }
      if (f.has('FIN')) {
        if (!retransmission || finSeq[me] === undefined) finSeq[me] = (s.seq + s.len) >>> 0;
        if (!retransmission) {
          state[me] = state[me] === 'CLOSE_WAIT' ? 'LAST_ACK' : 'FIN_WAIT1';
        }
        if (peerGone) {
          // nothing there to move: the RST below says so
        } else if (state[peer] === 'ESTABLISHED' || state[peer] === 'SYN_RECV') state[peer] = 'CLOSE_WAIT';
        else if (state[peer] === 'FIN_WAIT2') state[peer] = 'TIME_WAIT';
        else if (state[peer] === 'FIN_WAIT1') state[peer] = 'CLOSING';
      }
    }
    if (peerGone && state[peer] && state[peer] !== 'CLOSED' && state[peer] !== 'LISTEN') {
      state[peer] = 'CLOSED';
      notes.push(`the ${peer} has no socket for it: RST`);
    }
    const parts = [s.flags.join(',') || '·', `seq=${seq}`];
    if (ack !== undefined) parts.push(`ack=${ack}`);
    if (s.len) parts.push(`len=${s.len}`);
    parts.push(`win=${win}`);
    if (retransmission) parts.push('(rtx)');
    else if (zeroWindowProbe) parts.push('(zwp)');
    const us = (s.us ?? Math.round(s.t * 1000)) - t0;
    rows.push({
      t: us / 1000,
      us,
      toServer: me === 'client',
      label: parts.join(' '),
      ...(state.client !== before.client ? { clientState: state.client } : {}),
      ...(state.server !== before.server && state.server ? { serverState: state.server } : {}),
      states: { ...state },
      flags: s.flags,
      seq,
      ...(ack !== undefined ? { ack } : {}),
      len: s.len,
      win,
      rawWin: s.win,
      ...(shift !== undefined ? { wscale: shift } : {}),
      ...(retransmission ? { retransmission } : {}),
      ...(zeroWindowProbe ? { zeroWindowProbe } : {}),
      ...(keepaliveProbe ? { keepaliveProbe } : {}),
      notes,
    });
  }
  const [ca, cp] = client.split('|') as [string, string];
  const other = segs.find((s) => key(s.src, s.sport) !== client);
  const server = other ? formatAddress(other.src, other.sport) : formatAddress(first.dst, first.dport);
  return { client: formatAddress(ca, Number(cp)), server, rows };
}

const ARROW = 44;

/** The ladder in at most 80 columns. */
export function formatLadder(l: Ladder): string[] {
  const out: string[] = [];
  out.push(
    `    ms  ${`client ${l.client}`.padEnd(13 + ARROW / 2)}${`server ${l.server}`.padStart(ARROW / 2 + 13)}`,
  );
  for (const r of l.rows) {
    const text = ` ${r.label} `;
    const fill = Math.max(2, ARROW - text.length - 1);
    const arrow = r.toServer ? `--${text}${'-'.repeat(fill - 2)}>` : `<${'-'.repeat(fill - 2)}${text}--`;
    out.push(
      `${r.t.toFixed(3).padStart(8)}  ${(r.clientState ?? '').padEnd(11)} ${arrow.padEnd(ARROW)} ${r.serverState ?? ''}`.trimEnd(),
    );
    for (const n of r.notes ?? []) out.push(`${' '.repeat(22)}^ ${n}`.slice(0, 80));
  }
  return out;
}

const esc = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');

/** The same ladders as one SVG document. */
export function ladderSvg(all: Ladder[], title: string): string {
  const W = 760;
  const left = 170;
  const right = W - 170;
  const rowH = 34;
  let y = 40;
  const parts: string[] = [];
  parts.push(
    `<text x="${W / 2}" y="22" text-anchor="middle" font-size="15" font-weight="bold">${esc(title)}</text>`,
  );
  for (const l of all) {
    const top = y + 10;
    const bottom = top + 30 + l.rows.length * rowH;
    parts.push(
      `<text x="${left}" y="${top}" text-anchor="middle" font-size="12" font-weight="bold">client ${esc(l.client)}</text>`,
      `<text x="${right}" y="${top}" text-anchor="middle" font-size="12" font-weight="bold">server ${esc(l.server)}</text>`,
      `<line x1="${left}" y1="${top + 8}" x2="${left}" y2="${bottom}" stroke="#555"/>`,
      `<line x1="${right}" y1="${top + 8}" x2="${right}" y2="${bottom}" stroke="#555"/>`,
    );
    l.rows.forEach((r, i) => {
      const yy = top + 30 + i * rowH;
      const y2 = yy + 16;
      const [x1, x2] = r.toServer ? [left, right] : [right, left];
      const color = r.icmp
        ? '#d35400'
        : r.label.startsWith('RST') || r.label.includes('RST')
          ? '#c0392b'
          : r.label.includes('FIN')
            ? '#8e44ad'
            : r.label.includes('SYN')
              ? '#2471a3'
              : '#333';
      parts.push(
        `<line x1="${r.icmp ? (x1 + x2) / 2 : x1}" y1="${yy}" x2="${x2}" y2="${y2}" stroke="${color}" stroke-width="1.5"${r.icmp ? ' stroke-dasharray="5 3"' : ''} marker-end="url(#arrow)"/>`,
        `<text x="${(left + right) / 2}" y="${(yy + y2) / 2 - 4}" text-anchor="middle" font-size="11" fill="${color}">${esc(r.label)}</text>`,
        `<text x="8" y="${yy + 6}" font-size="10" fill="#777">${r.t.toFixed(3)} ms</text>`,
      );
      if (r.clientState)
        parts.push(
          `<text x="${left - 8}" y="${y2 + 4}" text-anchor="end" font-size="10" fill="#1e8449">${r.clientState}</text>`,
        );
      if (r.serverState)
        parts.push(
          `<text x="${right + 8}" y="${y2 + 4}" font-size="10" fill="#1e8449">${r.serverState}</text>`,
        );
    });
    y = bottom + 30;
  }
  return `<?xml version="1.0" encoding="UTF-8"?>
<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${y}" viewBox="0 0 ${W} ${y}" font-family="monospace" role="img">
<title>${esc(title)}</title>
<defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7" markerHeight="7" orient="auto-start-reverse"><path d="M 0 0 L 10 5 L 0 10 z" fill="#333"/></marker></defs>
<rect width="100%" height="100%" fill="white"/>
${parts.join('\n')}
</svg>
`;
}
