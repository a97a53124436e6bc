// startServer(): every echo-server mode behind one call and one handle. The CLI runs it;
// the library can too (startEchoServer / startUdpEchoServer remain the in-process shortcuts).
//   evented, iterative  listener + serve here            (tcp-server.ts, listener.ts, here.ts)
//   fork, workers       listener + hand to child processes  (listener.ts, children.ts)
//   workers --exclusive children that each listen (SO_REUSEPORT); this process supervises
//   --udp               udp/server.ts, its totals mapped onto the same shape

import { AccessControl } from '../core/access.js';
import { countError } from '../core/errors.js';
import type { Logger } from '../core/log.js';
import { formatAddress } from '../core/parse.js';
import { createTracer, traceSink } from '../core/trace.js';
import { serverTotalsOfUdp, startUdpEchoServer } from '../udp/server.js';
import { plural } from './admission.js';
import { childrenBackend } from './children.js';
import { echoServerOptions, type ServerConfig } from './config.js';
import { closedWanted, connectionClosed } from './conn-metrics.js';
import { FaultSet } from './faults.js';
import { copyTotals, emptyTotals } from './handler.js';
import { type FromChild, sendToChild } from './ipc.js';
import { graceTimer, type ServerHandle, startListener } from './listener.js';
import { Supervisor, WorkerTally } from './supervisor.js';
import {
  DEFAULT_HANDSHAKE_TIMEOUT_MS,
  listenOptions,
  proxyOptionsOf,
  startEchoServer,
} from './tcp-server.js';

export interface StartOptions {
  /**
   * Aborting it while child processes start stops them (none is left behind) and rejects
   * with an AbortError. Once startServer() has resolved, close the handle instead.
   */
  signal?: AbortSignal;
}

export async function startServer(
  cfg: ServerConfig,
  logger: Logger,
  { signal }: StartOptions = {},
): Promise<ServerHandle> {
  if (cfg.udp) return startUdp(cfg, logger);
  if (cfg.mode === 'evented' || cfg.mode === 'iterative')
    return startEchoServer(echoServerOptions(cfg, logger));
  if (cfg.mode === 'workers' && cfg.exclusive) return startExclusiveWorkers(cfg, logger, signal);
  const totals = emptyTotals();
  const kind = cfg.mode;
  const backend = childrenBackend(kind, cfg, totals, logger);
  try {
    await abortable(backend.started, signal);
  } catch (err) {
    await backend.drain(Date.now());
    throw err;
  }
  const o = echoServerOptions(cfg, logger);
  try {
    return await startListener({
      listen: listenOptions(o),
      proxyProtocol: proxyOptionsOf(o),
      tls: o.tls ? { timeoutMs: o.handshakeTimeoutMs ?? DEFAULT_HANDSHAKE_TIMEOUT_MS } : undefined,
      faults: new FaultSet(cfg.faults),
      admission: {
        access: o.access,
        maxConnections: cfg.maxConnections,
        maxConnectionsPerIp: cfg.maxConnectionsPerIp,
        // a fork child costs this process one descriptor (its IPC channel), as a queued client
        // does; a worker's connections cost it one only while being passed on, and each worker
        // has a limit of its own: the backend counts both (fdCheck)
        fdPerConnection: kind === 'fork' ? 1 : 1 / cfg.workers,
        ...(backend.fdCheck ? { fdCheck: backend.fdCheck } : {}),
      },
      backend,
      totals,
      concurrency: kind === 'fork' ? cfg.maxChildren : undefined,
      waitReason: `${plural(cfg.maxChildren, 'child', 'children')} busy (--max-children ${cfg.maxChildren})`,
      logger,
      logOptions: cfg.verbose,
    });
  } catch (err) {
    await backend.drain(Date.now());
    throw err;
  }
}

async function startUdp(cfg: ServerConfig, logger: Logger): Promise<ServerHandle> {
  const srv = await startUdpEchoServer({
    host: cfg.host,
    port: cfg.port,
    rateLimit: cfg.rateLimit,
    rateBurst: cfg.rateBurst,
    access: new AccessControl(cfg.allow, cfg.deny),
    reuseAddr: cfg.socket.reuseAddr,
    reusePort: cfg.socket.reusePort,
    sendBuffer: cfg.socket.sendBuffer,
    recvBuffer: cfg.socket.recvBuffer,
    logger,
    logOptions: cfg.verbose,
    faults: cfg.faults,
    tracer: cfg.trace
      ? createTracer(
          cfg.trace.format,
          traceSink(cfg.trace.file, (err) =>
            logger.warn(
              { trace: cfg.trace?.file ?? 'stderr', code: err.code },
              `trace to ${cfg.trace?.file ?? 'stderr'} failed (${err.code}): the trace is dropped from now on; echoing goes on`,
            ),
          ),
        )
      : undefined,
  });
  return {
    address: srv.address,
    options: srv.options,
    stats: () => serverTotalsOfUdp(srv.stats()),
    connections: () => [],
    close: async ({ graceMs = cfg.graceMs } = {}) => serverTotalsOfUdp(await srv.close({ graceMs })),
    forceClose: () => srv.forceClose(),
    setFaults: (faults) => srv.setFaults(faults),
    udp: () => srv.stats(),
  };
}

/**
 * --exclusive: each worker listens on its own SO_REUSEPORT socket and the kernel balances
 * connections between them. The first worker binds the port asked for (0: the kernel picks),
 * the others bind the port it got. Limits cannot be global here (no process sees every
 * connection): the CLI refuses --max-connections* with --exclusive.
 */
async function startExclusiveWorkers(
  cfg: ServerConfig,
  logger: Logger,
  signal?: AbortSignal,
): Promise<ServerHandle> {
  const totals = emptyTotals();
  const refusedBy: Record<string, number> = {};
  const perWorker = new WorkerTally();
  let workerCfg = cfg; // once the first worker has bound: the port it got
  const sup: Supervisor = new Supervisor({
    role: 'listen',
    cfg,
    logger,
    onMessage(child, m: FromChild) {
      if (m.type === 'closed') {
        if (closedWanted()) connectionClosed({ ms: m.ms ?? 0, bytesIn: m.bytesIn, bytesOut: m.bytesOut });
        totals.connections++;
        totals.bytesIn += m.bytesIn;
        totals.bytesOut += m.bytesOut;
        perWorker.add(child.pid, m.bytesIn, m.bytesOut);
        if (m.error) countError(totals.errors, m.error);
      } else if (m.type === 'refusals') {
        for (const [k, v] of Object.entries(m.refusedBy)) refusedBy[k] = (refusedBy[k] ?? 0) + v;
      }
    },
    onExit(child, expected, how) {
      if (!expected) sup.replace(child, how, workerCfg);
    },
  });
  const listening = async (c: ReturnType<Supervisor['spawn']>) => {
    const m = await c.ready;
    if (m.type === 'listen-failed') throw exclusiveListenError(cfg, m.line, m.code);
    if (m.type !== 'listening') throw new Error(`worker ${c.pid} did not listen`);
    return m;
  };
  let first: Extract<FromChild, { type: 'listening' }>;
  try {
    first = await abortable(listening(sup.spawn(cfg)), signal);
    workerCfg = { ...cfg, port: first.address.port };
    await abortable(
      Promise.all(Array.from({ length: cfg.workers - 1 }, () => listening(sup.spawn(workerCfg)))),
      signal,
    );
  } catch (err) {
    await sup.stopAll(Date.now());
    throw err;
  }
  const pids = [...sup.children].map((c) => c.pid);
  logger.info(
    { workers: pids, exclusive: true },
    `${plural(cfg.workers, 'worker')}: ${pids.join(', ')} (each with its own socket, SO_REUSEPORT: the kernel balances)`,
  );
  const stats = () => {
    const t = copyTotals(totals);
    t.refusedBy = { ...refusedBy };
    t.refused = Object.values(refusedBy).reduce((a, b) => a + b, 0);
    return t;
  };
  let closed: Promise<ReturnType<typeof stats>> | undefined;
  return {
    address: first.address,
    options: first.options,
    stats,
    connections: () => [],
    forceClose: () => sup.forceAll(),
    workers: () => perWorker.of(sup.children),
    setFaults(faults) {
      // each worker chooses for its own connections: every= counts per worker here
      workerCfg = { ...workerCfg, faults };
      for (const c of sup.children) sendToChild(c.proc, { type: 'faults', faults });
    },
    close({ graceMs = cfg.graceMs } = {}) {
      closed ??= (async () => {
        const cancel = graceTimer(graceMs, () => sup.forceAll());
        await sup.stopAll(Date.now() + graceMs);
        cancel();
        return stats();
      })();
      return closed;
    },
  };
}

/** `p`, or an AbortError as soon as `signal` aborts (what `p` does later is ignored). */
function abortable<T>(p: Promise<T>, signal: AbortSignal | undefined): Promise<T> {
  if (!signal) return p;
  p.catch(() => {});
  return new Promise<T>((resolve, reject) => {
    const onAbort = () =>
      reject(Object.assign(new Error('start-up was interrupted'), { name: 'AbortError', code: 'ABORT_ERR' }));
    if (signal.aborted) return onAbort();
    signal.addEventListener('abort', onAbort, { once: true });
    p.then(
      (v) => {
        signal.removeEventListener('abort', onAbort);
        resolve(v);
      },
      (err) => {
        signal.removeEventListener('abort', onAbort);
        reject(err);
      },
    );
  });
}

function exclusiveListenError(cfg: ServerConfig, line: string, code: string): Error {
  if (code === 'EADDRINUSE' && !cfg.socket.reusePort) {
    return Object.assign(
      new Error(
        `${line} With --exclusive each worker opens its own listening socket; without --reuse-port only the first can bind the port. Add --reuse-port (the kernel then balances connections) or drop --exclusive (the primary accepts and hands connections out).`,
      ),
      { code: 'EADDRINUSE_EXCLUSIVE' },
    );
  }
  return Object.assign(new Error(line), { code: 'ERR_WORKER_LISTEN' }); // `line` is explained already
}

/** `listening on 127.0.0.1:7007 (tcp, evented)` */
export function listeningLine(cfg: ServerConfig, h: ServerHandle): string {
  const extras = [cfg.tls ? 'tls' : '', cfg.proxyProtocol ? 'proxy protocol' : ''].filter(Boolean);
  const what = cfg.udp
    ? 'udp'
    : `${cfg.path !== undefined ? 'unix stream' : 'tcp'}, ${cfg.mode}${cfg.mode === 'workers' ? ` ×${cfg.workers}` : cfg.mode === 'fork' ? `, at most ${plural(cfg.maxChildren, 'child', 'children')}` : ''}${extras.length ? `, ${extras.join(', ')}` : ''}`;
  const where =
    h.address.family === 'unix'
      ? `unix:${h.address.address}`
      : formatAddress(h.address.address, h.address.port);
  const dual = !cfg.udp && cfg.path === undefined && h.address.address === '::' && !cfg.ipv6Only;
  return `listening on ${where} (${what})${dual ? '; dual-stack: IPv4 clients too, shown as ::ffff:a.b.c.d' : ''}`;
}
