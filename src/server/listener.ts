// The TCP listener of every server mode: it owns the listening socket (listenTcp), the
// admission gate, accept errors, the totals, the FIFO queue of clients waiting for a slot and
// the only grace timer. Where a connection is served is the backend's business:
//   evented    here, no limit on concurrency              (here.ts)
//   iterative  here, one at a time; the rest wait unread  (here.ts, concurrency 1)
//   fork       a child process per connection, at most --max-children at once  (fork.ts)
//   workers    one of N long-lived worker processes       (workers.ts)
// With `--mode workers --exclusive` each worker runs a listener of its own (workers.ts,
// child-main.ts). Backends report each connection's end as an event; only this file adds
// them to the totals.

import net, { type AddressInfo, type Socket } from 'node:net';
import type { AccessControl } from '../core/access.js';
import { Admission, type AdmissionOptions, finUnread, plural } from '../core/admission.js';
import { countError, errorCode, explainError } from '../core/errors.js';
import { type Fault, type FaultDraw, FaultSet } from '../core/faults.js';
import { AcceptedHandle, acceptHandles } from '../core/internals.js';
import {
  acceptOne,
  boundPort,
  closeFd,
  peerCredentials,
  receiveQueueBytes,
  type TcpInfo,
  tcpInfo,
} from '../core/libc.js';
import {
  DEFAULT_BACKLOG,
  type ListenOptions,
  listenSocket,
  rawListenFd,
  type UnixListenNotes,
} from '../core/listen.js';
import type { Logger } from '../core/log.js';
import { formatAddress } from '../core/parse.js';
import {
  addMessages,
  copyTotals,
  emptyTotals,
  type MessageCounts,
  type ServerTotals,
} from '../core/records.js';
import { formatReport, type OptionReport, reportSocketOptions } from '../core/sockopts.js';
import type { UdpTotals } from '../udp/server.js';
import { closedWanted, connectionClosed } from './conn-metrics.js';
import { WAITED } from './handler.js';
import { readFirstBytes, readProxyHeader } from './preamble.js';
import { acceptWithSharedRead, lightUsable, type ReadCallback, sharedReadUsable } from './user-buffer.js';

export interface LiveConnection {
  peer: string;
  bytesIn: number;
  bytesOut: number;
  /** bytes read but not yet handed to the kernel (bounded by backpressure) */
  buffered: number;
  /** false while reading is paused because the client does not read its echo */
  reading: boolean;
  /** the process serving it, where that is not this one */
  pid?: number;
  /** when it was admitted (ms since the epoch) */
  since?: number;
  /** TCP_INFO now (Linux; connections served in this process) */
  tcp?: TcpInfo;
}

export interface CloseOptions {
  /** how long in-flight echoes may take to finish before connections are destroyed (ms); default 5000 */
  graceMs?: number;
}

/** A running server, whatever its mode (TCP in one or many processes, or UDP). */
export interface ServerHandle {
  readonly address: AddressInfo;
  /** listening socket options as the kernel reports them */
  readonly options: OptionReport[];
  stats(): ServerTotals;
  /** the connections being served now (bytes of those served by other processes are 0 until they close) */
  connections(): LiveConnection[];
  /**
   * Stop accepting, let in-flight echoes finish (every byte read so far is written back,
   * then FIN), force after the grace period. Resolves with the totals.
   */
  close(opts?: CloseOptions): Promise<ServerTotals>;
  /** destroy every connection now (a second signal) */
  forceClose(): void;
  /**
   * replace the faults (--fault): connections already open take them too, each by its own
   * draw of p= and every= (UDP: the next datagram); [] turns them off
   */
  setFaults(faults: Fault[]): void;
  /** workers modes: what each worker process served (for per-worker metrics) */
  workers?(): WorkerTotals[];
  /** --udp: the datagram counters */
  udp?(): UdpTotals;
}

export interface WorkerTotals {
  pid: number;
  connections: number;
  bytesIn: number;
  bytesOut: number;
}

/** A served connection as it ended: what the Server folds into its totals and metrics. */
export interface ClosedConnectionRecord {
  bytesIn: number;
  bytesOut: number;
  /** the error code that ended it, if one did */
  error?: string;
  /** how long it lasted; absent when unknown (its process died): then it is not charted */
  ms?: number;
  rttUs?: number;
  /** a WebSocket connection's messages */
  messages?: MessageCounts;
}

/**
 * What a backend tells the Server about one connection it was given: exactly one of these,
 * once. The backend never touches the totals; the Server folds these into them.
 */
export interface ConnectionEvents {
  /** it was served and is over */
  closed(record: ClosedConnectionRecord): void;
  /** it could not be served at all (no process could take it): the Server refuses it */
  refused(reason: string): void;
}

/** Add one closed connection to `totals` and to the --metrics charts. */
export function foldClosed(totals: ServerTotals, r: ClosedConnectionRecord): void {
  totals.bytesIn += r.bytesIn;
  totals.bytesOut += r.bytesOut;
  if (r.error) countError(totals.errors, r.error);
  if (r.messages) {
    totals.messages ??= { messagesIn: 0, messagesOut: 0, payloadIn: 0, payloadOut: 0 };
    addMessages(totals.messages, r.messages);
  }
  if (r.ms !== undefined && closedWanted())
    connectionClosed({
      ms: r.ms,
      bytesIn: r.bytesIn,
      bytesOut: r.bytesOut,
      ...(r.rttUs !== undefined ? { rttUs: r.rttUs } : {}),
    });
}

/** Where admitted connections are served. */
export interface Backend {
  /** accept with reading paused: the bytes are read later, or by another process */
  readonly pauseOnConnect: boolean;
  /**
   * Serve an admitted connection and report how it ended through `events` (once). `head`:
   * bytes already read from the client (after a PROXY header) that come before what the
   * socket still holds.
   */
  serve(
    socket: Socket,
    peer: string,
    events: ConnectionEvents,
    head?: Buffer,
    /** the faults chosen for this connection (--fault) */
    faults?: Fault[],
    /** how they were chosen, to choose again when they change (setFaults) */
    draw?: FaultDraw,
  ): void;
  /**
   * Serve an admitted connection accepted without a net.Socket (AcceptedHandle), as serve():
   * where it cannot be passed on as a descriptor, the backend has the handle build one. The
   * listener accepts so only where this is present and no PROXY header nor TLS is read.
   */
  serveHandle?(
    h: AcceptedHandle,
    peer: string,
    events: ConnectionEvents,
    head?: Buffer,
    faults?: Fault[],
    draw?: FaultDraw,
  ): void;
  /** --fault changed (FaultSet version `v`): the open connections take `faults` by their draw */
  setFaults?(faults: readonly Fault[], v: number): void;
  /** Shutdown began: drain what is being served by `deadline` (epoch ms). Resolves when the backend has stopped. */
  drain(deadline: number): Promise<void>;
  /** Grace is over: cut what is left. */
  force(): void;
  connections(): LiveConnection[];
  /** per worker process, where there are long-lived ones */
  workers?(): WorkerTotals[];
  /**
   * Where this backend serves in this process and needs no 'data' events (no TLS, no trace):
   * its read callback, for sockets that read into the shared buffer (user-buffer.ts).
   */
  readonly sharedRead?: ReadCallback;
  /**
   * Its connections only echo (no TLS, trace, socket options): with sharedRead, they may be
   * light ones (core/internals.ts LightSocket) where this process's check passed.
   */
  readonly light?: boolean;
}

export interface ListenerOptions {
  listen: ListenOptions;
  admission: Omit<AdmissionOptions, 'logger' | 'logFields'>;
  backend: Backend;
  /** connections served at once; later ones wait unread in arrival order (default: no limit) */
  concurrency?: number;
  /** why clients wait, for the (rate-limited) log line when they do */
  waitReason?: string;
  logger: Logger;
  logFields?: object;
  /** log the listening socket's options as the kernel reports them */
  logOptions?: boolean;
  /**
   * Every connection starts with a PROXY v1/v2 header, read within `timeoutMs`. Only peers
   * in `from` may send one (a Unix socket's peers all may: its file mode says who can
   * connect); anyone else is refused before a byte is read.
   */
  proxyProtocol?: { timeoutMs: number; from: AccessControl };
  /**
   * --tls: the first bytes are read here, within `timeoutMs`; a client whose first byte is
   * not a TLS handshake record (0x16) gets a TLS alert and a FIN at once, instead of waiting
   * out the handshake timeout (a short plain line is less than a record header: TLS waits).
   */
  tls?: { timeoutMs: number };
  /** --fault: chosen here, per connection, so p= and every= hold across processes */
  faults?: FaultSet;
}

/** `a`, or undefined when it is empty */
const nonEmpty = <T>(a: T[]): T[] | undefined => (a.length ? a : undefined);

/** An accepted connection: a net.Socket, or a handle that has none (Backend.serveHandle). */
type Conn = Socket | AcceptedHandle;

interface Waiting {
  socket: Socket;
  peer: string;
  release: () => void;
  head?: Buffer;
  draw?: FaultDraw;
}

/** How a peer is named in logs: `127.0.0.1:51234`, or `unix pid 1234 uid 1000`. */
export function peerName(socket: Socket, unix: boolean): string {
  if (!unix) return formatAddress(socket.remoteAddress ?? '?', socket.remotePort ?? 0);
  const cred = peerCredentials(socket);
  return cred ? `unix pid ${cred.pid} uid ${cred.uid}` : 'unix';
}

/** the first byte of a TLS handshake record (a ClientHello's) */
const TLS_HANDSHAKE = 0x16;
/** a TLS record: fatal alert unexpected_message, what a plain client is answered */
const TLS_ALERT_UNEXPECTED = Buffer.from([0x15, 0x03, 0x01, 0x00, 0x02, 0x02, 0x0a]);

/** Linux TCP states (tcp_states.h) as TCP_INFO reports them */
const TCP_CLOSE = 7;
const TCP_CLOSE_WAIT = 8;
/** after a sweep of the waiting queue that freed nothing, the next one waits this long (ms) */
const SWEEP_IDLE_MS = 50;

/** The address admission counts a peer under: its IP, or `unix` for every local client. */
const peerIp = (socket: Socket, unix: boolean) => (unix ? 'unix' : (socket.remoteAddress ?? '?'));

/** Call `force` after `ms` unless the returned function cancels it first: the grace timer of every mode. */
export function graceTimer(ms: number, force: () => void): () => void {
  const t = setTimeout(force, ms);
  return () => clearTimeout(t);
}

export async function startListener(o: ListenerOptions): Promise<ServerHandle> {
  const { backend, logger } = o;
  const totals = emptyTotals(); // this function's alone: backends report, it folds
  const concurrency = o.concurrency ?? Number.POSITIVE_INFINITY;
  // clients waiting for a slot hold a descriptor each: bound them as the kernel bounds its queue
  const queueLimit = o.listen.backlog ?? DEFAULT_BACKLOG;
  const queue: Waiting[] = [];
  /** sockets whose first bytes (a PROXY header, a TLS record header) are being read */
  const pendingHeaders = new Set<Socket>();
  const admission = new Admission({ ...o.admission, logger, logFields: o.logFields, reclaim: () => sweep() });
  let serving = 0;
  let onIdle: (() => void) | undefined;
  const idle = () => serving === 0 && queue.length === 0;

  // what every connection's events share: one object per connection, no closures (see Served)
  const shared: ServedShared = {
    totals,
    admission,
    free: (release) => {
      serving--;
      release();
    },
    after: () => {
      next();
      if (idle()) onIdle?.();
    },
  };
  const start = (socket: Conn, peer: string, release: () => void, head?: Buffer, draw?: FaultDraw) => {
    // chosen when served, not when admitted: a change made while it waited applies
    serving++;
    totals.connections++;
    totals.active++;
    const chosen = draw && o.faults?.active ? nonEmpty(FaultSet.faultsOf(o.faults.faults, draw)) : undefined;
    const events = new Served(shared, socket, peer, release);
    if (socket instanceof AcceptedHandle) backend.serveHandle!(socket, peer, events, head, chosen, draw);
    else backend.serve(socket, peer, events, head, chosen, draw);
  };
  const next = () => {
    while (!admission.closing && serving < concurrency && queue.length > 0) {
      const w = queue.shift()!;
      if (w.socket.destroyed) w.release();
      else start(w.socket, w.peer, w.release, w.head, w.draw);
    }
  };

  const sweep = queueSweeper(queue);

  /** An admitted connection: served now, or waiting its turn. */
  const place = (socket: Socket, ip: string, peer: string, release: () => void, head?: Buffer) => {
    const draw = o.faults?.draw();
    if (serving < concurrency) return start(socket, peer, release, head, draw);
    if (queue.length >= queueLimit) sweep();
    if (queue.length >= queueLimit) {
      release();
      admission.refuse(socket, 'queue-full', `${plural(queue.length, 'client')} already waiting`, ip);
      return;
    }
    {
      const w: Waiting = { socket, peer, release, head, draw };
      queue.push(w);
      (socket as Socket & { [WAITED]?: boolean })[WAITED] = true;
      socket.on('error', () => {});
      socket.once('close', () => {
        const i = queue.indexOf(w);
        if (i >= 0) queue.splice(i, 1);
        release();
        if (idle()) onIdle?.();
      });
      admission.warnOnce(
        'queue',
        { waiting: queue.length },
        `new clients wait, unread, in arrival order: ${o.waitReason ?? `${serving} being served`}`,
      );
    }
  };

  /** A connection accepted without a net.Socket (only with serveHandle, no PROXY, no TLS, TCP). */
  const placeHandle = (h: AcceptedHandle) => {
    const ip = h.remoteAddress ?? '?';
    const release = admission.admit(() => h.socket(), ip);
    const peer = formatAddress(ip, h.remotePort ?? 0);
    if (release && serving < concurrency) start(h, peer, release, undefined, o.faults?.draw());
    else if (release) place(h.socket(), ip, peer, release);
  };

  const unix = o.listen.path !== undefined;
  const gate: Gate = { o, admission, totals, pendingHeaders, unix, place, placeHandle };
  const onConnection = proxyStage(gate, tlsStage(gate));
  const proxy = o.proxyProtocol;
  const paused = backend.pauseOnConnect || proxy !== undefined || o.tls !== undefined;
  const server = net.createServer({ allowHalfOpen: true, pauseOnConnect: paused }, onConnection);
  const { address, slow } = await openListener(gate, server, onConnection, paused, queueLimit);
  const listenerReports = acceptErrorsAndReports(gate, server);
  const whenIdle = () =>
    new Promise<void>((resolve) => {
      onIdle = resolve;
      if (idle()) resolve();
    });
  return listenerHandle(gate, { queue, server, slow, address, listenerReports, whenIdle });
}

/** What the stages before a backend share with the listener that runs them. */
interface Gate {
  o: ListenerOptions;
  admission: Admission;
  totals: ServerTotals;
  /** sockets whose first bytes (a PROXY header, a TLS record header) are being read */
  pendingHeaders: Set<Socket>;
  unix: boolean;
  /** an admitted connection, to be served now or to wait its turn */
  place: (socket: Socket, ip: string, peer: string, release: () => void, head?: Buffer) => void;
  /** a connection accepted without a net.Socket: admitted, then served or placed */
  placeHandle: (h: AcceptedHandle) => void;
}

/**
 * The TLS part of the preamble: with --tls the first bytes must be a handshake record, read
 * within the handshake timeout; a plain client gets a TLS alert and a FIN at once. Returns
 * how an identified connection is admitted and placed.
 */
function tlsStage({ o, admission, totals, pendingHeaders, place }: Gate) {
  /** `held`: the slot a PROXY connection took at accept (moved to `ip` already) */
  const admitAndServe = (socket: Socket, ip: string, peer: string, head?: Buffer, held?: () => void) => {
    const release = held ?? admission.admit(socket, ip);
    if (!release) return;
    if (!o.tls) return place(socket, ip, peer, release, head);
    if (head?.length) {
      if (head[0] === TLS_HANDSHAKE) return place(socket, ip, peer, release, head);
      release();
      return refusePlain(socket, ip);
    }
    void firstBytes(socket, ip, peer, release, o.tls.timeoutMs);
  };

  const refusePlain = (socket: Socket, ip: string) => {
    socket.on('error', () => {});
    socket.write(TLS_ALERT_UNEXPECTED);
    admission.refuse(
      socket,
      'plain-on-tls',
      'plain bytes on a TLS port (not a TLS ClientHello): the client needs TLS (echo-client --tls)',
      ip,
    );
  };

  const firstBytes = async (socket: Socket, ip: string, peer: string, release: () => void, ms: number) => {
    pendingHeaders.add(socket);
    let first: Buffer;
    try {
      first = await readFirstBytes(socket, ms);
    } catch (err) {
      // nothing came: the client left, or the time the TLS handshake had is over
      release();
      socket.destroy();
      const code = errorCode(err);
      if (code === 'ERR_TLS_NO_HELLO') return;
      countError(totals.errors, code);
      const why = explainError({ code }, { role: 'server' });
      admission.warnOnce(
        `tls|${code}|${ip}`,
        { peer, error: code },
        `closed ${peer}: in 0 B, out 0 B, error ${code} — ${why.meaning}. ${why.hint}`,
      );
      return;
    } finally {
      pendingHeaders.delete(socket);
    }
    if (first[0] !== TLS_HANDSHAKE) {
      release();
      return refusePlain(socket, ip);
    }
    if (admission.closing) {
      release();
      socket.destroy();
      return;
    }
    place(socket, ip, peer, release, first);
  };

  return admitAndServe;
}

/** The PROXY header part of the preamble, before admission names the client; returns the accept callback. */
function proxyStage(
  { o, admission, pendingHeaders, unix }: Gate,
  admitAndServe: ReturnType<typeof tlsStage>,
) {
  // --proxy-protocol: only a trusted proxy may name the client. From accept the connection
  // holds a slot counted under the proxy's address; once the header names the client, the
  // access lists and the per-address limit apply to that client and the count moves to it.
  const proxied = async (socket: Socket, release: () => void, timeoutMs: number) => {
    pendingHeaders.add(socket);
    try {
      const { header, rest } = await readProxyHeader(socket, timeoutMs);
      const via = peerName(socket, unix);
      const src = header.command === 'proxy' && header.source?.port ? header.source : undefined;
      const ip =
        src && (header.family === 'tcp4' || header.family === 'tcp6') ? src.address : peerIp(socket, unix);
      const peer = src && ip === src.address ? `${formatAddress(src.address, src.port)} via ${via}` : via;
      if (!admission.move(socket, release, ip)) return;
      admitAndServe(socket, ip, peer, rest.length ? rest : undefined, release);
    } catch (err) {
      release();
      admission.refuse(socket, 'proxy', explainError(err).summary, peerIp(socket, unix));
    } finally {
      pendingHeaders.delete(socket);
    }
  };

  const proxy = o.proxyProtocol;
  const proxyFrom = proxy ? proxy.from.allow.map((c) => c.text).join(', ') : '';
  const onConnection = (socket: Socket) => {
    const ip = peerIp(socket, unix);
    if (!proxy) return admitAndServe(socket, ip, peerName(socket, unix));
    if (!unix && !proxy.from.check(ip).ok) {
      admission.refuse(socket, 'proxy', `not a trusted proxy (--proxy-from ${proxyFrom})`, ip);
      return;
    }
    const release = admission.admit(socket, ip, { access: false });
    if (release) void proxied(socket, release, proxy.timeoutMs);
  };
  return onConnection;
}

/**
 * Open the listening socket and start accepting into `onConnection`. With --fault
 * accept-delay: a socket Node does not watch, accepted from once per delay.
 */
async function openListener(
  { o, admission, unix, placeHandle }: Gate,
  server: net.Server,
  onConnection: (socket: Socket) => void,
  paused: boolean,
  queueLimit: number,
): Promise<{ address: AddressInfo; slow?: { fd: number; timer: NodeJS.Timeout } }> {
  const { backend, logger } = o;
  const proxy = o.proxyProtocol;
  const unixNotes: UnixListenNotes = {};
  // --fault accept-delay: a listening socket Node does not watch, accepted from once per delay
  const acceptDelay = unix ? undefined : o.faults?.acceptDelayMs;
  let slow: { fd: number; timer: NodeJS.Timeout } | undefined;
  let address: AddressInfo;
  if (acceptDelay !== undefined) {
    const fd = rawListenFd({
      host: o.listen.host,
      port: o.listen.port,
      backlog: queueLimit,
      reuseAddr: o.listen.reuseAddr !== false,
      reusePort: o.listen.reusePort === true,
      recvBuffer: o.listen.recvBuffer,
      sendBuffer: o.listen.sendBuffer,
      ipv6Only: o.listen.ipv6Only,
      nonBlocking: true, // polled with accept4 on a timer: it must return EAGAIN, not wait
    });
    address = {
      address: o.listen.host,
      family: o.listen.host.includes(':') ? 'IPv6' : 'IPv4',
      port: boundPort(fd),
    };
    const timer = setInterval(() => {
      if (admission.closing) return;
      let conn: number | undefined;
      try {
        conn = acceptOne(fd);
      } catch (err) {
        server.emit('error', err);
        return;
      }
      if (conn === undefined) return;
      const opts = { fd: conn, readable: true, writable: true, allowHalfOpen: true, pauseOnCreate: paused };
      onConnection(new net.Socket(opts as net.SocketConstructorOpts));
    }, acceptDelay);
    slow = { fd, timer };
  } else {
    // a PROXY header is read through the stream before the echo starts: that path keeps 'data'
    const onRead =
      backend.sharedRead && !proxy && !o.tls && (await sharedReadUsable(logger))
        ? backend.sharedRead
        : undefined;
    // light connections: accepted reading (evented), over TCP (a Unix socket's peer is named by its credentials)
    const light = !!onRead && backend.light === true && !paused && !unix && (await lightUsable(logger));
    // a backend that passes descriptors on takes accepted handles, with no net.Socket built here
    const handles =
      !onRead &&
      backend.serveHandle !== undefined &&
      !proxy &&
      !o.tls &&
      !unix &&
      (await lightUsable(logger));
    address = await listenSocket(server, o.listen, unixNotes);
    if (handles && acceptHandles(server, placeHandle))
      logger.debug(
        { accept: 'handle' },
        'accepting without a net.Socket: descriptors go to the workers as accepted',
      );
    else if (onRead)
      acceptWithSharedRead(
        server,
        { allowHalfOpen: true, pauseOnCreate: paused, light },
        onRead,
        onConnection,
      );
  }
  if (unixNotes.removedStale) {
    logger.warn(
      { path: unixNotes.removedStale },
      `removed the stale socket file ${unixNotes.removedStale} (left by a server that is gone: a connect to it was refused)`,
    );
  }
  return { address, slow };
}

/** The handle of a running listener: its totals, and the one close path with its grace. */
function listenerHandle(
  { o, admission, totals, pendingHeaders }: Gate,
  parts: {
    queue: Waiting[];
    server: net.Server;
    slow?: { fd: number; timer: NodeJS.Timeout };
    address: AddressInfo;
    listenerReports: OptionReport[];
    /** resolves once nothing is served and nobody waits */
    whenIdle: () => Promise<void>;
  },
): ServerHandle {
  const { queue, server, slow, address, listenerReports, whenIdle } = parts;
  const { backend } = o;
  const stats = () => {
    const t = copyTotals(totals);
    t.refused = admission.refused;
    t.refusedBy = { ...admission.refusedBy } as Record<string, number>;
    return t;
  };
  const force = () => {
    backend.force();
    for (const w of queue) w.socket.destroy();
    for (const s of pendingHeaders) s.destroy();
  };
  let closed: Promise<ServerTotals> | undefined;
  return {
    address,
    options: listenerReports,
    stats,
    connections: () => backend.connections(),
    forceClose: force,
    setFaults(faults) {
      o.faults?.set(faults);
      backend.setFaults?.(faults, o.faults?.version ?? 0);
    },
    ...(backend.workers ? { workers: () => backend.workers!() } : {}),
    close({ graceMs = 5000 }: CloseOptions = {}) {
      closed ??= (async () => {
        admission.closing = true;
        // Not awaited: once sockets have been handed to other processes, Node's close callback
        // waits on them too; we wait on our own count of connections instead.
        server.close();
        if (slow) {
          clearInterval(slow.timer);
          closeFd(slow.fd); // connections still in its accept queue are reset by the kernel
        }
        // never served, nothing read: FIN without an echo (each leaves the queue when it closes)
        for (const w of queue) admission.linger(w.socket);
        for (const s of pendingHeaders) s.destroy(); // no header yet: nothing of theirs was read
        const cancel = graceTimer(graceMs, force);
        await Promise.all([whenIdle(), backend.drain(Date.now() + graceMs)]);
        cancel();
        admission.endLingering();
        return stats();
      })();
      return closed;
    },
  };
}

// Waiting sockets are not read, so a client that leaves is not noticed by 'end' or 'close'.
// Before a refusal for a limit, the kernel is asked instead. A waiter whose connection was
// reset (TCP state CLOSE) is gone; one that sent FIN with nothing unread (CLOSE_WAIT, empty
// receive queue) has nothing to echo: its whole echo is our FIN, sent now. A waiter that
// sent bytes before its FIN stays: from here, a client that shut down only its write side
// (nc -N) cannot be told from one that closed, and the first still waits for its echo.
// A sweep costs about 5 µs per waiter; one that freed nothing is not repeated within
// SWEEP_IDLE_MS, so a flood of refused clients cannot turn it into a CPU sink.
function queueSweeper(queue: Waiting[]): () => void {
  let fruitlessAt = Number.NEGATIVE_INFINITY;
  return () => {
    if (queue.length === 0 || Date.now() - fruitlessAt < SWEEP_IDLE_MS) return;
    let freed = false;
    for (const w of [...queue]) {
      if (w.head?.length) continue;
      const state = tcpInfo(w.socket)?.state;
      const gone = state === TCP_CLOSE;
      if (!gone && !(state === TCP_CLOSE_WAIT && receiveQueueBytes(w.socket) === 0)) continue;
      queue.splice(queue.indexOf(w), 1);
      w.release();
      freed = true;
      if (gone) w.socket.destroy();
      else finUnread(w.socket);
    }
    if (!freed) fruitlessAt = Date.now();
  };
}

/** Accept errors counted and logged; the listening socket's options as the kernel reports them. */
function acceptErrorsAndReports({ o, admission, totals }: Gate, server: net.Server): OptionReport[] {
  // registered once listening: a failed listen is reported by listenTcp, not as an accept error
  server.on('error', (err) => {
    // accept() failures (EMFILE, ENFILE…) concern one connection: count, log once per interval,
    // keep listening. At EMFILE libuv closes a reserved fd, accepts the pending connection,
    // closes it and takes the fd back — so that client sees a close, not a hang.
    const code = errorCode(err);
    countError(totals.errors, code);
    admission.warnOnce(`accept|${code}`, { code }, `accept failed: ${explainError(err).line}`);
  });

  const listenerReports = reportSocketOptions(server, {
    reuseAddr: o.listen.reuseAddr ?? true,
    reusePort: o.listen.reusePort,
    ...(o.listen.recvBuffer !== undefined ? { recvBuffer: o.listen.recvBuffer } : {}),
    ...(o.listen.sendBuffer !== undefined ? { sendBuffer: o.listen.sendBuffer } : {}),
  });
  if (o.logOptions) {
    for (const r of listenerReports) o.logger.info({ ...r }, `listening socket: ${formatReport(r)}`);
  }
  return listenerReports;
}

/** What the connections of one listener share: its totals, admission and slot accounting. */
interface ServedShared {
  totals: ServerTotals;
  admission: Admission;
  /** a connection is over: its serving slot and its admission slot (`release`) are freed */
  free: (release: () => void) => void;
  /** after a connection is over: the next waiting one is served, an idle listener says so */
  after: () => void;
}

/**
 * The events of one connection handed to a backend: the first of closed/refused counts, a
 * second is ignored. A class rather than closures: a server holding many idle connections
 * keeps one small object per connection here.
 */
class Served implements ConnectionEvents {
  private over = false;
  constructor(
    private readonly shared: ServedShared,
    /** an accepted handle builds its net.Socket only to be refused */
    private readonly socket: Conn,
    private readonly peer: string,
    private readonly release: () => void,
  ) {}

  private end(refused?: string): boolean {
    if (this.over) return false;
    this.over = true;
    const { totals, admission } = this.shared;
    totals.active--;
    this.shared.free(this.release);
    if (refused) {
      totals.connections--;
      const s = this.socket instanceof AcceptedHandle ? this.socket.socket() : this.socket;
      admission.refuse(s, 'no-child', refused, this.socket.remoteAddress ?? this.peer);
    }
    return true;
  }

  closed(record: ClosedConnectionRecord): void {
    if (!this.end()) return;
    foldClosed(this.shared.totals, record);
    this.shared.after();
  }

  refused(reason: string): void {
    if (this.end(reason)) this.shared.after();
  }
}
