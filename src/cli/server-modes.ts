// Starts the server mode a validated config asks for and prints the start line
// (`listening on 127.0.0.1:7007 (tcp, evented)`). Each mode returns the same handle.

import type { Logger } from '../core/log.js';
import { formatAddress } from '../core/parse.js';
import type { ServerTotals } from '../server/handler.js';
import { startEchoServer } from '../server/tcp-server.js';
import type { ServerConfig } from './server-config.js';

export interface RunningServer {
  close(): Promise<ServerTotals>;
  forceClose(): void;
}

export async function startMode(cfg: ServerConfig, logger: Logger): Promise<RunningServer> {
  const srv = await startEchoServer({
    ...cfg.socket,
    host: cfg.host,
    port: cfg.port,
    mode: cfg.mode === 'iterative' ? 'iterative' : 'evented',
    maxConnections: cfg.maxConnections,
    idleTimeout: cfg.idleTimeout,
    logger,
    reportOptions: cfg.verbose,
  });
  logger.info(
    { address: srv.address.address, port: srv.address.port, mode: cfg.mode, proto: 'tcp' },
    `listening on ${formatAddress(srv.address.address, srv.address.port)} (${cfg.label})`,
  );
  return { close: () => srv.close({ graceMs: cfg.graceMs }), forceClose: () => srv.forceClose() };
}
