// --mode fork: one process per connection, as seed 004's fork() after accept(). The parent
// accepts with reading paused and passes the socket to a child over IPC; the child echoes
// and exits when its client leaves. A warm spare child is kept ready so a new client does
// not wait for a Node process to start. Beyond --max-children, new clients wait, unread, in
// the order they came (the choice that loses nobody; the kernel's backlog still bounds it).

import { type ChildProcess, fork } from 'node:child_process';
import net, { type AddressInfo, type Socket } from 'node:net';
import { AccessControl, RateLimitedLog } from '../core/access.js';
import { listenTcp } from '../core/listen.js';
import type { Logger } from '../core/log.js';
import { formatAddress } from '../core/parse.js';
import type { ServerConfig } from './config.js';
import { addTotals, emptyTotals, type ServerTotals } from './handler.js';
import { childMain } from './workers.js';

export interface ForkHandle {
  address: AddressInfo;
  /** pids of the children serving a client now */
  children(): number[];
  close(): Promise<ServerTotals>;
  forceClose(): void;
}

interface Child {
  proc: ChildProcess;
  ready: Promise<void>;
}

export async function startForkServer(
  cfg: ServerConfig,
  logger: Logger,
  env: Record<string, string>,
): Promise<ForkHandle> {
  const totals = emptyTotals();
  const busy = new Set<ChildProcess>();
  const waiting: Socket[] = [];
  const all = new Set<ChildProcess>();
  let stopping = false;

  const spawnChild = (): Child => {
    const proc = fork(childMain, [], {
      env: { ...process.env, ...env, ECHO_ROLE: 'fork-child', ECHO_CONFIG: JSON.stringify(cfg) },
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    });
    all.add(proc);
    const ready = new Promise<void>((resolve, reject) => {
      proc.once('message', () => resolve());
      proc.once('exit', () => reject(new Error('child exited before it was ready')));
    });
    ready.catch(() => {});
    proc.on('message', (m: { type: string; totals?: ServerTotals }) => {
      if (m.type === 'totals' && m.totals) addTotals(totals, m.totals);
    });
    proc.on('exit', () => {
      all.delete(proc);
      if (busy.delete(proc)) next();
    });
    return { proc, ready };
  };

  let spare: Child | undefined = spawnChild();

  const dispatch = async (socket: Socket) => {
    const child = spare ?? spawnChild();
    spare = stopping ? undefined : spawnChild(); // warm the next one while this one works
    busy.add(child.proc);
    const peer = formatAddress(socket.remoteAddress ?? '?', socket.remotePort ?? 0);
    try {
      await child.ready;
      child.proc.send({ type: 'conn' }, socket); // the parent's copy is closed once sent
      logger.debug({ child: child.proc.pid, peer }, `child ${child.proc.pid} serves ${peer}`);
    } catch (err) {
      logger.warn({ peer, err: String(err) }, `could not hand ${peer} to a child`);
      socket.destroy();
      busy.delete(child.proc);
      child.proc.kill('SIGKILL');
    }
  };

  const next = () => {
    while (!stopping && waiting.length && busy.size < cfg.maxChildren) {
      const s = waiting.shift()!;
      if (!s.destroyed) void dispatch(s);
    }
  };

  const access = new AccessControl(cfg.allow, cfg.deny);
  const refusals = new RateLimitedLog(logger);
  const server = net.createServer({ pauseOnConnect: true, allowHalfOpen: true }, (socket) => {
    socket.on('error', () => {});
    const verdict = access.check(socket.remoteAddress);
    if (!verdict.ok) {
      totals.refused++;
      refusals.warn(
        `${verdict.why}|${socket.remoteAddress}`,
        { peer: socket.remoteAddress },
        `refused ${socket.remoteAddress}: ${verdict.why}`,
      );
      socket.destroy();
      return;
    }
    if (busy.size >= cfg.maxChildren) {
      waiting.push(socket);
      socket.once('close', () => {
        const i = waiting.indexOf(socket);
        if (i >= 0) waiting.splice(i, 1);
      });
      logger.info(
        { waiting: waiting.length },
        `${busy.size} children busy (--max-children ${cfg.maxChildren}): ${formatAddress(socket.remoteAddress ?? '?', socket.remotePort ?? 0)} waits`,
      );
      return;
    }
    void dispatch(socket);
  });
  server.on('error', (err) => logger.error({ err: err.message }, `accept failed: ${err.message}`));
  const address = await listenTcp(server, {
    host: cfg.host,
    port: cfg.port,
    backlog: cfg.socket.backlog,
    reuseAddr: cfg.socket.reuseAddr,
    reusePort: cfg.socket.reusePort,
    recvBuffer: cfg.socket.recvBuffer,
    sendBuffer: cfg.socket.sendBuffer,
  });

  const force = () => {
    for (const p of all) p.kill('SIGKILL');
    for (const s of waiting) s.destroy();
  };
  let closing: Promise<ServerTotals> | undefined;
  return {
    address,
    children: () => [...busy].map((p) => p.pid!),
    forceClose: force,
    close() {
      closing ??= (async () => {
        stopping = true;
        // stop listening now; its callback is not awaited: Node never calls it once sockets
        // have been passed to other processes (its connection count no longer drains)
        server.close();
        for (const s of waiting.splice(0)) s.destroy(); // never served, nothing read: a clean close
        const exits = [...all].map(
          (p) =>
            new Promise<void>((resolve) => {
              if (p.exitCode !== null || p.signalCode !== null) return resolve();
              p.once('exit', () => resolve());
              if (p.connected) p.send({ type: 'shutdown' });
              else p.kill('SIGTERM');
            }),
        );
        const timer = setTimeout(force, cfg.graceMs + 2000);
        await Promise.all(exits);
        clearTimeout(timer);
        return totals;
      })();
      return closing;
    },
  };
}
