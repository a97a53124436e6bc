// Process main of the children echo-server starts (a process main: it exits and handles
// signals itself). The role comes in the environment (ECHO_ROLE):
//   serve       a worker: echoes every connection the parent hands it
//   serve-once  a fork child: echoes the one connection it is handed, then exits
//   listen      a worker with its own listening socket (--exclusive --reuse-port)
// The validated config never does (with --tls it holds the private key, and any process of
// the same user can read /proc/PID/environ): the child says 'hello' and the parent answers
// with the config, its first message; nothing is served before it has come.
// Every connection's byte counts go to the parent as it closes, so the totals survive a
// worker that is killed later. The parent coordinates shutdown: a terminal's Ctrl-C (sent to
// the whole process group) is ignored here; SIGTERM — alone, or to the process group as
// systemd sends it — drains like the parent's 'shutdown' message. A child never outlives its
// parent: when the IPC channel closes, it drains and leaves.

import type { Socket } from 'node:net';
import { errorCode, explainError } from '../core/errors.js';
import { type Fault, type FaultDraw, FaultSet, faultKeys } from '../core/faults.js';
import { manageYoungGeneration } from '../core/heap.js';
import { fdHeadroom, type TcpInfo, tcpInfo } from '../core/libc.js';
import { createLogger, type Logger } from '../core/log.js';
import type { ServerConfig } from './config.js';
import {
  drainConnection,
  forceClose,
  type HandlerContext,
  liveBytes,
  serveConnection,
  setConnectionFaults,
} from './handler.js';
import { type HandedMeta, receiveHandovers } from './handover.js';
import { lightReadOf } from './here.js';
import { type ChildRole, closedReported, reportClosed, sendToParent, type ToChild } from './ipc.js';
import type { LiveConnection } from './listener.js';
import { echoServerOptions, handlerContextOf, startEchoServer } from './tcp-server.js';
import { lightUsable, type ReadCallback } from './user-buffer.js';

const role = process.env.ECHO_ROLE as ChildRole | undefined;
const who = role === 'serve-once' ? 'child' : 'worker';
const label = `${who} ${process.pid}`;
const logFields = { [who]: process.pid };
// set once the parent's 'config' message has come (before any role starts)
let cfg: ServerConfig;
let logger: Logger;

/** Stop once, by `deadline`: `drain` starts it, `force` cuts what is left then. */
function stopper(drain: () => unknown, force: () => void): (deadline: number) => void {
  let stopping = false;
  return (deadline) => {
    if (stopping) return;
    stopping = true;
    setTimeout(force, Math.max(0, deadline - Date.now())).unref();
    void drain();
  };
}

async function listenRole(): Promise<void> {
  let srv: Awaited<ReturnType<typeof startEchoServer>>;
  try {
    srv = await startEchoServer({
      ...echoServerOptions(cfg, logger),
      label,
      logFields,
      onConnectionClosed: (r) =>
        void reportClosed({
          type: 'closed',
          ...(cfg.metrics ? { peer: r.peer } : {}),
          bytesIn: r.bytesIn,
          bytesOut: r.bytesOut,
          error: r.error,
          ms: r.ms,
          ...(r.messages ? { messages: r.messages } : {}),
        }),
    });
  } catch (err) {
    await sendToParent({
      type: 'listen-failed',
      code: errorCode(err),
      line: `${label}: ${explainError(err).line}`,
    });
    process.exit(1);
  }
  await sendToParent({ type: 'listening', address: srv.address, options: srv.options });
  if (cfg.metrics) reportLive(srv);
  const stop = stopper(
    async () => {
      const t = await srv.close({ graceMs: 2_147_483_647 }); // the deadline timer forces
      await closedReported();
      await sendToParent({ type: 'refusals', refusedBy: t.refusedBy });
      process.exit(0);
    },
    () => srv.forceClose(),
  );
  wire(stop, () => srv.forceClose());
  process.on('message', (m: ToChild) => {
    if (m.type === 'faults') srv.setFaults(m.faults);
  });
}

/** How many of its open connections a 'listen' child lists to the parent (the rest are counted). */
const LIVE_LISTED = 500;

/**
 * --metrics with --exclusive: the parent sees none of this worker's connections, so once a
 * second, when they changed, the worker sends the list (the admin page shows it).
 */
function reportLive(srv: { connections(): LiveConnection[] }): void {
  let last = '';
  setInterval(() => {
    const all = srv.connections();
    const conns = all
      .slice(0, LIVE_LISTED)
      .map(({ peer, since, bytesIn, bytesOut, buffered, reading, tcp }) => ({
        peer,
        ...(since !== undefined ? { since } : {}),
        bytesIn,
        bytesOut,
        buffered,
        reading,
        ...(tcp ? { tcp } : {}),
      }));
    // RTT and TCP state alone moving is no news: what is open, and its bytes, is
    const key = `${all.length} ${conns.map((c) => `${c.peer}/${c.bytesIn}/${c.bytesOut}`).join(' ')}`;
    if (key === last) return;
    last = key;
    void sendToParent({ type: 'live', count: all.length, conns });
  }, 1000).unref();
}

/**
 * The faults of the connections handed to this process, as the parent changes them: each
 * connection keeps the draw it came with, and takes each new list by it. A connection whose
 * draw is older than the last list heard of (it was sent before that list but chosen
 * against the one before) is chosen again against the newest.
 */
function handedFaults() {
  const draws = new Map<Socket, FaultDraw>();
  let newest: { faults: Fault[]; v: number } | undefined;
  return {
    /** the faults to serve a connection with */
    of(m: { faults?: Fault[]; draw?: FaultDraw }): Fault[] | undefined {
      const { draw } = m;
      if (!draw || !newest || (draw.v ?? 0) >= newest.v) return m.faults;
      const now = FaultSet.faultsOf(newest.faults, draw);
      return now.length ? now : undefined;
    },
    served(s: Socket, draw: FaultDraw | undefined): void {
      if (draw) draws.set(s, draw);
    },
    closed: (s: Socket) => draws.delete(s),
    /** a light connection's handle went to a net.Socket: its draw goes with it */
    moved(from: Socket, to: Socket): void {
      const d = draws.get(from);
      draws.delete(from);
      if (d) draws.set(to, d);
    },
    changed(m: Extract<ToChild, { type: 'faults' }>, live: Iterable<Socket>): void {
      newest = { faults: m.faults, v: m.v ?? 0 };
      const keys = faultKeys(m.faults);
      for (const s of live)
        setConnectionFaults(s, FaultSet.faultsOf(m.faults, draws.get(s) ?? { n: 0 }, keys));
    },
  };
}

function serveRole(once: boolean): void {
  const faults = handedFaults();
  const live = new Map<Socket, number>(); // socket → hand-over id
  let stopping = false;
  let forced = false;
  const exitIfDone = () => {
    if (live.size === 0 && (stopping || once) && (forced || !channel.pending()))
      void closedReported().then(() => process.exit(0));
  };
  // one context for every connection of this process: one --min-rate sweep, one -v read-back
  const ctx: HandlerContext = {
    ...handlerContextOf({ ...echoServerOptions(cfg, logger), label, logFields }),
    rttAtClose: cfg.metrics !== undefined,
    onClose: async (socket, r) => {
      const id = live.get(socket);
      await reportClosed({
        type: 'closed',
        id,
        bytesIn: r.bytesIn,
        bytesOut: r.bytesOut,
        error: r.error,
        ms: r.ms,
        ...(r.rttUs !== undefined ? { rttUs: r.rttUs } : {}),
        ...(r.messages ? { messages: r.messages } : {}),
      });
      live.delete(socket);
      faults.closed(socket);
      exitIfDone();
    },
    onHandOver(from, to) {
      if (live.has(from)) live.set(to, live.get(from)!).delete(from);
      faults.moved(from, to);
    },
  };
  const light: { read?: ReadCallback } = {}; // set by announceReady()
  /** serve a handed-over socket (Node's IPC or the descriptor channel) */
  const serve = (socket: Socket, m: Omit<HandedMeta, 'probe'>) => {
    socket.allowHalfOpen = true; // echo what arrived, then close, as in the evented server
    const head = m.head ? Buffer.from(m.head, 'base64') : undefined;
    const served = serveConnection(socket, ctx, m.peer, head, faults.of(m));
    live.set(served, m.id);
    faults.served(served, m.draw);
    served.resume();
    return served;
  };
  process.on('message', (m: ToChild, handle?: Socket) => {
    if (m.type === 'faults') faults.changed(m, live.keys());
    if (m.type === 'shutdown') channel.want = Math.max(channel.want, m.fdSeq ?? 0);
    if (m.type !== 'conn' || !handle) return;
    if (stopping || (once && live.size > 0)) {
      handle.destroy(); // cannot happen with our parent; never leave a socket unowned
      return;
    }
    serve(handle, m);
  });
  // the descriptor channel: what was sent before a shutdown is served (and drained) too
  const channel = openChannel(once, {
    light,
    conn(socket, m) {
      const s = serve(socket, m);
      if (forced) forceClose(s);
      else if (stopping) drainConnection(s);
    },
    lost: (m, code) => void reportClosed({ type: 'closed', id: m.id, bytesIn: 0, bytesOut: 0, error: code }),
    changed: () => exitIfDone(),
  });
  process.on('disconnect', () => {
    if (channel.open) channel.want = Number.POSITIVE_INFINITY; // until the parent's end closes
  });
  if (cfg.metrics) {
    // --metrics: the parent counts bytes as they flow; once a second, what changed
    const sent = new Map<Socket, number>();
    setInterval(() => {
      const conns: [number, number, number, TcpInfo?][] = [];
      for (const [s, id] of live) {
        const b = liveBytes(s);
        if (sent.get(s) === b.bytesIn + b.bytesOut) continue;
        sent.set(s, b.bytesIn + b.bytesOut);
        // TCP_INFO only for connections that moved bytes: an idle one costs nothing
        const tcp = tcpInfo(s);
        conns.push(tcp ? [id, b.bytesIn, b.bytesOut, tcp] : [id, b.bytesIn, b.bytesOut]);
      }
      for (const s of sent.keys()) if (!live.has(s)) sent.delete(s);
      if (conns.length) void sendToParent({ type: 'progress', conns });
    }, 1000).unref();
  }
  // forced: what the descriptor channel still brings is cut too, and nothing more is waited for
  const force = () => {
    forced = true;
    for (const s of live.keys()) forceClose(s);
    exitIfDone();
  };
  const stop = stopper(() => {
    stopping = true;
    for (const s of live.keys()) drainConnection(s);
    exitIfDone();
  }, force);
  wire(stop, force);
  announceReady(once, channel.open, ctx, light);
}

/**
 * Tell the parent this process is ready. Before that, where its connections qualify for light
 * ones (as in evented mode: not after a PROXY header) and this process's check passes,
 * `light.read` is set: received descriptors become light connections, the parent's
 * self-test of the channel included.
 */
function announceReady(
  once: boolean,
  channelOpen: boolean,
  ctx: HandlerContext,
  light: { read?: ReadCallback },
): void {
  // a descriptor passed to a process at its limit is dropped (MSG_CTRUNC): the parent hands a
  // worker no more connections than its limit leaves room for (a fork child serves one)
  const ready = () =>
    void sendToParent({
      type: 'ready',
      ...(once ? {} : { fds: fdHeadroom() }),
      ...(channelOpen ? { handover: true } : {}),
    });
  const lightRead = once || cfg.proxyProtocol ? undefined : lightReadOf(ctx);
  if (!lightRead || !channelOpen) {
    ready();
    return;
  }
  void lightUsable(logger).then((ok) => {
    if (ok) light.read = lightRead;
    if (ok) logger.debug(logFields, `${label}: received descriptors are served as light connections`);
    ready();
  });
}

/**
 * The worker's end of the descriptor channel and of its wake-up stream (the descriptors
 * ECHO_HANDOVER_FD names), when the parent opened them. `want`: batches the parent said it
 * sent (its 'shutdown'); pending() while fewer have been dealt with and the channel is open.
 * `changed` after each batch and at its end.
 */
function openChannel(
  once: boolean,
  h: {
    /** `read`, once set: received descriptors become light connections reading into it */
    light: { read?: ReadCallback };
    conn(socket: Socket, m: HandedMeta): void;
    lost(m: HandedMeta, code: string): void;
    changed(): void;
  },
) {
  const state = { open: false, want: 0, got: 0, pending: () => state.open && state.got < state.want };
  const [fd, wakeFd] = (process.env.ECHO_HANDOVER_FD ?? '').split(',').map(Number);
  if (once || !Number.isInteger(fd) || !Number.isInteger(wakeFd)) return state;
  try {
    receiveHandovers(fd!, wakeFd!, {
      get light() {
        return h.light.read;
      },
      conn: h.conn,
      lost: h.lost,
      batch(seq) {
        state.got = seq;
        h.changed();
      },
      end(why) {
        state.open = false;
        if (why) logger.debug(logFields, `${label}: descriptor channel: ${why}`);
        h.changed();
      },
    });
    state.open = true;
  } catch (err) {
    logger.debug(logFields, `${label}: descriptor channel unusable: ${(err as Error).message}`);
  }
  return state;
}

/** The parent's messages and this process's signals, the same for every role. */
function wire(stop: (deadline: number) => void, force: () => void): void {
  process.on('message', (m: ToChild) => {
    if (m.type === 'shutdown') stop(m.deadline);
    else if (m.type === 'force') force();
  });
  process.on('SIGTERM', () => stop(Date.now() + cfg.graceMs));
  // the parent is gone: nothing will coordinate us any more
  process.on('disconnect', () => stop(Date.now() + cfg.graceMs));
}

/** Wait for the parent's config; a shutdown, a signal or a lost parent before it ends the process. */
function awaitConfig(start: () => void): void {
  const quit = () => process.exit(0); // nothing was served yet: nothing to drain
  const onMessage = (m: ToChild) => {
    if (m.type === 'shutdown' || m.type === 'force') return quit();
    if (m.type !== 'config') return;
    process.off('message', onMessage);
    process.off('SIGTERM', quit);
    process.off('disconnect', quit);
    cfg = m.config;
    logger = createLogger({
      level: cfg.logLevel,
      format: cfg.logFormat,
      name: 'echo-server',
      instance: cfg.instanceName,
    });
    start();
  };
  process.on('message', onMessage);
  process.on('SIGINT', () => {});
  process.on('SIGTERM', quit);
  process.on('disconnect', quit);
  void sendToParent({ type: 'hello' });
}

manageYoungGeneration();
if (role === 'listen') awaitConfig(() => void listenRole());
else if (role === 'serve' || role === 'serve-once') awaitConfig(() => serveRole(role === 'serve-once'));
else {
  process.stderr.write('child-main: started without ECHO_ROLE; this module is run by echo-server\n');
  process.exitCode = 2;
}
