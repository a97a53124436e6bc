// What the fork and workers backends share: handing an admitted socket to a child process
// over IPC and hearing back from it. The listener (in this process) accepts with reading
// paused and admits; the child echoes and reports `closed` with its byte counts, which is
// told to the Server as the connection's `closed` event. Which child gets a connection, and
// what happens when one exits, is the mode's (fork.ts, workers.ts).

import type { Socket } from 'node:net';
import { explainError } from '../core/errors.js';
import type { Fault, FaultDraw } from '../core/faults.js';
import { AcceptedHandle } from '../core/internals.js';
import type { TcpInfo } from '../core/libc.js';
import { type Logger, logs } from '../core/log.js';
import type { ServerConfig } from './config.js';
import { type HandedMeta, probeHandover } from './handover.js';
import type { ChildRole, FromChild } from './ipc.js';
import { sendToChild } from './ipc.js';
import type { Backend, ClosedConnectionRecord, ConnectionEvents, LiveConnection } from './listener.js';
import { type Child, Supervisor } from './supervisor.js';

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

export interface PoolOptions {
  role: ChildRole;
  /** how a child is named in logs: `child`, `worker` */
  name: string;
  cfg: ServerConfig;
  logger: Logger;
  /** a message the pool does not handle itself ('ready'…) */
  onMessage?(child: Child, m: FromChild): void;
  /** a connection a child reported closed */
  onClosed?(child: Child, r: ClosedConnectionRecord): void;
  /** after the pool has ended what the child still served */
  onExit?(child: Child, expected: boolean, how: string): void;
  /** hand sockets over a descriptor channel of our own where its self-test passes (handover.ts) */
  handover?: boolean;
}

/** Child processes that serve handed-over connections: the hand-over, the reports, the shutdown. */
export class ChildPool {
  readonly sup: Supervisor;
  /** hand-overs sent to no child yet: this process still holds their sockets */
  inTransit = 0;
  /** why the last spawn failed, said once per refusal */
  spawnError = '';
  private seq = 0;
  // per child, how to stop counting each of its hand-overs (when sent, or when it exits)
  private transit = new Map<Child, Set<() => void>>();
  // --metrics: bytes so far of each child's open connections (its `progress` messages)
  private progress = new WeakMap<Child, Map<number, [number, number, TcpInfo?]>>();
  // per child, its descriptor channel's self-test (resolves when it is over, either way)
  private checks = new WeakMap<Child, Promise<void>>();
  // which child serves a connection (serveWith's), for one handed back by a child that exited
  private pick?: () => Child | undefined;
  private told = false;

  constructor(private o: PoolOptions) {
    this.sup = new Supervisor({
      role: o.role,
      cfg: o.cfg,
      logger: o.logger,
      handover: o.handover,
      onMessage: (child, m) => this.onMessage(child, m),
      onExit: (child, expected, how) => {
        // queued for it and never sent: handed to another child (the channel gives them back)
        child.channel?.close();
        for (const sent of this.transit.get(child) ?? []) sent();
        // connections it still had are over (a killed child's kernel closed them)
        for (const c of child.conns.values())
          c.events.closed({ bytesIn: 0, bytesOut: 0, error: `${o.name} died` });
        child.conns.clear();
        this.progress.delete(child);
        o.onExit?.(child, expected, how);
      },
    });
  }

  private onMessage(child: Child, m: FromChild): void {
    if (m.type === 'progress') {
      const mine = this.progress.get(child) ?? new Map<number, [number, number, TcpInfo?]>();
      this.progress.set(child, mine);
      for (const [id, bytesIn, bytesOut, tcp] of m.conns)
        if (child.conns.has(id)) mine.set(id, [bytesIn, bytesOut, tcp]);
      return;
    }
    if (m.type === 'ready') this.checks.set(child, this.checkChannel(child, m.handover === true));
    if (m.type !== 'closed' || m.id === undefined) {
      this.o.onMessage?.(child, m);
      return;
    }
    this.progress.get(child)?.delete(m.id);
    const record: ClosedConnectionRecord = {
      bytesIn: m.bytesIn,
      bytesOut: m.bytesOut,
      ms: m.ms ?? 0,
      ...(m.error ? { error: m.error } : {}),
      ...(m.rttUs !== undefined ? { rttUs: m.rttUs } : {}),
      ...(m.messages ? { messages: m.messages } : {}),
    };
    this.o.onClosed?.(child, record);
    const c = child.conns.get(m.id);
    child.conns.delete(m.id);
    c?.events.closed(record);
  }

  /**
   * Run the descriptor channel's self-test on a child that said it reads the channel; until it
   * has passed (and for good when it fails) the child's connections go over Node's IPC.
   */
  private async checkChannel(child: Child, reads: boolean): Promise<void> {
    const ch = child.channel;
    if (!ch) return;
    const why = reads ? await probeHandover(ch) : 'the worker could not read it';
    if (!why && child.alive) ch.usable = true;
    const { name, logger } = this.o;
    if (why) {
      ch.close(); // the worker sees its end close and stops reading it
      logger.debug({ [name]: child.pid }, `${name} ${child.pid}: hand-over over Node's IPC (${why})`);
      if (!child.alive) return;
    }
    if (this.told) return;
    this.told = true;
    if (why)
      logger.warn(
        { [name]: child.pid, handover: 'ipc' },
        `hand-over over Node's IPC, one socket per message: the descriptor channel failed its self-test (${why})`,
      );
    else
      logger.debug(
        { handover: 'scm_rights' },
        'hand-over: descriptor channel (SCM_RIGHTS, batched per turn)',
      );
  }

  /** Resolves once `child` (ready) knows which hand-over it gets. */
  handoverChecked(child: Child): Promise<void> {
    return this.checks.get(child) ?? Promise.resolve();
  }

  /** A new child, or undefined when it could not be started (`spawnError` says why). */
  trySpawn(): Child | undefined {
    try {
      return this.sup.spawn();
    } catch (err) {
      this.spawnError = explainError(err).line;
      this.o.logger.debug(
        { code: (err as NodeJS.ErrnoException).code },
        `could not start a ${this.o.name}: ${this.spawnError}`,
      );
      return undefined;
    }
  }

  /**
   * Hand `socket` to `child`; a connection no child could take is `refused`. An accepted
   * handle goes over `child`'s descriptor channel as it is; any other way, a net.Socket takes
   * it over first.
   */
  async handOver(
    child: Child,
    socket: Socket | AcceptedHandle,
    peer: string,
    events: ConnectionEvents,
    head?: Buffer,
    faults?: Fault[],
    draw?: FaultDraw,
  ): Promise<void> {
    const { name, logger } = this.o;
    const sent = this.track(child);
    const refuse = (err: unknown) =>
      events.refused(`could not hand it to ${name} ${child.pid}: ${explainError(err).line}`);
    const fields = {
      peer,
      ...(head ? { head: head.toString('base64') } : {}),
      ...(faults ? { faults } : {}),
      ...(draw ? { draw } : {}),
    };
    const served = () => {
      sent();
      if (logs(logger, 'debug'))
        logger.debug({ [name]: child.pid, peer }, `${name} ${child.pid} serves ${peer}`);
    };
    // given back by a child that exited before it was sent: another child takes it
    const again = (next: Child) => void this.handOver(next, socket, peer, events, head, faults, draw);
    if (this.viaChannel(child, socket, events, fields, { served, sent, refuse, again })) return;
    const s = socket instanceof AcceptedHandle ? socket.socket() : socket;
    // the send happens inside `handing`: a shutdown that comes meanwhile follows the connection
    await this.sup.handing(child, async () => {
      try {
        await child.ready;
      } catch (err) {
        sent();
        return refuse(err);
      }
      const id = ++this.seq;
      child.conns.set(id, { peer, events, since: Date.now() });
      sendToChild(child.proc, { type: 'conn', id, ...fields }, s, (err) => {
        if (!err) return served();
        sent();
        if (child.conns.delete(id)) refuse(err);
      });
    });
  }

  /**
   * Queue `socket` on `child`'s descriptor channel, if it has a usable one; false when it
   * cannot go that way (then Node's IPC takes it).
   */
  private viaChannel(
    child: Child,
    socket: Socket | AcceptedHandle,
    events: ConnectionEvents,
    fields: Omit<HandedMeta, 'id'>,
    then: { served(): void; sent(): void; refuse(err: unknown): void; again(next: Child): void },
  ): boolean {
    const ch = child.channel;
    if (!ch?.usable) return false;
    const id = ++this.seq;
    child.conns.set(id, { peer: fields.peer, events, since: Date.now() });
    const handed = this.sup.beginHanding(child);
    const queued = ch.send(socket, { id, ...fields }, (err) => {
      handed();
      if (!err) return then.served();
      then.sent();
      if (!child.conns.delete(id)) return;
      // never sent, the child gone (exited, or its end closed): another child may take it
      const gone = err.code === 'ECHILDGONE' || err.code === 'EPIPE' || err.code === 'ECONNREFUSED';
      const next = gone && !this.sup.stopping ? this.pick?.() : undefined;
      if (next && next !== child) then.again(next);
      else then.refuse(err);
    });
    if (!queued) {
      child.conns.delete(id);
      handed();
    }
    return queued;
  }

  /** Count a hand-over to `child` as in transit; the function returned ends that (once). */
  private track(child: Child): () => void {
    this.inTransit++;
    const pending = this.transit.get(child) ?? new Set<() => void>();
    this.transit.set(child, pending);
    const sent = () => {
      if (!pending.delete(sent)) return;
      this.inTransit--;
      if (pending.size === 0 && this.transit.get(child) === pending) this.transit.delete(child);
    };
    pending.add(sent);
    return sent;
  }

  /** `serve` (and `serveHandle`) of a backend whose children are chosen by `pick`. */
  serveWith(
    pick: () => Child | undefined,
  ): (
    socket: Socket | AcceptedHandle,
    peer: string,
    events: ConnectionEvents,
    head?: Buffer,
    faults?: Fault[],
    draw?: FaultDraw,
  ) => void {
    this.pick = pick;
    return (socket, peer, events, head, faults, draw) => {
      const child = pick();
      if (!child)
        return events.refused(
          `no ${this.o.name} process could be started${this.spawnError ? `: ${this.spawnError}` : ''}`,
        );
      void this.handOver(child, socket, peer, events, head, faults, draw);
    };
  }

  /** --fault changed: each child applies it to the connections it serves (Backend.setFaults). */
  setFaults(faults: readonly Fault[], v: number): void {
    for (const c of this.sup.children) sendToChild(c.proc, { type: 'faults', faults: [...faults], v });
  }

  /** The connections the children serve now, with the bytes (and TCP_INFO) their last `progress` gave. */
  connections(): LiveConnection[] {
    return [...this.sup.children].flatMap((c) =>
      [...c.conns].map(([id, x]) => ({
        peer: x.peer,
        ...(x.since !== undefined ? { since: x.since } : {}),
        bytesIn: this.progress.get(c)?.get(id)?.[0] ?? 0,
        bytesOut: this.progress.get(c)?.get(id)?.[1] ?? 0,
        ...tcpOf(this.progress.get(c)?.get(id)?.[2]),
        buffered: 0,
        reading: true,
        pid: c.pid,
      })),
    );
  }
}

/** `p`, or an AbortError as soon as `signal` aborts (what `p` does later is ignored). */
export function abortable<T>(p: Promise<T>, signal: AbortSignal | undefined): Promise<T> {
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

const tcpOf = (tcp: TcpInfo | undefined): { tcp?: TcpInfo } => (tcp ? { tcp } : {});
