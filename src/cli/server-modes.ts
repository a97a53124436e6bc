// Starts the server mode a validated config asks for and prints the start line
// (`listening on 127.0.0.1:7007 (tcp, evented)`). Each mode returns the same handle.

import { AccessControl } from '../core/access.js';
import type { Logger } from '../core/log.js';
import { formatAddress } from '../core/parse.js';
import { echoServerOptions, type ServerConfig } from '../server/config.js';
import { startForkServer } from '../server/fork.js';
import type { ServerTotals } from '../server/handler.js';
import { startEchoServer } from '../server/tcp-server.js';
import { startWorkerPool } from '../server/workers.js';
import { startUdpEchoServer } from '../udp/server.js';

export interface RunningServer {
  close(): Promise<ServerTotals>;
  forceClose(): void;
}

export async function startMode(cfg: ServerConfig, logger: Logger): Promise<RunningServer> {
  if (cfg.udp) return startUdp(cfg, logger);
  const env = { ECHO_LOG_LEVEL: cfg.logLevel, ECHO_LOG_FORMAT: cfg.logFormat };
  if (cfg.mode === 'workers' || cfg.mode === 'fork') {
    const h =
      cfg.mode === 'workers'
        ? await startWorkerPool(cfg, logger, env)
        : await startForkServer(cfg, logger, env);
    logger.info(
      { address: h.address.address, port: h.address.port, mode: cfg.mode, proto: 'tcp' },
      `listening on ${formatAddress(h.address.address, h.address.port)} (${cfg.label}${cfg.mode === 'workers' ? ` ×${cfg.workers}` : `, at most ${cfg.maxChildren} children`})`,
    );
    return { close: () => h.close(), forceClose: () => h.forceClose() };
  }
  const srv = await startEchoServer(echoServerOptions(cfg, logger));
  logger.info(
    { address: srv.address.address, port: srv.address.port, mode: cfg.mode, proto: 'tcp' },
    `listening on ${formatAddress(srv.address.address, srv.address.port)} (${cfg.label})`,
  );
  return { close: () => srv.close({ graceMs: cfg.graceMs }), forceClose: () => srv.forceClose() };
}

async function startUdp(cfg: ServerConfig, logger: Logger): Promise<RunningServer> {
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
    reportOptions: cfg.verbose,
  });
  logger.info(
    { address: srv.address.address, port: srv.address.port, mode: cfg.mode, proto: 'udp' },
    `listening on ${formatAddress(srv.address.address, srv.address.port)} (udp)`,
  );
  return {
    close: async () => {
      const t = await srv.close();
      return {
        connections: t.sources,
        active: 0,
        refused: t.dropped['rate-limit'] + t.dropped['source-port'] + t.dropped['broadcast-source'],
        bytesIn: t.bytesIn,
        bytesOut: t.bytesOut,
        errors: t.errors,
      };
    },
    forceClose: () => {},
  };
}
