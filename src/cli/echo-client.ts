// echo-client: interactive prompt on a TTY, one-shot --message (ping-style with --count),
// or piped stdin with an integrity check; --udp for datagrams; `echo-client bench` is the
// load generator (bench-cli.ts).

import type { Socket } from 'node:net';
import { streamThrough } from '../client/echo.js';
import {
  type ClientConfig,
  connectWithRetry,
  interactive,
  oneShot,
  progressOnStderr,
  readBanner,
} from '../client/session.js';
import type { ConnectResult } from '../core/connect.js';
import type { Logger } from '../core/log.js';
import { formatAddress, plural, UsageError } from '../core/parse.js';
import { formatReport } from '../core/sockopts.js';
import { escapeForTerminal } from '../core/terminal.js';
import { formatTlsInfo } from '../core/tls.js';
import { createTracer, traceSink, traceSocket } from '../core/trace.js';
import { buildClientProgram, type ClientFlags, resolveClientConfig } from './client-flags.js';
import {
  exitQuietlyOnClosedStdout,
  jsonLogs,
  loggerFromFlags,
  onSignals,
  runCli,
  stderrLine,
} from './common.js';
import { normalizeTraceArg } from './flag-groups.js';
import { INSECURE_WARNING } from './transport.js';

export type { ClientConfig } from '../client/session.js';
export { buildClientProgram, type ClientFlags, resolveClientConfig } from './client-flags.js';

export async function runClientCli(argv: string[]): Promise<void> {
  exitQuietlyOnClosedStdout();
  await runCli('echo-client', async () => {
    let code = 0;
    const program = buildClientProgram((c) => {
      code = c;
    });
    program.action(async (hostArg: string | undefined, portArg: string | undefined, flags: ClientFlags) => {
      code = await runClient(hostArg, portArg, flags);
    });
    await program.parseAsync(normalizeTraceArg(argv), { from: 'user' });
    return code;
  });
}

async function runClient(hostArg: string | undefined, portArg: string | undefined, flags: ClientFlags) {
  if (hostArg !== undefined && /^wss?:\/\//i.test(hostArg)) {
    const { runWsUrl } = await import('./ws-client.js');
    return runWsUrl(
      hostArg,
      portArg,
      flags,
      (host, f) => resolveClientConfig(host, undefined, f),
      () => loggerFromFlags('echo-client', flags),
    );
  }
  if (flags.text) throw new UsageError('--text', undefined, 'needs a ws:// or wss:// URL');
  const cfg = resolveClientConfig(hostArg, portArg, flags);
  const logger = loggerFromFlags('echo-client', flags);
  if (cfg.udp) {
    const { runUdpClient } = await import('./udp-client-cli.js');
    return runUdpClient(cfg, logger);
  }
  if (cfg.transport.tls?.insecure) logger.warn({}, INSECURE_WARNING);
  const { socket, options, tls } = await connectWithRetry(cfg, logger);
  try {
    return await overConnection(cfg, logger, socket, options, tls);
  } finally {
    socket.destroy(); // whatever ended the command (a banner that never came…) closes the connection
  }
}

async function overConnection(
  cfg: ClientConfig,
  logger: Logger,
  socket: Socket,
  options: ConnectResult['options'],
  tls: ConnectResult['tls'],
): Promise<number> {
  logger.debug(
    { local: `${socket.localAddress}:${socket.localPort}` },
    cfg.transport.path !== undefined
      ? `connected to unix:${cfg.transport.path}`
      : `connected to ${formatAddress(cfg.host, cfg.port)} from ${formatAddress(socket.localAddress ?? '?', socket.localPort ?? 0)}`,
  );
  if (tls) logger.debug({ ...tls }, `TLS: ${formatTlsInfo(tls)}`);
  if (cfg.trace) {
    const peer =
      cfg.transport.path !== undefined ? `unix:${cfg.transport.path}` : formatAddress(cfg.host, cfg.port);
    traceSocket(socket, createTracer(cfg.trace.format, traceSink(cfg.trace.file)), peer);
  }
  for (const r of options) logger.debug({ ...r }, formatReport(r));
  if (cfg.banner) {
    const line = await readBanner(socket, cfg.connectTimeoutMs);
    if (jsonLogs()) stderrLine('echo-client', 'info', `banner: ${escapeForTerminal(line)}`, { banner: line });
    else process.stderr.write(`banner: ${escapeForTerminal(line)}\n`);
  }
  if (cfg.message !== undefined) return oneShot(cfg, socket, logger);
  if (process.stdin.isTTY) return interactive(cfg, socket, (stop) => onSignals(stop, () => {}));
  if (cfg.heartbeat) {
    socket.destroy();
    throw new UsageError(
      '--heartbeat',
      undefined,
      'works on a terminal (interactive mode); piped input is its own proof of life',
    );
  }
  const progress = progressOnStderr(cfg);
  const result = await streamThrough(socket, process.stdin, process.stdout, {
    timeoutMs: cfg.timeoutMs,
    terminal: process.stdout.isTTY === true,
    onProgress: progress.onProgress,
  });
  progress.clear();
  if (!result.ok) {
    // where in the stream it broke: the byte count a reset or a close arrived at
    if (result.received <= result.sent)
      logger.warn(
        { sent: result.sent, received: result.received },
        `${result.received} of ${plural(result.sent, 'byte')} sent had come back`,
      );
    throw result.problem;
  }
  logger.info(
    { sent: result.sent, received: result.received },
    `${plural(result.sent, 'byte')} sent, all came back identical`,
  );
  return 0;
}
