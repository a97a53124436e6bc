// Entry point of the processes the server modes start: a cluster worker (--mode workers) or a
// per-connection child (--mode fork). The role and the validated config come in the
// environment. A child never outlives its parent: when the IPC channel closes, it leaves.

import type { Socket } from 'node:net';
import { errorCode, explainError } from '../core/errors.js';
import { createLogger, type LogFormat, type LogLevel } from '../core/log.js';
import { echoServerOptions, type ServerConfig } from './config.js';
import { drainConnection, emptyTotals, serveEcho } from './handler.js';
import { startEchoServer } from './tcp-server.js';

const cfg = JSON.parse(process.env.ECHO_CONFIG ?? '{}') as ServerConfig;
const logger = createLogger({
  level: (process.env.ECHO_LOG_LEVEL ?? 'info') as LogLevel,
  format: (process.env.ECHO_LOG_FORMAT ?? 'auto') as LogFormat,
  name: 'echo-server',
});
const send = (m: object) =>
  new Promise<void>((resolve) => (process.connected ? process.send!(m, () => resolve()) : resolve()));

// A terminal's Ctrl-C reaches the whole process group: the parent decides, children wait for it.
process.on('SIGINT', () => {});

async function worker(): Promise<void> {
  const label = `worker ${process.pid}`;
  let srv: Awaited<ReturnType<typeof startEchoServer>>;
  try {
    srv = await startEchoServer({
      ...echoServerOptions(cfg, logger),
      mode: 'evented',
      label,
      logFields: { worker: process.pid },
    });
  } catch (err) {
    await send({
      type: 'listen-failed',
      code: errorCode(err),
      line: `worker ${process.pid}: ${explainError(err).line}`,
    });
    process.exit(1);
  }
  await send({ type: 'listening', address: srv.address });
  let stopping = false;
  const stop = async () => {
    if (stopping) return;
    stopping = true;
    const totals = await srv.close({ graceMs: cfg.graceMs });
    await send({ type: 'totals', totals });
    process.exit(0);
  };
  process.on('message', (m: { type: string }) => {
    if (m.type === 'shutdown') void stop();
  });
  process.on('SIGTERM', () => void stop()); // a worker told to stop on its own drains too
  process.on('disconnect', () => {
    // the primary is gone: nothing will coordinate us any more
    srv.forceClose();
    process.exit(0);
  });
}

function forkChild(): void {
  const totals = emptyTotals();
  let current: Socket | undefined;
  process.on('message', (m: { type: string }, handle?: Socket) => {
    if (m.type === 'conn' && handle && !current) {
      current = handle;
      handle.allowHalfOpen = true; // echo what arrived, then close, as in the evented server
      serveEcho(handle, {
        logger,
        totals,
        idleTimeout: cfg.idleTimeout,
        socketOptions: cfg.socket,
        reportOptions: cfg.verbose,
        label: `child ${process.pid}`,
        logFields: { child: process.pid },
        onClose: async () => {
          await send({ type: 'totals', totals });
          process.exit(0);
        },
      });
    } else if (m.type === 'shutdown') {
      if (current) drainConnection(current);
      else process.exit(0); // an idle spare
    }
  });
  process.on('disconnect', () => {
    if (!current) process.exit(0);
    // the parent is gone: finish this client quickly, then leave
    drainConnection(current);
    setTimeout(() => process.exit(0), cfg.graceMs).unref();
  });
  void send({ type: 'ready' });
}

if (process.env.ECHO_ROLE === 'worker') void worker();
else if (process.env.ECHO_ROLE === 'fork-child') forkChild();
else {
  process.stderr.write('child-main: started without ECHO_ROLE; this module is run by echo-server\n');
  process.exitCode = 2;
}
