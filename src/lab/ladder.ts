// A packet ladder (a sequence diagram, as Wireshark's flow graph): one column per endpoint,
// one row per captured segment with its relative time, direction, flags, relative seq/ack,
// payload length and window, and the TCP state each side enters, inferred from the segments
// themselves. As text for an 80-column terminal, and as SVG.

import { formatAddress } from '../core/parse.js';
import type { Segment } from './capture.js';

export interface LadderRow {
  t: number;
  /** true: client → server */
  toServer: boolean;
  label: string;
  /** the state the client / server enters with this segment, if it changes */
  clientState?: string;
  serverState?: string;
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
    const ends = [key(s.src, s.sport), key(s.dst, s.dport)].sort().join('—');
    const list = conns.get(ends);
    if (list) list.push(s);
    else conns.set(ends, [s]);
  }
  return [...conns.values()].map(ladderOf);
}

function ladderOf(segs: Segment[]): Ladder {
  // the client sent the first SYN without ACK; failing that, the first segment
  const first = segs.find((s) => s.flags.includes('SYN') && !s.flags.includes('ACK')) ?? segs[0]!;
  const client = key(first.src, first.sport);
  const isn = new Map<string, number>();
  for (const s of segs) if (!isn.has(key(s.src, s.sport))) isn.set(key(s.src, s.sport), s.seq);
  const rel = (n: number, base: number | undefined) => (base === undefined ? n : (n - base) >>> 0);
  const state = { client: 'CLOSED', server: 'LISTEN' };
  const finSent = { client: false, server: false };
  const t0 = segs[0]!.t;
  const rows: LadderRow[] = [];
  for (const s of segs) {
    const from = key(s.src, s.sport);
    const toServer = from === client;
    const me: 'client' | 'server' = toServer ? 'client' : 'server';
    const peer: 'client' | 'server' = toServer ? 'server' : 'client';
    const parts = [s.flags.join(',') || '·', `seq=${rel(s.seq, isn.get(from))}`];
    if (s.flags.includes('ACK')) parts.push(`ack=${rel(s.ack, isn.get(key(s.dst, s.dport)))}`);
    if (s.len) parts.push(`len=${s.len}`);
    parts.push(`win=${s.win}`);
    const before = { ...state };
    const f = new Set(s.flags);
    // what the sender enters by sending, then what the receiver enters on receipt
    if (f.has('RST')) {
      state[me] = 'CLOSED';
      state[peer] = 'CLOSED';
    } else if (f.has('SYN') && !f.has('ACK')) {
      state[me] = 'SYN_SENT';
      if (state[peer] === 'LISTEN') state[peer] = 'SYN_RECV';
    } else if (f.has('SYN') && f.has('ACK')) {
      state[me] = 'SYN_RECV';
      if (state[peer] === 'SYN_SENT') state[peer] = 'ESTABLISHED';
    } else {
      if (f.has('ACK') && state[peer] === 'SYN_RECV' && !f.has('FIN')) state[peer] = 'ESTABLISHED';
      if (f.has('ACK') && state[me] === 'SYN_RECV') state[me] = 'ESTABLISHED';
      // an ACK of the receiver's FIN
      if (f.has('ACK') && finSent[peer]) {
        if (state[peer] === 'FIN_WAIT1') state[peer] = 'FIN_WAIT2';
        else if (state[peer] === 'LAST_ACK') state[peer] = 'CLOSED';
        else if (state[peer] === 'CLOSING') state[peer] = 'TIME_WAIT';
      }
      if (f.has('FIN')) {
        finSent[me] = true;
        state[me] = state[me] === 'CLOSE_WAIT' ? 'LAST_ACK' : 'FIN_WAIT1';
        if (state[peer] === 'ESTABLISHED' || state[peer] === 'SYN_RECV') state[peer] = 'CLOSE_WAIT';
        else if (state[peer] === 'FIN_WAIT2') state[peer] = 'TIME_WAIT';
        else if (state[peer] === 'FIN_WAIT1') state[peer] = 'CLOSING';
      }
    }
    rows.push({
      t: s.t - t0,
      toServer,
      label: parts.join(' '),
      ...(state.client !== before.client ? { clientState: state.client } : {}),
      ...(state.server !== before.server ? { serverState: state.server } : {}),
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
      const color =
        r.label.startsWith('RST') || r.label.includes('RST')
          ? '#c0392b'
          : r.label.includes('FIN')
            ? '#8e44ad'
            : r.label.includes('SYN')
              ? '#2471a3'
              : '#333';
      parts.push(
        `<line x1="${x1}" y1="${yy}" x2="${x2}" y2="${y2}" stroke="${color}" stroke-width="1.5" marker-end="url(#arrow)"/>`,
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
