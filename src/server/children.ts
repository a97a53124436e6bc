// The backends that serve connections in other processes. The listener (in this process)
// accepts with reading paused, admits, and hands the socket over IPC; the child echoes it
// and reports `closed` with its byte counts, which frees the slot here and adds to the totals.
//   fork     a process per connection (`serve-once`), one warm spare kept ready so a new
//            client does not wait for Node to start; the listener runs at most
//            --max-children at once and queues the rest
//   workers  N long-lived processes (`serve`); each connection goes to the least busy one;
//            one that dies is replaced (with backoff when they keep dying)

import type { Socket } from 'node:net';
import { countError, explainError } from '../core/errors.js';
import type { Fault } from '../core/faults.js';
import { fdHeadroom } from '../core/libc.js';
import { type Logger, logs } from '../core/log.js';
import { plural } from '../core/parse.js';
import type { ServerTotals } from '../core/records.js';
import type { ServerConfig } from './config.js';
import { closedWanted, connectionClosed } from './conn-metrics.js';
import { sendToChild } from './ipc.js';
import type { Backend, LiveConnection } from './listener.js';
import { type Child, Supervisor, WorkerTally } from './supervisor.js';

export interface ChildrenBackend extends Backend {
  /** resolves once the first children are ready (workers: all N) */
  started: Promise<void>;
  pids(): number[];
  /**
   * workers: the descriptor limit (this process's or a worker's) that one more connection
   * would come too near, or undefined while there is room (Admission's fdCheck)
   */
  fdCheck?: () => number | undefined;
}

/** Descriptors a process keeps free for everything but connections, as Admission does. */
const fdMargin = (limit: number) => Math.min(64, Math.ceil(limit / 8));

/** How many more descriptors a process may spend on connections; undefined: no known limit. */
function fdRoom(fds: { limit: number; open: number } | undefined) {
  return fds && fds.limit < 1e9
    ? { limit: fds.limit, free: fds.limit - fds.open - fdMargin(fds.limit) }
    : undefined;
}

export function childrenBackend(
  kind: 'fork' | 'workers',
  cfg: ServerConfig,
  totals: ServerTotals,
  logger: Logger,
): ChildrenBackend {
  let seq = 0;
  const name = kind === 'fork' ? 'child' : 'worker';
  // workers mode: what each worker served (fork children are one connection each: no per-pid series)
  const perWorker = new WorkerTally();
  // workers: the descriptors each worker may still spend on connections (from its 'ready'):
  // a socket passed to a process at its limit is dropped by the kernel, unseen by either side
  const room = new Map<Child, { limit: number; free: number }>();
  const full = (c: Child) => {
    const r = room.get(c);
    return r !== undefined && c.conns.size + c.handing >= r.free;
  };
  // this process holds each socket until it has been passed on (Node sends one at a time per child)
  let own: { limit: number; free: number } | undefined;
  let inTransit = 0;
  // per child, how to stop counting each of its hand-overs (when sent, or when it exits)
  const transit = new Map<Child, Set<() => void>>();
  // --metrics: bytes so far of each child's open connections (its `progress` messages)
  const progress = new WeakMap<Child, Map<number, [number, number]>>();
  const sup: Supervisor = new Supervisor({
    role: kind === 'fork' ? 'serve-once' : 'serve',
    cfg,
    logger,
    onMessage(child, m) {
      if (m.type === 'ready' && kind === 'workers') {
        const r = fdRoom(m.fds);
        if (r) room.set(child, r);
        return;
      }
      if (m.type === 'progress') {
        const mine = progress.get(child) ?? new Map<number, [number, number]>();
        progress.set(child, mine);
        for (const [id, bytesIn, bytesOut] of m.conns)
          if (child.conns.has(id)) mine.set(id, [bytesIn, bytesOut]);
        return;
      }
      if (m.type !== 'closed' || m.id === undefined) return;
      progress.get(child)?.delete(m.id);
      if (closedWanted())
        connectionClosed({
          ms: m.ms ?? 0,
          bytesIn: m.bytesIn,
          bytesOut: m.bytesOut,
          ...(m.rttUs !== undefined ? { rttUs: m.rttUs } : {}),
        });
      totals.bytesIn += m.bytesIn;
      totals.bytesOut += m.bytesOut;
      if (kind === 'workers') perWorker.add(child.pid, m.bytesIn, m.bytesOut);
      if (m.error) countError(totals.errors, m.error);
      const c = child.conns.get(m.id);
      child.conns.delete(m.id);
      c?.done();
    },
    onExit(child, expected, how) {
      room.delete(child);
      for (const sent of transit.get(child) ?? []) sent();
      // connections it still had are over (a killed child's kernel closed them)
      for (const c of child.conns.values()) {
        countError(totals.errors, `${name} died`);
        c.done();
      }
      child.conns.clear();
      progress.delete(child);
      if (child === spare) spare = undefined;
      if (!expected && kind === 'workers') sup.replace(child, how);
    },
  });

  // why the last spawn failed: said once per refusal, through the listener's rate-limited log
  let spawnError = '';
  const trySpawn = (): Child | undefined => {
    try {
      return sup.spawn();
    } catch (err) {
      spawnError = explainError(err).line;
      logger.debug({ code: (err as NodeJS.ErrnoException).code }, `could not start a ${name}: ${spawnError}`);
      return undefined;
    }
  };

  let spare: Child | undefined;
  let turn = 0;
  const pick = (): Child | undefined => {
    if (kind === 'fork') {
      const c = spare?.alive ? spare : trySpawn();
      spare = sup.stopping ? undefined : trySpawn(); // warm the next one while this one works
      return c;
    }
    // the least busy; among equals, the next in turn (sequential clients would all land on the first)
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

  // `done(why)`: the connection could not be handed to any child; the listener refuses it
  const handOver = async (
    child: Child,
    socket: Socket,
    peer: string,
    done: (refused?: string) => void,
    head?: Buffer,
    faults?: Fault[],
  ) => {
    inTransit++;
    const pending = transit.get(child) ?? new Set<() => void>();
    transit.set(child, pending);
    const sent = () => {
      if (!pending.delete(sent)) return;
      inTransit--;
      if (pending.size === 0 && transit.get(child) === pending) transit.delete(child);
    };
    pending.add(sent);
    // the send happens inside `handing`: a shutdown that comes meanwhile follows the connection
    await sup.handing(child, async () => {
      try {
        await child.ready;
      } catch (err) {
        sent();
        return refuseLater(err);
      }
      const id = ++seq;
      child.conns.set(id, { peer, done });
      const msg = {
        type: 'conn' as const,
        id,
        peer,
        ...(head ? { head: head.toString('base64') } : {}),
        ...(faults ? { faults } : {}),
      };
      sendToChild(child.proc, msg, socket, (err) => {
        sent();
        if (!err) {
          if (logs(logger, 'debug'))
            logger.debug({ [name]: child.pid, peer }, `${name} ${child.pid} serves ${peer}`);
          return;
        }
        if (child.conns.delete(id)) refuseLater(err);
      });
    });
    function refuseLater(err: unknown) {
      done(`could not hand it to ${name} ${child.pid}: ${explainError(err).line}`);
    }
  };

  const started = (async () => {
    if (kind === 'fork') {
      spare = sup.spawn();
      await spare.ready;
      return;
    }
    const all = Array.from({ length: cfg.workers }, () => sup.spawn());
    await Promise.all(all.map((c) => c.ready));
    own = fdRoom(fdHeadroom()); // measured with every worker's channel open
    logger.info(
      { workers: all.map((c) => c.pid) },
      `${plural(cfg.workers, 'worker')}: ${all.map((c) => c.pid).join(', ')} (the primary accepts and hands each connection to the least busy)`,
    );
  })();
  started.catch(() => sup.killAll());

  return {
    pauseOnConnect: true,
    started,
    pids: () => [...sup.children].filter((c) => kind === 'workers' || c.conns.size > 0).map((c) => c.pid),
    serve(socket, peer, done, head, faults) {
      const child = pick();
      if (!child) return done(`no ${name} process could be started${spawnError ? `: ${spawnError}` : ''}`);
      void handOver(child, socket, peer, done, head, faults);
    },
    ...(kind === 'workers'
      ? {
          workers: () => perWorker.of(sup.children),
          fdCheck() {
            // plus one per worker: the socket last sent to it is closed here when it acknowledges
            if (own && inTransit + sup.children.size >= own.free) return own.limit;
            const list = [...sup.children];
            const open = list.find((c) => !full(c));
            return open || list.length === 0 ? undefined : room.get(list[0]!)?.limit;
          },
        }
      : {}),
    drain: (deadline) => sup.stopAll(deadline),
    force: () => sup.forceAll(),
    connections: (): LiveConnection[] =>
      [...sup.children].flatMap((c) =>
        [...c.conns].map(([id, x]) => ({
          peer: x.peer,
          bytesIn: progress.get(c)?.get(id)?.[0] ?? 0,
          bytesOut: progress.get(c)?.get(id)?.[1] ?? 0,
          buffered: 0,
          reading: true,
          pid: c.pid,
        })),
      ),
  };
}
