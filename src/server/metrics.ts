// Prometheus metrics (--metrics HOST:PORT): the server's own totals, read from its handle at
// each scrape with prom-client (the library Prometheus users scrape Node with), plus the
// process's own metrics. In workers and fork modes the primary's totals already include what
// every child reported as its connections closed; per-worker series carry a `worker` label.

import http from 'node:http';
import { createRequire } from 'node:module';
import type { AddressInfo } from 'node:net';
import type { Registry } from 'prom-client';
import { droppedLogLines } from '../core/sink.js';
import type { ProxyRegistry } from '../core/toxiproxy.js';
import { type AdminAbout, adminRoutes, type ServerCounts } from './admin.js';
import { onConnectionClosed } from './conn-metrics.js';
import type { ServerHandle } from './listener.js';
import { handleToxiproxyApi } from './toxiproxy-api.js';

/** prom-client, loaded the first time a registry is made: most runs never serve metrics. */
let promClient: typeof import('prom-client') | undefined;
const prom = (): typeof import('prom-client') =>
  (promClient ??= createRequire(import.meta.url)('prom-client') as typeof import('prom-client'));

export interface MetricsServer {
  readonly address: AddressInfo;
  /** what the admin page says of the server beyond its handle (its mode) */
  describe(about: AdminAbout): void;
  close(): Promise<void>;
}

/** A counter whose value is read from the server at each scrape (a labelled 0 is left out unless `zeros`). */
function mirrored(
  registry: Registry,
  name: string,
  help: string,
  labelNames: string[],
  read: () => [Record<string, string>, number][],
  zeros = labelNames.length === 0,
): void {
  new (prom().Counter)({
    name,
    help,
    labelNames,
    registers: [registry],
    collect() {
      this.reset();
      for (const [labels, v] of read()) if (v > 0 || zeros) this.inc(labels, v);
    },
  });
}

/** A server a registry reports on, and the labels its series carry ({} for echo-server's one). */
export type LabelledServer = [labels: Record<string, string>, server: ServerCounts];

/**
 * The series of each server's totals: connections, open connections, refusals by reason, bytes
 * each way, errors by code. `labelNames` are the labels that tell the servers apart;
 * `sent` is what the bytes written to clients are (echoed, forwarded).
 */
export function serverSeries(
  registry: Registry,
  labelNames: string[],
  servers: () => LabelledServer[],
  sent = 'bytes echoed back',
): void {
  const each = <T>(read: (h: ServerCounts) => T): [Record<string, string>, T][] =>
    servers().map(([l, h]) => [l, read(h)]);
  /** one series a server and key of `by` (a refusal's reason, an error's code) */
  const byKey = (label: string, read: (h: ServerCounts) => Record<string, number>) => () =>
    each(read).flatMap(([l, by]) =>
      Object.entries(by).map(([k, v]): [Record<string, string>, number] => [{ ...l, [label]: k }, v]),
    );
  mirrored(
    registry,
    'echo_connections_total',
    'connections served (UDP: distinct sources)',
    labelNames,
    () => each((h) => h.stats().connections),
    true,
  );
  new (prom().Gauge)({
    name: 'echo_connections_open',
    help: 'connections being served now',
    labelNames,
    registers: [registry],
    collect() {
      this.reset();
      for (const [l, v] of each((h) => h.stats().active)) this.set(l, v);
    },
  });
  mirrored(
    registry,
    'echo_refused_total',
    'connections refused (UDP: datagrams dropped), by reason',
    [...labelNames, 'reason'],
    byKey('reason', (h) => h.stats().refusedBy),
  );
  // bytes count as they flow: the closed connections' totals plus the open ones' bytes so far
  // (children report theirs each second)
  const flowed = () =>
    each((h) => {
      const t = h.stats();
      let bytesIn = t.bytesIn;
      let bytesOut = t.bytesOut;
      for (const c of h.connections()) {
        bytesIn += c.bytesIn;
        bytesOut += c.bytesOut;
      }
      return { bytesIn, bytesOut };
    });
  mirrored(
    registry,
    'echo_received_bytes_total',
    'bytes read from clients',
    labelNames,
    () => flowed().map(([l, v]) => [l, v.bytesIn]),
    true,
  );
  mirrored(
    registry,
    'echo_sent_bytes_total',
    sent,
    labelNames,
    () => flowed().map(([l, v]) => [l, v.bytesOut]),
    true,
  );
  mirrored(
    registry,
    'echo_errors_total',
    'connection errors, by code',
    [...labelNames, 'code'],
    byKey('code', (h) => h.stats().errors),
  );
}

/** A registry with the process's own metrics (prefix echo_); `instance` labels every series `server`. */
export function baseRegistry(instance?: string): Registry {
  const { Registry, collectDefaultMetrics } = prom();
  const registry = new Registry();
  // `instance` is the label Prometheus sets on every target it scrapes: ours is `server`
  if (instance) registry.setDefaultLabels({ server: instance });
  collectDefaultMetrics({ register: registry, prefix: 'echo_' });
  // a log that cannot be written (EPIPE, ENOSPC, a reader that stopped) drops lines: counted here
  mirrored(registry, 'echo_log_dropped_lines_total', 'log and trace lines dropped (this process)', [], () => [
    [{}, droppedLogLines()],
  ]);
  return registry;
}

export function metricsRegistry(h: ServerHandle, instance?: string): Registry {
  const registry = baseRegistry(instance);
  const stats = () => h.stats();
  serverSeries(registry, [], () => [[{}, h]]);
  // WebSocket messages (--ws), of the connections closed so far
  mirrored(registry, 'echo_ws_messages_total', 'WebSocket messages, by direction', ['direction'], () => [
    [{ direction: 'in' }, stats().messages?.messagesIn ?? 0],
    [{ direction: 'out' }, stats().messages?.messagesOut ?? 0],
  ]);
  mirrored(
    registry,
    'echo_ws_message_bytes_total',
    'WebSocket message payload bytes, by direction',
    ['direction'],
    () => [
      [{ direction: 'in' }, stats().messages?.payloadIn ?? 0],
      [{ direction: 'out' }, stats().messages?.payloadOut ?? 0],
    ],
  );
  if (h.udp) {
    const udp = h.udp;
    mirrored(registry, 'echo_udp_datagrams_total', 'UDP datagrams, by direction', ['direction'], () => [
      [{ direction: 'in' }, udp().datagramsIn],
      [{ direction: 'out' }, udp().datagramsOut],
    ]);
  }
  if (h.workers) {
    const workers = h.workers;
    mirrored(
      registry,
      'echo_worker_connections_total',
      'connections each worker (or fork child) served',
      ['worker'],
      () => workers().map((w) => [{ worker: String(w.pid) }, w.connections]),
    );
    mirrored(registry, 'echo_worker_received_bytes_total', 'bytes each worker read', ['worker'], () =>
      workers().map((w) => [{ worker: String(w.pid) }, w.bytesIn]),
    );
    mirrored(registry, 'echo_worker_sent_bytes_total', 'bytes each worker echoed', ['worker'], () =>
      workers().map((w) => [{ worker: String(w.pid) }, w.bytesOut]),
    );
  }
  return registry;
}

/** How long the metrics port waits for a whole request (request line and headers). */
const HEADERS_TIMEOUT_MS = 3_000;

/**
 * Histograms of the connections that end from now on: duration, bytes received, and the TCP
 * RTT the kernel had measured when each closed. Returns the function that stops charting.
 */
export function chartConnections(registry: Registry): () => void {
  const { Histogram } = prom();
  const duration = new Histogram({
    name: 'echo_connection_duration_seconds',
    help: 'how long connections lasted',
    buckets: [0.001, 0.01, 0.1, 0.5, 1, 5, 30, 60, 300, 1800, 3600],
    registers: [registry],
  });
  const bytes = new Histogram({
    name: 'echo_connection_received_bytes',
    help: 'bytes each connection sent (and had echoed)',
    buckets: [64, 1024, 16 * 1024, 256 * 1024, 1024 ** 2, 16 * 1024 ** 2, 256 * 1024 ** 2, 1024 ** 3],
    registers: [registry],
  });
  const rtt = new Histogram({
    name: 'echo_tcp_rtt_seconds',
    help: 'smoothed TCP round-trip time (TCP_INFO) as each connection closed',
    buckets: [0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1],
    registers: [registry],
  });
  return onConnectionClosed((c) => {
    duration.observe(c.ms / 1000);
    bytes.observe(c.bytesIn);
    if (c.rttUs !== undefined) rtt.observe(c.rttUs / 1e6);
  });
}

/** Serve GET /metrics (Prometheus text exposition), the admin page (admin.ts) and, over `api` if given, the Toxiproxy API on host:port. */
export async function startMetrics(
  h: ServerHandle,
  host: string,
  port: number,
  instance?: string,
  api?: ProxyRegistry,
): Promise<MetricsServer> {
  const registry = metricsRegistry(h, instance);
  const about: AdminAbout = { mode: 'evented' };
  const admin = adminRoutes(h, about);
  const stopCharting = chartConnections(registry);
  // a scrape is one small GET: a client that has not sent its whole request within
  // HEADERS_TIMEOUT_MS is closed (Node's defaults hold a half-sent request for a minute and more,
  // checked every 30 s)
  const server = http.createServer(
    {
      headersTimeout: HEADERS_TIMEOUT_MS,
      requestTimeout: HEADERS_TIMEOUT_MS,
      connectionsCheckingInterval: 500,
    },
    (req, res) => {
      if (api && handleToxiproxyApi(api, req, res, host)) return;
      if (admin.handle(req, res, host)) return;
      if (req.method !== 'GET' || (req.url ?? '').split('?')[0] !== '/metrics') {
        res
          .writeHead(404, { 'content-type': 'text/plain' })
          .end('only GET /metrics and the admin page (/) here\n');
        return;
      }
      registry.metrics().then(
        (text) => res.writeHead(200, { 'content-type': registry.contentType }).end(text),
        (err) => res.writeHead(500, { 'content-type': 'text/plain' }).end(`${(err as Error).message}\n`),
      );
    },
  );
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  return {
    address: server.address() as AddressInfo,
    describe: (a) => Object.assign(about, a),
    close: () =>
      new Promise<void>((resolve) => {
        stopCharting();
        admin.close();
        server.close(() => resolve());
      }),
  };
}
