// workers mode: N long-lived worker processes (`serve`). The listener in this process
// accepts (reading paused) and admits; each connection is handed to the least busy worker
// (over a descriptor channel of our own where its self-test passed, else Node's IPC:
// handover.ts), which echoes it and reports its bytes as it closes. A worker that dies is
// replaced (with backoff when they keep dying).
//
// workers --exclusive: the same workers, but each listens on a socket of its own
// (SO_REUSEPORT) and the kernel balances connections between them; this process only
// supervises, and folds what the workers report into the totals.

import { fdHeadroom } from '../core/libc.js';
import type { Logger } from '../core/log.js';
import { plural } from '../core/parse.js';
import { copyTotals, emptyTotals } from '../core/records.js';
import { abortable, ChildPool, type ChildrenBackend } from './children.js';
import type { ServerConfig } from './config.js';
import { handoverUnavailable } from './handover.js';
import { type FromChild, sendToChild } from './ipc.js';
import { foldClosed, graceTimer, type ServerHandle } from './listener.js';
import { type Child, Supervisor, WorkerTally } from './supervisor.js';

/** Descriptors a process keeps free for everything but connections, as Admission does. */
const fdMargin = (limit: number) => Math.min(64, Math.ceil(limit / 8));

/** How many more descriptors a process may spend on connections; undefined: no known limit. */
function fdRoom(fds: { limit: number; open: number } | undefined) {
  return fds && fds.limit < 1e9
    ? { limit: fds.limit, free: fds.limit - fds.open - fdMargin(fds.limit) }
    : undefined;
}

export function workersBackend(cfg: ServerConfig, logger: Logger): ChildrenBackend {
  // what each worker served, for per-worker metrics
  const perWorker = new WorkerTally();
  // the descriptors each worker may still spend on connections (from its 'ready'): a
  // socket passed to a process at its limit is dropped by the kernel, unseen by either side
  const room = new Map<Child, { limit: number; free: number }>();
  const full = (c: Child) => {
    const r = room.get(c);
    return r !== undefined && c.conns.size + c.handing >= r.free;
  };
  // this process holds each socket until it has been passed on (Node sends one at a time per child)
  let own: { limit: number; free: number } | undefined;
  const pool: ChildPool = new ChildPool({
    role: 'serve',
    name: 'worker',
    cfg,
    logger,
    handover: true,
    onMessage(child, m) {
      if (m.type !== 'ready') return;
      const r = fdRoom(m.fds);
      if (r) room.set(child, r);
    },
    onClosed: (child, r) => perWorker.add(child.pid, r.bytesIn, r.bytesOut),
    onExit(child, expected, how) {
      room.delete(child);
      if (!expected) pool.sup.replace(child, how);
    },
  });
  const { sup } = pool;
  let turn = 0;
  // the least busy; among equals, the next in turn (sequential clients would all land on the first)
  const pick = (): Child | undefined => {
    const list = [...sup.children];
    let best: Child | undefined;
    for (let k = 0; k < list.length; k++) {
      const c = list[(turn + k) % list.length]!;
      if (full(c)) continue;
      if (!best || c.conns.size < best.conns.size) best = c;
    }
    turn++;
    return best;
  };
  const serve = pool.serveWith(pick);
  const started = (async () => {
    const all = Array.from({ length: cfg.workers }, () => sup.spawn());
    await Promise.all(all.map((c) => c.ready));
    await Promise.all(all.map((c) => pool.handoverChecked(c)));
    own = fdRoom(fdHeadroom()); // measured with every worker's channels open
    logger.info(
      { workers: all.map((c) => c.pid) },
      `${plural(cfg.workers, 'worker')}: ${all.map((c) => c.pid).join(', ')} (the primary accepts and hands each connection to the least busy)`,
    );
  })();
  started.catch(() => sup.killAll());
  return {
    pauseOnConnect: true,
    started,
    pids: () => [...sup.children].map((c) => c.pid),
    serve,
    // accepted handles go to the descriptor channel without a net.Socket (this process's
    // accept path and the channel's self-test permitting); see the listener
    ...(handoverUnavailable() ? {} : { serveHandle: serve }),
    setFaults: (faults, v) => pool.setFaults(faults, v),
    workers: () => perWorker.of(sup.children),
    fdCheck() {
      // plus one per worker: the socket last sent to it is closed here when it acknowledges
      if (own && pool.inTransit + sup.children.size >= own.free) return own.limit;
      const list = [...sup.children];
      const open = list.find((c) => !full(c));
      return open || list.length === 0 ? undefined : room.get(list[0]!)?.limit;
    },
    drain: (deadline) => sup.stopAll(deadline),
    force: () => sup.forceAll(),
    connections: () => pool.connections(),
  };
}

/**
 * --exclusive: each worker listens on its own SO_REUSEPORT socket and the kernel balances
 * connections between them. The first worker binds the port asked for (0: the kernel picks),
 * the others bind the port it got. Limits cannot be global here (no process sees every
 * connection): the CLI refuses --max-connections* with --exclusive.
 */
export async function startExclusiveWorkers(
  cfg: ServerConfig,
  logger: Logger,
  signal?: AbortSignal,
): Promise<ServerHandle> {
  const totals = emptyTotals();
  const refusedBy: Record<string, number> = {};
  const perWorker = new WorkerTally();
  let workerCfg = cfg; // once the first worker has bound: the port it got
  // --metrics: each worker's open connections, as its last 'live' message listed them
  const live = new Map<number, Extract<FromChild, { type: 'live' }>>();
  const sup: Supervisor = new Supervisor({
    role: 'listen',
    cfg,
    logger,
    onMessage(child, m: FromChild) {
      if (m.type === 'closed') {
        totals.connections++;
        foldClosed(totals, { ...m, ms: m.ms ?? 0 });
        perWorker.add(child.pid, m.bytesIn, m.bytesOut);
        // its bytes are in the totals now: off the open list at once, or the byte counters
        // would count them twice until the worker's next list
        const open = live.get(child.pid)?.conns;
        const at = open?.findIndex((c) => c.peer === m.peer) ?? -1;
        if (at >= 0) open!.splice(at, 1);
      } else if (m.type === 'live') {
        live.set(child.pid, m);
      } else if (m.type === 'refusals') {
        for (const [k, v] of Object.entries(m.refusedBy)) refusedBy[k] = (refusedBy[k] ?? 0) + v;
      }
    },
    onExit(child, expected, how) {
      live.delete(child.pid);
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
    connections: () => [...live].flatMap(([pid, m]) => m.conns.map((c) => ({ ...c, pid }))),
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
