// Drawing for echo-lab's page: the packet ladder of one connection and a TCP state diagram,
// both as SVG built with DOM calls (text is set as text, never parsed as markup).

const NS = 'http://www.w3.org/2000/svg';

/** An SVG element with attributes; `text` becomes its text content. */
export function el(name, attrs = {}, text) {
  const e = document.createElementNS(NS, name);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, String(v));
  if (text !== undefined) e.textContent = text;
  return e;
}

const key = (a, p) => `${a}|${p}`;
const addr = (a, p) => (a.includes(':') ? `[${a}]:${p}` : `${a}:${p}`);

/**
 * The scenario's connections from a run's trace: segments grouped per connection (in the order
 * of their first segment), each segment with the row the lab's ladder of that connection drew
 * for it (the states each side enters, and what the lab worked out).
 */
export function connections(result) {
  const trace = result?.trace;
  if (!trace || !Array.isArray(trace.segments)) return [];
  const conns = new Map();
  for (const s of trace.segments) {
    // an ICMP error belongs to the connection of the segment it quotes
    const q = s.icmp?.quoted;
    const ends = (q ? [key(q.src, q.sport), key(q.dst, q.dport)] : [key(s.src, s.sport), key(s.dst, s.dport)])
      .sort()
      .join('—');
    if (!conns.has(ends)) conns.set(ends, []);
    conns.get(ends).push(s);
  }
  const ladders = Array.isArray(trace.ladders) ? trace.ladders : [];
  return [...conns.values()].map((segs) => {
    const tcp = segs.filter((s) => !s.icmp);
    const first = tcp.find((s) => s.flags.includes('SYN') && !s.flags.includes('ACK')) ?? tcp[0] ?? segs[0];
    const clientKey = key(first.src, first.sport);
    const other = tcp.find((s) => key(s.src, s.sport) !== clientKey);
    const client = addr(first.src, first.sport);
    const server = other ? addr(other.src, other.sport) : addr(first.dst, first.dport);
    // the lab's ladder of this connection: the one with these two endpoints
    const ladder = ladders.find((l) => l.client === client && l.server === server);
    const rows = ladder && ladder.rows.length === segs.length ? ladder.rows : [];
    return {
      client,
      server,
      initial: {
        client: ladder?.initialClientState ?? 'CLOSED',
        server: ladder?.initialServerState ?? 'LISTEN',
      },
      segs: segs.map((seg, j) => ({
        seg,
        row: rows[j] ?? {},
        // an ICMP error goes back to the side whose segment it quotes
        toServer: seg.icmp
          ? key(seg.icmp.quoted.src, seg.icmp.quoted.sport) !== clientKey
          : key(seg.src, seg.sport) === clientKey,
      })),
    };
  });
}

/** Each side's state after the first `k` segments of `conn`. */
export function statesAt(conn, k) {
  // the lab's rows may carry both sides' states after each segment; else follow the changes
  const last = conn.segs[k - 1]?.row;
  if (last?.states) return { ...last.states };
  const st = { ...conn.initial };
  for (const { row } of conn.segs.slice(0, k)) {
    if (row.clientState) st.client = row.clientState;
    if (row.serverState) st.server = row.serverState;
  }
  return st;
}

/** µs of a segment since the connection's first: the capture's µs where it gives them. */
function micros(seg, first, row) {
  if (typeof row.us === 'number') return row.us;
  if (typeof seg.us === 'number' && typeof first.us === 'number') return seg.us - first.us;
  return Math.round((seg.t - first.t) * 1000);
}

/** A segment's fields as the ladder labels it: flags, relative seq/ack, length, scaled window. */
export function segmentLabel(conn, j) {
  const { seg, row } = conn.segs[j];
  if (seg.icmp) return typeof row.label === 'string' ? row.label : `ICMP ${seg.icmp.type}/${seg.icmp.code}`;
  const marks = [
    row.retransmission ? '[retransmission]' : '',
    row.zeroWindowProbe ? '[zero-window probe]' : '',
    row.keepaliveProbe ? '[keepalive probe]' : '',
  ].filter(Boolean);
  // the lab's rows may carry the fields worked out (relative numbers, the window scaled)
  if (Array.isArray(row.flags) && typeof row.seq === 'number' && typeof row.win === 'number') {
    const parts = [row.flags.join(',') || '·', `seq=${row.seq}`];
    if (typeof row.ack === 'number') parts.push(`ack=${row.ack}`);
    if (row.len) parts.push(`len=${row.len}`);
    parts.push(`win=${row.win}`, ...marks);
    return parts.join(' ');
  }
  const isn = new Map();
  for (const { seg: s } of conn.segs) if (!isn.has(key(s.src, s.sport))) isn.set(key(s.src, s.sport), s.seq);
  const rel = (n, base) => (base === undefined ? n : (n - base) >>> 0);
  // the window scale each side announced in its SYN, where the capture read the option
  const shift = new Map();
  for (const { seg: s } of conn.segs)
    if (s.flags.includes('SYN') && typeof s.wscale === 'number') shift.set(key(s.src, s.sport), s.wscale);
  const parts = [seg.flags.join(',') || '·', `seq=${rel(seg.seq, isn.get(key(seg.src, seg.sport)))}`];
  if (seg.flags.includes('ACK')) parts.push(`ack=${rel(seg.ack, isn.get(key(seg.dst, seg.dport)))}`);
  if (seg.len) parts.push(`len=${seg.len}`);
  const sh = shift.get(key(seg.src, seg.sport));
  const scaled =
    typeof seg.winScaled === 'number'
      ? seg.winScaled
      : !seg.flags.includes('SYN') && sh !== undefined && shift.size === 2
        ? seg.win * 2 ** sh
        : undefined;
  parts.push(scaled !== undefined ? `win=${scaled}` : `win=${seg.win}`, ...marks);
  return parts.join(' ');
}

const COLORS = { RST: '#b3261e', FIN: '#7b3fa0', SYN: '#1f5fa8' };
const colorOf = (flags) =>
  flags.includes('RST')
    ? COLORS.RST
    : flags.includes('FIN')
      ? COLORS.FIN
      : flags.includes('SYN')
        ? COLORS.SYN
        : '#333';

/**
 * The ladder of `conn` as an <svg>: both endpoints' lines, one arrow per segment with its
 * label and µs time, the state each side enters. Rows from `shown` on are drawn faint; row
 * `shown - 1` is marked as the current one.
 */
export function ladderSvg(conn, title, shown = conn.segs.length) {
  const W = 720;
  const L = 190;
  const R = W - 130;
  const rowH = 30;
  const top = 48;
  const H = top + conn.segs.length * rowH + 20;
  const svg = el('svg', {
    xmlns: NS,
    width: W,
    height: H,
    viewBox: `0 0 ${W} ${H}`,
    'font-family': 'monospace',
    role: 'img',
    'aria-label': `packet ladder: ${conn.segs.length} segments between client ${conn.client} and server ${conn.server}`,
  });
  svg.append(el('title', {}, title));
  const defs = el('defs');
  for (const [name, c] of Object.entries({ ...COLORS, plain: '#333' })) {
    const m = el('marker', {
      id: `arr-${name}`,
      viewBox: '0 0 10 10',
      refX: 10,
      refY: 5,
      markerWidth: 7,
      markerHeight: 7,
      orient: 'auto-start-reverse',
    });
    m.append(el('path', { d: 'M 0 0 L 10 5 L 0 10 z', fill: c }));
    defs.append(m);
  }
  svg.append(defs, el('rect', { width: '100%', height: '100%', fill: 'white' }));
  svg.append(
    el('text', { x: 8, y: 16, 'font-size': 11, fill: '#5f6b76' }, 'µs'),
    el(
      'text',
      { x: L, y: 16, 'text-anchor': 'middle', 'font-size': 12, 'font-weight': 'bold' },
      `client ${conn.client}`,
    ),
    el(
      'text',
      { x: R, y: 16, 'text-anchor': 'middle', 'font-size': 12, 'font-weight': 'bold' },
      `server ${conn.server}`,
    ),
    el(
      'text',
      { x: L - 8, y: 34, 'text-anchor': 'end', 'font-size': 10, fill: '#1e7a45' },
      conn.initial.client,
    ),
    el('text', { x: R + 8, y: 34, 'font-size': 10, fill: '#1e7a45' }, conn.initial.server),
    el('line', { x1: L, y1: 24, x2: L, y2: H - 8, stroke: '#555' }),
    el('line', { x1: R, y1: 24, x2: R, y2: H - 8, stroke: '#555' }),
  );
  const first = conn.segs[0]?.seg;
  conn.segs.forEach(({ seg, row, toServer }, j) => {
    const y = top + j * rowH;
    const g = el('g', {
      class: 'seg',
      'data-i': j,
      'data-flags': seg.flags.join(','),
      opacity: j < shown ? 1 : 0.18,
    });
    if (j === shown - 1)
      g.append(el('rect', { x: 0, y: y - 13, width: W, height: rowH, fill: '#fff3cf', class: 'cur' }));
    const c = colorOf(seg.flags);
    const name = seg.flags.includes('RST')
      ? 'RST'
      : seg.flags.includes('FIN')
        ? 'FIN'
        : seg.flags.includes('SYN')
          ? 'SYN'
          : 'plain';
    const [x1, x2] = toServer ? [L, R] : [R, L];
    g.append(
      el('text', { x: 8, y: y + 8, 'font-size': 10.5, fill: '#5f6b76' }, String(micros(seg, first, row))),
      el('line', {
        // an ICMP error comes from a router on the path: dashed, from the middle
        x1: seg.icmp ? (L + R) / 2 : x1,
        y1: y,
        x2,
        y2: y + 14,
        stroke: c,
        'stroke-width': 1.6,
        ...(seg.icmp ? { 'stroke-dasharray': '5 3' } : {}),
        'marker-end': `url(#arr-${name})`,
      }),
      el(
        'text',
        { x: (L + R) / 2, y: y + 3, 'text-anchor': 'middle', 'font-size': 11, fill: c },
        segmentLabel(conn, j),
      ),
    );
    // what the lab points out on this segment, as its tooltip (the page lists them too)
    if (Array.isArray(row.notes) && row.notes.length) g.append(el('title', {}, row.notes.join('; ')));
    if (row.clientState)
      g.append(
        el(
          'text',
          { x: L - 8, y: y + 18, 'text-anchor': 'end', 'font-size': 10, fill: '#1e7a45' },
          row.clientState,
        ),
      );
    if (row.serverState)
      g.append(el('text', { x: R + 8, y: y + 18, 'font-size': 10, fill: '#1e7a45' }, row.serverState));
    svg.append(g);
  });
  return svg;
}

// The TCP state machine (RFC 9293's diagram, Linux's names), laid out in three columns
const BOXES = {
  CLOSED: [170, 18],
  LISTEN: [62, 60],
  SYN_SENT: [278, 60],
  SYN_RECV: [62, 102],
  ESTABLISHED: [170, 144],
  FIN_WAIT1: [62, 186],
  CLOSING: [170, 186],
  CLOSE_WAIT: [278, 186],
  FIN_WAIT2: [62, 228],
  TIME_WAIT: [170, 228],
  LAST_ACK: [278, 228],
};
const EDGES = [
  ['CLOSED', 'LISTEN', 'listen'],
  ['CLOSED', 'SYN_SENT', 'connect: SYN'],
  ['LISTEN', 'SYN_RECV', 'SYN / SYN,ACK'],
  ['SYN_SENT', 'ESTABLISHED', 'SYN,ACK / ACK'],
  ['SYN_RECV', 'ESTABLISHED', 'ACK'],
  ['ESTABLISHED', 'FIN_WAIT1', 'close: FIN'],
  ['ESTABLISHED', 'CLOSE_WAIT', 'FIN / ACK'],
  ['FIN_WAIT1', 'FIN_WAIT2', 'ACK'],
  ['FIN_WAIT1', 'CLOSING', 'FIN'],
  ['CLOSING', 'TIME_WAIT', 'ACK'],
  ['FIN_WAIT2', 'TIME_WAIT', 'FIN / ACK'],
  ['CLOSE_WAIT', 'LAST_ACK', 'close: FIN'],
];
const BW = 96;
const BH = 22;

/** The kernel's names for two states, as the diagram names them. */
export const diagramState = (s) => (s === 'CLOSE' ? 'CLOSED' : s === 'NEW_SYN_RECV' ? 'SYN_RECV' : s);

/** A TCP state diagram; `light(svg, state)` marks the current state. */
export function stateDiagram(who) {
  const W = 340;
  const H = 262;
  const svg = el('svg', {
    xmlns: NS,
    width: W,
    height: H,
    viewBox: `0 0 ${W} ${H}`,
    role: 'img',
    'aria-label': `${who} TCP state diagram`,
    'font-family': 'monospace',
  });
  const defs = el('defs');
  const m = el('marker', {
    id: `sd-${who}`,
    viewBox: '0 0 10 10',
    refX: 10,
    refY: 5,
    markerWidth: 6,
    markerHeight: 6,
    orient: 'auto',
  });
  m.append(el('path', { d: 'M 0 0 L 10 5 L 0 10 z', fill: '#8795a1' }));
  defs.append(m);
  svg.append(defs, el('rect', { width: '100%', height: '100%', fill: 'white' }));
  for (const [a, b, label] of EDGES) {
    const [x1, y1] = BOXES[a];
    const [x2, y2] = BOXES[b];
    // from edge to edge of the boxes, along the line between their centres
    const dx = x2 - x1;
    const dy = y2 - y1;
    const cut = (x, y, sign) => {
      const tx = dx === 0 ? Infinity : BW / 2 / Math.abs(dx);
      const ty = dy === 0 ? Infinity : BH / 2 / Math.abs(dy);
      const t = Math.min(tx, ty);
      return [x + sign * dx * t, y + sign * dy * t];
    };
    const [sx, sy] = cut(x1, y1, 1);
    const [ex, ey] = cut(x2, y2, -1);
    svg.append(
      el('line', {
        x1: sx,
        y1: sy,
        x2: ex,
        y2: ey,
        stroke: '#8795a1',
        'stroke-width': 1,
        'marker-end': `url(#sd-${who})`,
      }),
    );
    const mx = (sx + ex) / 2;
    const my = (sy + ey) / 2;
    svg.append(
      el(
        'text',
        {
          x: mx + (dx === 0 ? 4 : 0),
          y: my - 2,
          'font-size': 8,
          fill: '#6b7884',
          'text-anchor': dx === 0 ? 'start' : 'middle',
        },
        label,
      ),
    );
  }
  // the two ways back to CLOSED: LAST_ACK's ACK, and TIME_WAIT's timer
  svg.append(
    el('path', {
      d: `M ${278 + BW / 2} 228 H 334 V 18 H ${170 + BW / 2}`,
      fill: 'none',
      stroke: '#8795a1',
      'marker-end': `url(#sd-${who})`,
    }),
    el('text', { x: 331, y: 122, 'font-size': 8, fill: '#6b7884', 'text-anchor': 'end' }, 'ACK'),
    el(
      'text',
      { x: 170, y: 256, 'font-size': 8.5, fill: '#6b7884', 'text-anchor': 'middle' },
      '→ CLOSED after 60 s (Linux)',
    ),
  );
  for (const [name, [x, y]] of Object.entries(BOXES)) {
    const g = el('g', { class: 'state', 'data-state': name });
    g.append(
      el('rect', {
        x: x - BW / 2,
        y: y - BH / 2,
        width: BW,
        height: BH,
        rx: 5,
        fill: '#f4f6f8',
        stroke: '#9aa6b2',
      }),
      el('text', { x, y: y + 4, 'text-anchor': 'middle', 'font-size': 11, fill: '#1d2329' }, name),
    );
    svg.append(g);
  }
  return svg;
}

export function light(svg, state) {
  const name = diagramState(state);
  for (const g of svg.querySelectorAll('g.state')) {
    const on = g.dataset.state === name;
    g.classList.toggle('lit', on);
    if (on) g.setAttribute('aria-current', 'true');
    else g.removeAttribute('aria-current');
    const r = g.querySelector('rect');
    r.setAttribute('fill', on ? '#f2b33d' : '#f4f6f8');
    r.setAttribute('stroke', on ? '#8a5a00' : '#9aa6b2');
    r.setAttribute('stroke-width', on ? 2 : 1);
    g.querySelector('text').setAttribute('font-weight', on ? 'bold' : 'normal');
  }
}
