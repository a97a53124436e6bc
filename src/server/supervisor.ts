// Starts and stops the processes of the multi-process modes (workers and fork children):
// spawn them and hand each the validated config over IPC (never in its environment),
// replace a worker that dies (backing off when they keep dying), and stop them all by a
// deadline. Who uses the children is children.ts (serve / serve-once) or workers.ts (listen);
// this module only keeps them alive and ends them.

import { type ChildProcess, fork } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { explainError } from '../core/errors.js';
import { closeDescriptor } from '../core/fdpass.js';
import type { Logger } from '../core/log.js';
import type { ServerConfig } from './config.js';
import { HandoverChannel, handoverPair } from './handover.js';
import { type ChildRole, type FromChild, sendToChild } from './ipc.js';
import type { ConnectionEvents, WorkerTotals } from './listener.js';

const here = path.dirname(fileURLToPath(import.meta.url));
/** The process main of every child (child-main.ts, built). */
export const CHILD_MAIN = path.join(here, 'child-main.js');

/** After the deadline, how long children get to send their last counts before SIGKILL. */
const KILL_AFTER_MS = 1000;

export interface Child {
  proc: ChildProcess;
  pid: number;
  /** ms since epoch at spawn, for crash backoff */
  started: number;
  /** connections handed to it and not yet reported closed, by hand-over id */
  conns: Map<number, { peer: string; events: ConnectionEvents; since?: number }>;
  /** resolves on its first 'ready' or 'listening' message; rejects if it exits first */
  ready: Promise<FromChild>;
  exited: Promise<void>;
  alive: boolean;
  /** hand-overs to it under way (waiting for it to be ready); see Supervisor.handing */
  handing: number;
  /** a shutdown deadline held back until those hand-overs have been sent */
  shutdownAt?: number;
  /** the descriptor channel to it (workers), usable once its self-test passed (handover.ts) */
  channel?: HandoverChannel;
}

export interface SupervisorOptions {
  role: ChildRole;
  cfg: ServerConfig;
  logger: Logger;
  onMessage(child: Child, m: FromChild): void;
  /** open a descriptor channel to each child (its ends are the child's fds 4 and 5) */
  handover?: boolean;
  /** a child ended; `expected` is false when it died while we were not stopping it */
  onExit(child: Child, expected: boolean, how: string): void;
}

/** What each live worker process served, from its 'closed' reports (per-worker metrics). */
export class WorkerTally {
  private readonly by = new Map<number, WorkerTotals>();

  add(pid: number, bytesIn: number, bytesOut: number): void {
    const w = this.by.get(pid) ?? { pid, connections: 0, bytesIn: 0, bytesOut: 0 };
    w.connections++;
    w.bytesIn += bytesIn;
    w.bytesOut += bytesOut;
    this.by.set(pid, w);
  }

  /** one entry per child still running, zeros for one that has served nobody yet */
  of(children: Iterable<Child>): WorkerTotals[] {
    return [...children].map(
      (c) => this.by.get(c.pid) ?? { pid: c.pid, connections: 0, bytesIn: 0, bytesOut: 0 },
    );
  }
}

export class Supervisor {
  readonly children = new Set<Child>();
  stopping = false;
  private crashes = 0; // consecutive early deaths, for backoff

  constructor(private readonly o: SupervisorOptions) {}

  /** Start a child; throws (explained) when the system refuses (EMFILE, EAGAIN…). */
  spawn(cfg: ServerConfig = this.o.cfg): Child {
    const { logger } = this.o;
    const pair = this.o.handover ? handoverPair() : undefined;
    // the role only: the config (with --tls, the private key) goes over the IPC channel; the
    // descriptor channel's ends (channel, wake-ups) are descriptors, their numbers in ECHO_HANDOVER_FD
    let proc: ChildProcess;
    try {
      proc = fork(CHILD_MAIN, [], {
        env: { ...process.env, ECHO_ROLE: this.o.role, ...(pair ? { ECHO_HANDOVER_FD: '4,5' } : {}) },
        stdio: ['ignore', 'inherit', 'inherit', 'ipc', ...(pair ? pair.child : [])],
      });
    } catch (err) {
      pair?.parent.forEach(closeDescriptor);
      throw err;
    } finally {
      pair?.child.forEach(closeDescriptor);
    }
    if (proc.pid === undefined) {
      pair?.parent.forEach(closeDescriptor);
      // spawn failed at once (EMFILE, EAGAIN, ENOMEM): the error event follows; wait for none
      proc.on('error', () => {});
      throw Object.assign(
        new Error('could not start a child process: the system is out of file descriptors or processes'),
        { code: 'ERR_SPAWN' },
      );
    }
    let readyResolve!: (m: FromChild) => void;
    let readyReject!: (e: Error) => void;
    const ready = new Promise<FromChild>((res, rej) => {
      readyResolve = res;
      readyReject = rej;
    });
    ready.catch(() => {});
    let exitedResolve!: () => void;
    const child: Child = {
      proc,
      pid: proc.pid,
      started: Date.now(),
      conns: new Map(),
      ready,
      exited: new Promise<void>((r) => {
        exitedResolve = r;
      }),
      alive: true,
      handing: 0,
      ...(pair ? { channel: new HandoverChannel(...pair.parent) } : {}),
    };
    this.children.add(child);
    proc.on('error', (err) =>
      logger.warn({ child: proc.pid }, `child ${proc.pid}: ${explainError(err).line}`),
    );
    let configured = false;
    proc.on('message', (m: FromChild) => {
      if (m.type === 'hello') {
        // once: the child starts serving only after it has this, its first message from here
        if (!configured) sendToChild(proc, { type: 'config', config: cfg });
        configured = true;
        return;
      }
      if (m.type === 'ready' || m.type === 'listening' || m.type === 'listen-failed') readyResolve(m);
      if (m.type === 'closed-batch') for (const r of m.list) this.o.onMessage(child, r);
      else this.o.onMessage(child, m);
    });
    // 'close', not 'exit': it comes after the last IPC message (a fork child's `closed`) is read
    proc.once('close', (code, signal) => {
      child.alive = false;
      this.children.delete(child);
      readyReject(new Error(`child ${proc.pid} exited (${signal ?? `exit ${code}`}) before it was ready`));
      const expected = this.stopping || this.o.role === 'serve-once';
      if (!expected) this.crashes = Date.now() - child.started < 2000 ? this.crashes + 1 : 0;
      this.o.onExit(child, expected, signal ?? `exit ${code}`);
      child.channel?.close();
      exitedResolve();
    });
    return child;
  }

  /**
   * A worker died while we were not stopping it: start another, at once the first times, then
   * with backoff (250 ms doubling to 10 s) while they keep dying within 2 s of starting.
   */
  replace(dead: Child, how: string, cfg: ServerConfig = this.o.cfg): void {
    const { logger } = this.o;
    const delay = this.crashes > 2 ? Math.min(10_000, 250 * 2 ** (this.crashes - 2)) : 0;
    logger.warn(
      { worker: dead.pid, how, restartInMs: delay },
      `worker ${dead.pid} died (${how}); starting a replacement${delay ? ` in ${delay} ms` : ''}`,
    );
    setTimeout(() => {
      if (this.stopping) return;
      let next: Child;
      try {
        next = this.spawn(cfg);
      } catch (err) {
        logger.warn({}, `could not start a worker: ${explainError(err).line}`);
        return;
      }
      next.ready.then(
        (m) =>
          m.type !== 'listen-failed' &&
          logger.info({ worker: next.pid }, `worker ${next.pid} replaced ${dead.pid}`),
        () => {},
      );
    }, delay).unref();
  }

  /**
   * Tell every child to drain and exit by `deadline`; SIGKILL the ones still there shortly
   * after it. Resolves when all have exited.
   */
  async stopAll(deadline: number): Promise<void> {
    this.stopping = true;
    const all = [...this.children];
    for (const c of all) {
      // a child still to be handed a connection gets it first (messages keep their order),
      // then drains it like any other: the client gets its echo and a FIN, not a reset
      if (c.handing > 0) c.shutdownAt = deadline;
      else this.shutdown(c, deadline);
    }
    const kill = setTimeout(() => this.killAll(), Math.max(0, deadline - Date.now()) + KILL_AFTER_MS);
    await Promise.all(all.map((c) => c.exited));
    clearTimeout(kill);
  }

  /**
   * Run `handOver` (which sends `child` a connection) while holding back a shutdown that comes
   * meanwhile, so the connection reaches the child before the shutdown does.
   */
  async handing<T>(child: Child, handOver: () => Promise<T>): Promise<T> {
    const done = this.beginHanding(child);
    try {
      return await handOver();
    } finally {
      done();
    }
  }

  /** handing() without a promise: call the function returned once the connection has been sent. */
  beginHanding(child: Child): () => void {
    child.handing++;
    let over = false;
    return () => {
      if (over) return;
      over = true;
      if (--child.handing === 0 && child.shutdownAt !== undefined) this.shutdown(child, child.shutdownAt);
    };
  }

  private shutdown(c: Child, deadline: number): void {
    c.shutdownAt = undefined;
    // `fdSeq`: the batches sent over the descriptor channel, which the child takes before it stops
    const fdSeq = c.channel?.usable ? c.channel.seq : undefined;
    if (!sendToChild(c.proc, { type: 'shutdown', deadline, ...(fdSeq ? { fdSeq } : {}) }))
      c.proc.kill('SIGTERM');
  }

  /** Grace is over: children cut their connections and exit (SIGKILL if they do not). */
  forceAll(): void {
    for (const c of this.children) {
      if (!sendToChild(c.proc, { type: 'force' })) c.proc.kill('SIGKILL');
    }
    setTimeout(() => this.killAll(), KILL_AFTER_MS).unref();
  }

  killAll(): void {
    for (const c of this.children) c.proc.kill('SIGKILL');
  }
}
