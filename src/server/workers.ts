// --mode workers: a pre-forked pool of N processes on one port (node:cluster).
// Default: the primary owns the listening socket and hands connections to workers in turn.
// --exclusive: each worker opens its own socket — with --reuse-port the kernel balances them;
// without it the second bind fails with EADDRINUSE, and we say so plainly instead of hiding it.
// The primary replaces a worker that dies (with backoff if they keep dying), drains them all on
// shutdown and prints totals summed across workers.

import cluster, { type Worker } from 'node:cluster';
import net, { type AddressInfo } from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Logger } from '../core/log.js';
import type { ServerConfig } from './config.js';
import { addTotals, emptyTotals, type ServerTotals } from './handler.js';

export interface PoolHandle {
  address: AddressInfo;
  /** pids of the live workers */
  pids(): number[];
  close(): Promise<ServerTotals>;
  forceClose(): void;
}

type FromWorker =
  | { type: 'listening'; address: AddressInfo }
  | { type: 'listen-failed'; line: string; code: string }
  | { type: 'totals'; totals: ServerTotals };

const here = path.dirname(fileURLToPath(import.meta.url));
export const childMain = path.join(here, 'child-main.js');

/** A free port on host, for --exclusive workers that must all bind the same concrete port. */
async function freePort(host: string): Promise<number> {
  const s = net.createServer();
  await new Promise<void>((res, rej) => {
    s.once('error', rej);
    s.listen(0, host, () => res());
  });
  const { port } = s.address() as AddressInfo;
  await new Promise((res) => s.close(res));
  return port;
}

export async function startWorkerPool(
  cfg: ServerConfig,
  logger: Logger,
  env: Record<string, string>,
): Promise<PoolHandle> {
  const port = cfg.exclusive && cfg.port === 0 ? await freePort(cfg.host) : cfg.port;
  const workerCfg: ServerConfig = { ...cfg, port };
  cluster.setupPrimary({ exec: childMain, args: [], silent: false });
  const totals = emptyTotals();
  const live = new Map<number, Worker>(); // worker.id → worker
  let stopping = false;
  let crashes = 0; // consecutive early deaths, for backoff
  let address: AddressInfo | undefined;

  const spawnWorker = (): Worker => {
    const w = cluster.fork({ ...env, ECHO_ROLE: 'worker', ECHO_CONFIG: JSON.stringify(workerCfg) });
    live.set(w.id, w);
    const started = Date.now();
    w.on('message', (m: FromWorker) => {
      if (m.type === 'totals') addTotals(totals, m.totals);
    });
    w.on('exit', (code, signal) => {
      live.delete(w.id);
      if (stopping) return;
      crashes = Date.now() - started < 2000 ? crashes + 1 : 0;
      const delay = crashes > 2 ? Math.min(10_000, 250 * 2 ** (crashes - 2)) : 0;
      logger.warn(
        { worker: w.process.pid, code, signal, restartInMs: delay },
        `worker ${w.process.pid} died (${signal ?? `exit ${code}`}); starting a replacement${delay ? ` in ${delay} ms` : ''}`,
      );
      setTimeout(() => {
        if (stopping) return;
        const nw = spawnWorker();
        nw.once('message', (m: FromWorker) => {
          if (m.type === 'listening')
            logger.info({ worker: nw.process.pid }, `worker ${nw.process.pid} replaced ${w.process.pid}`);
        });
      }, delay).unref();
    });
    return w;
  };

  // start the pool: every worker must report it is listening
  const workers = Array.from({ length: cfg.workers }, spawnWorker);
  try {
    await Promise.all(
      workers.map(
        (w) =>
          new Promise<void>((resolve, reject) => {
            const onMsg = (m: FromWorker) => {
              if (m.type === 'listening') {
                address ??= m.address;
                w.off('message', onMsg);
                resolve();
              } else if (m.type === 'listen-failed') {
                const err = Object.assign(new Error(m.line), { code: m.code, workerLine: m.line });
                reject(err);
              }
            };
            w.on('message', onMsg);
            w.once('exit', (code) =>
              reject(new Error(`worker ${w.process.pid} exited (${code}) before listening`)),
            );
          }),
      ),
    );
  } catch (err) {
    stopping = true;
    for (const w of live.values()) w.kill('SIGKILL');
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'EADDRINUSE' && cfg.exclusive && !cfg.socket.reusePort) {
      throw Object.assign(
        new Error(
          `${(err as { workerLine?: string }).workerLine ?? (err as Error).message} With --exclusive each worker opens its own listening socket; without --reuse-port only the first can bind the port. Add --reuse-port (the kernel then balances connections) or drop --exclusive (the primary shares one socket).`,
        ),
        { code: 'EADDRINUSE_EXCLUSIVE' },
      );
    }
    throw err;
  }
  logger.info(
    { workers: workers.map((w) => w.process.pid), exclusive: cfg.exclusive },
    `${cfg.workers} workers: ${workers.map((w) => w.process.pid).join(', ')}${cfg.exclusive ? ` (each with its own socket${cfg.socket.reusePort ? ', SO_REUSEPORT' : ''})` : ' (the primary shares one socket)'}`,
  );

  const force = () => {
    for (const w of live.values()) w.process.kill('SIGKILL');
  };
  let closing: Promise<ServerTotals> | undefined;
  return {
    address: address!,
    pids: () => [...live.values()].map((w) => w.process.pid!),
    forceClose: force,
    close() {
      closing ??= (async () => {
        stopping = true;
        const all = [...live.values()];
        const timer = setTimeout(force, cfg.graceMs + 2000);
        await Promise.all(
          all.map(
            (w) =>
              new Promise<void>((resolve) => {
                w.once('exit', () => resolve());
                if (w.isConnected()) w.send({ type: 'shutdown' });
                else w.process.kill('SIGTERM');
              }),
          ),
        );
        clearTimeout(timer);
        return totals;
      })();
      return closing;
    },
  };
}
