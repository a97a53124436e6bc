// startServer(): every echo-server mode behind one call and one handle. The CLI runs it;
// the library can too (startEchoServer / startUdpEchoServer remain the in-process shortcuts).
//   evented, iterative  listener + serve here            (tcp-server.ts, listener.ts, here.ts)
//   fork                listener + a child per connection  (listener.ts, fork.ts)
//   workers             listener + N worker processes      (listener.ts, workers.ts)
//   workers --exclusive children that each listen (SO_REUSEPORT); this process supervises
//                       (workers.ts)
//   --udp               udp/server.ts, its totals mapped onto the same shape

import { AccessControl } from '../core/access.js';
import { plural } from '../core/admission.js';
import type { Logger } from '../core/log.js';
import { formatAddress } from '../core/parse.js';
import { createTracer, traceSink } from '../core/trace.js';
import { serverTotalsOfUdp, startUdpEchoServer } from '../udp/server.js';
import { abortable } from './children.js';
import type { ServerConfig } from './config.js';
import { forkBackend } from './fork.js';
import { type ServerHandle, startListener } from './listener.js';
import { applicationOf, echoServerOptions, listenerOptionsOf, startEchoServer } from './tcp-server.js';
import { startExclusiveWorkers, workersBackend } from './workers.js';

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
  applicationOf(cfg); // an unknown name fails here, before any child starts
  if (cfg.mode === 'evented' || cfg.mode === 'iterative')
    return startEchoServer(echoServerOptions(cfg, logger));
  if (cfg.mode === 'workers' && cfg.exclusive) return startExclusiveWorkers(cfg, logger, signal);
  const kind = cfg.mode;
  const backend = kind === 'fork' ? forkBackend(cfg, logger) : workersBackend(cfg, logger);
  try {
    await abortable(backend.started, signal);
  } catch (err) {
    await backend.drain(Date.now());
    throw err;
  }
  const o = echoServerOptions(cfg, logger);
  try {
    const base = listenerOptionsOf(o);
    return await startListener({
      ...base,
      admission: {
        ...base.admission,
        // a fork child costs this process one descriptor (its IPC channel), as a queued client
        // does; a worker's connections cost it one only while being passed on, and each worker
        // has a limit of its own: the backend counts both (fdCheck)
        fdPerConnection: kind === 'fork' ? 1 : 1 / cfg.workers,
        ...(backend.fdCheck ? { fdCheck: backend.fdCheck } : {}),
      },
      backend,
      concurrency: kind === 'fork' ? cfg.maxChildren : undefined,
      waitReason: `${plural(cfg.maxChildren, 'child', 'children')} busy (--max-children ${cfg.maxChildren})`,
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

/** `listening on 127.0.0.1:7007 (tcp, evented)` */
export function listeningLine(cfg: ServerConfig, h: ServerHandle): string {
  const extras = [
    cfg.tls ? 'tls' : '',
    cfg.proxyProtocol ? 'proxy protocol' : '',
    cfg.app === 'ws' ? `websocket ${cfg.ws?.path ?? 'on any path'}` : '',
  ].filter(Boolean);
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
