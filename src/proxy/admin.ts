// echo-proxy's admin page and metrics, on the port of its Toxiproxy API: the page of
// echo-server (server/admin.ts, web/admin/) with one section per proxy (its listen address
// and upstream, enabled, toxics, open connections, refusals, totals), and GET /metrics with
// echo-server's series (server/metrics.ts) labelled `proxy`. Proxies are read at each
// snapshot and scrape, so those created or deleted through the API appear and go.

import type http from 'node:http';
import type { Toxic } from '../core/toxiproxy.js';
import {
  type AdminHeader,
  type AdminRoutes,
  adminRoutesOf,
  type ServerSection,
  serverSection,
} from '../server/admin.js';
import { baseRegistry, type LabelledServer, serverSeries } from '../server/metrics.js';
import type { Proxies } from './registry.js';

/** One proxy's section of the page. */
export interface ProxySection extends ServerSection {
  name: string;
  upstream: string;
  enabled: boolean;
  /** a datagram proxy: its connections are its sessions (one a client address) */
  datagrams: boolean;
  toxics: Toxic[];
}

/** The page's snapshot: the API's address in the header, then the proxies. */
export interface ProxiesSnapshot extends AdminHeader {
  /** where the API (and this page) is served */
  listen: string;
  proxies: ProxySection[];
}

export function proxiesSnapshot(reg: Proxies, listen: string, startedAt: number): ProxiesSnapshot {
  return {
    program: 'echo-proxy',
    mode: 'proxy',
    pid: process.pid,
    now: Date.now(),
    startedAt,
    listen,
    proxies: reg.listeners().map(({ state, udp, server }) => ({
      ...serverSection(server, state.listen),
      name: state.name,
      upstream: state.upstream,
      enabled: state.enabled,
      datagrams: udp,
      toxics: state.toxics,
    })),
  };
}

/** The routes the API's port serves beside the API: the page (/, /events, /api/state) and /metrics. */
export interface ProxyAdmin extends AdminRoutes {
  /** the address the API bound (the page's header) */
  listening(listen: string): void;
}

export function proxyAdmin(reg: Proxies): ProxyAdmin {
  const startedAt = Date.now();
  let listen = '';
  const page = adminRoutesOf(() => proxiesSnapshot(reg, listen, startedAt));
  const registry = baseRegistry();
  serverSeries(
    registry,
    ['proxy'],
    () => reg.listeners().map(({ state, server }): LabelledServer => [{ proxy: state.name }, server]),
    'bytes written to clients (what the upstream sent, after the downstream toxics)',
  );
  return {
    handle(req: http.IncomingMessage, res: http.ServerResponse, bound: string): boolean {
      if ((req.url ?? '').split('?')[0] !== '/metrics') return page.handle(req, res, bound);
      if (req.method !== 'GET') {
        res.writeHead(405, { allow: 'GET' }).end();
        return true;
      }
      registry.metrics().then(
        (text) => res.writeHead(200, { 'content-type': registry.contentType }).end(text),
        (err) => res.writeHead(500, { 'content-type': 'text/plain' }).end(`${(err as Error).message}\n`),
      );
      return true;
    },
    close: () => page.close(),
    watchers: () => page.watchers(),
    listening(l) {
      listen = l;
    },
  };
}
