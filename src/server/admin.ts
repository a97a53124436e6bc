// The admin page on the --metrics port: GET / is a live page of the server (listening
// address, mode, workers, each open connection with its TCP state and RTT, refusals by reason,
// totals) and of its faults (through the Toxiproxy-compatible API at /proxies, when the port
// serves it). GET /api/state is one snapshot as JSON; GET /events pushes snapshots as
// Server-Sent Events, sent only when something changed. Nothing is read while nobody watches:
// the timer runs only while an /events stream is open. The routes take any snapshot made of
// a header and server sections (serverSection): echo-server's has one, echo-proxy's one a proxy.

import { readFile } from 'node:fs/promises';
import type http from 'node:http';
import { explainError } from '../core/errors.js';
import { formatAddress } from '../core/parse.js';
import { emptyTotals } from '../core/records.js';
import { tcpStateName } from '../core/tcp-states.js';
import type { ServerHandle } from './listener.js';

/** What the page says of the server beyond its handle. */
export interface AdminAbout {
  /** evented, iterative, workers, fork (echo-proxy: proxy) */
  mode: string;
  /** the program's name for the page's title */
  program?: string;
}

/** One server's part of a snapshot: what the page draws as one section. */
export interface ServerSection {
  listen: string;
  totals: { connections: number; active: number; refused: number; bytesIn: number; bytesOut: number };
  refusedBy: Record<string, number>;
  errors: Record<string, number>;
  workers?: { pid: number; connections: number; bytesIn: number; bytesOut: number }[];
  udp?: Record<string, number>;
  connections: {
    peer: string;
    since?: number;
    bytesIn: number;
    bytesOut: number;
    /** the kernel's TCP state (TCP_INFO; a child's as it last reported it) */
    state?: string;
    rttUs?: number;
    pid?: number;
    reading: boolean;
  }[];
  /** open connections beyond those listed */
  more: number;
}

/** What the page shows above its sections. */
export interface AdminHeader {
  program: string;
  mode: string;
  pid: number;
  /** ms since the epoch on the server when this was taken: ages are `now - since` */
  now: number;
  startedAt: number;
}

/** echo-server's snapshot: one server, its section's fields beside the header's. */
export interface AdminSnapshot extends AdminHeader, ServerSection {}

/** At most this many connections are listed; the rest are counted. */
const MAX_LISTED = 500;
/** How often a watched server is looked at for changes. */
const TICK_MS = 500;

/** The page's files, shipped in the package beside dist/ (the same path from src/ and dist/). */
const ASSETS = new URL('../../web/admin/', import.meta.url);
const FILES: Record<string, [string, string]> = {
  '/': ['index.html', 'text/html; charset=utf-8'],
  '/admin.js': ['admin.js', 'text/javascript; charset=utf-8'],
  '/admin.css': ['admin.css', 'text/css; charset=utf-8'],
};
const SAFE = {
  'content-security-policy':
    "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; frame-ancestors 'none'",
  'x-content-type-options': 'nosniff',
  'cache-control': 'no-store',
};

/** What a section (and a metrics series) reads of a server: a ServerHandle, or a view over several in turn. */
export type ServerCounts = Pick<ServerHandle, 'stats' | 'connections'> &
  Partial<Pick<ServerHandle, 'address' | 'workers' | 'udp'>>;

/** The section of `h` (none: nothing counted), listening on `listen` (default: h's address). */
export function serverSection(h: ServerCounts | undefined, listen?: string): ServerSection {
  const t = h?.stats() ?? emptyTotals();
  const live = h?.connections() ?? [];
  let bytesIn = t.bytesIn;
  let bytesOut = t.bytesOut;
  for (const c of live) {
    bytesIn += c.bytesIn;
    bytesOut += c.bytesOut;
  }
  const listed = [...live].sort((a, b) => (a.since ?? 0) - (b.since ?? 0)).slice(0, MAX_LISTED);
  return {
    listen: listen ?? (h?.address ? formatAddress(h.address.address, h.address.port) : ''),
    // --exclusive workers: the primary counts none open, but they list theirs
    totals: {
      connections: t.connections,
      active: Math.max(t.active, live.length),
      refused: t.refused,
      bytesIn,
      bytesOut,
    },
    refusedBy: { ...t.refusedBy },
    errors: { ...t.errors },
    ...(h?.workers ? { workers: h.workers() } : {}),
    ...(h?.udp ? { udp: { ...h.udp() } as unknown as Record<string, number> } : {}),
    connections: listed.map((c) => ({
      peer: c.peer,
      ...(c.since !== undefined ? { since: c.since } : {}),
      bytesIn: c.bytesIn,
      bytesOut: c.bytesOut,
      ...(c.tcp ? { state: tcpStateName(c.tcp.state), rttUs: c.tcp.rttUs } : {}),
      ...(c.pid !== undefined ? { pid: c.pid } : {}),
      reading: c.reading,
    })),
    more: Math.max(0, live.length - MAX_LISTED),
  };
}

export function adminSnapshot(h: ServerHandle, about: AdminAbout, startedAt: number): AdminSnapshot {
  return {
    program: about.program ?? 'echo-server',
    mode: about.mode,
    pid: process.pid,
    now: Date.now(),
    startedAt,
    ...serverSection(h),
  };
}

/**
 * Whether a request may be answered by a server bound to `bound`: bound to loopback, only when
 * its Host is a loopback name or that address, so a page elsewhere that points a name of its
 * own at 127.0.0.1 (DNS rebinding) is refused; bound elsewhere, it was exposed on purpose.
 */
export function hostAllowed(host: string | undefined, bound: string): boolean {
  if (!(bound === '::1' || bound.startsWith('127.') || bound === 'localhost')) return true;
  if (!host) return false;
  const name = host.replace(/:\d+$/, '').replace(/^\[|\]$/g, '');
  return name === 'localhost' || name === '::1' || /^127\.\d+\.\d+\.\d+$/.test(name) || name === bound;
}

export interface AdminRoutes {
  /** Answer `req` when it is one of the page's routes; false when it is not. */
  handle(req: http.IncomingMessage, res: http.ServerResponse, bound: string): boolean;
  /** End every open /events stream (a server closing waits for its connections). */
  close(): void;
  /** how many pages watch now */
  watchers(): number;
}

/** The page's routes for `h`; `about` is read at each snapshot (it may be filled in after start). */
export function adminRoutes(h: ServerHandle, about: AdminAbout): AdminRoutes {
  const startedAt = Date.now();
  return adminRoutesOf(() => adminSnapshot(h, about, startedAt));
}

/**
 * The page's routes over any snapshot: one server's (adminSnapshot) or several servers' (a
 * header and a list of sections, as echo-proxy's proxies). `snapshot` is called for
 * /api/state, when an /events stream opens, and every TICK_MS while one is open.
 */
export function adminRoutesOf(snapshot: () => AdminHeader): AdminRoutes {
  const watchers = new Set<http.ServerResponse>();
  let timer: NodeJS.Timeout | undefined;
  let last = '';
  const snapshotText = () => {
    const s = snapshot();
    // the clock alone changing is no news: ages are computed by the page
    const { now: _now, ...rest } = s;
    return { text: JSON.stringify(s), key: JSON.stringify(rest) };
  };
  const tick = () => {
    const { text, key } = snapshotText();
    if (key === last) return;
    last = key;
    for (const w of watchers) w.write(`event: state\ndata: ${text}\n\n`);
  };
  const unwatch = (res: http.ServerResponse) => {
    watchers.delete(res);
    if (watchers.size === 0 && timer) {
      clearInterval(timer);
      timer = undefined;
    }
  };
  const send = (res: http.ServerResponse, status: number, type: string, body: string | Buffer) =>
    res.writeHead(status, { 'content-type': type, ...SAFE }).end(body);
  return {
    handle(req, res, bound) {
      const path = (req.url ?? '/').split('?')[0]!;
      const file = FILES[path];
      if (!file && path !== '/api/state' && path !== '/events') return false;
      if (!hostAllowed(req.headers.host, bound)) {
        send(res, 403, 'text/plain', 'Host not allowed\n');
        return true;
      }
      if (req.method !== 'GET') {
        send(res, 405, 'text/plain', 'GET only\n');
        return true;
      }
      if (path === '/api/state') {
        send(res, 200, 'application/json', `${snapshotText().text}\n`);
      } else if (path === '/events') {
        res.writeHead(200, { 'content-type': 'text/event-stream; charset=utf-8', ...SAFE });
        const { text, key } = snapshotText();
        res.write(`event: state\ndata: ${text}\n\n`);
        watchers.add(res);
        if (watchers.size === 1) last = key;
        timer ??= setInterval(tick, TICK_MS).unref();
        res.on('close', () => unwatch(res));
      } else {
        const [name, type] = file!;
        readFile(new URL(name, ASSETS)).then(
          (body) => send(res, 200, type, body),
          (err) => send(res, 500, 'text/plain', `${explainError(err).line}\n`),
        );
      }
      return true;
    },
    close() {
      for (const w of [...watchers]) {
        w.end();
        unwatch(w);
      }
    },
    watchers: () => watchers.size,
  };
}
