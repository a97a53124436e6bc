// The per-connection echo handler (RFC 862), shared by every server mode: evented and
// iterative in tcp-server.ts, the workers and the forked children. One handler owns one
// connection; whatever goes wrong with it is logged and counted, never thrown to the listener.
//
// Hot path: the event handlers are shared functions using `this` (no closure per
// connection) and per-chunk work is one write and one flag test. Byte counts come from the
// socket's own counters when it closes.

import net, { type Socket } from 'node:net';
import type { SecureContext } from 'node:tls';
import { errorCode, explainError } from '../core/errors.js';
import type { Fault } from '../core/faults.js';
import { openConnections } from '../core/heap.js';
import { resumeReading, stopReading } from '../core/hold.js';
import { LightSocket } from '../core/internals.js';
import { formatTcpInfo, type TcpInfo, tcpInfo } from '../core/libc.js';
import { type Logger, logLine, logs } from '../core/log.js';
import { formatAddress } from '../core/parse.js';
import type { CloseReason, ConnectionRecord, MessageCounts } from '../core/records.js';
import { applySocketOptions, formatReport, type SocketOptions } from '../core/sockopts.js';
import { acceptTls, formatTlsInfo, tlsInfo } from '../core/tls.js';
import { type Tracer, traceSocket } from '../core/trace.js';
import type { Application, ServeInfo } from './application.js';
import { closedWanted } from './conn-metrics.js';
import { FaultyEcho, resetSocket } from './faults.js';
import { echoRead, moveSharedRead, SHARED_READ, sharedReadOf } from './user-buffer.js';

/** What the handler needs from whoever accepted the connection. */
/** Limits that a slow drip cannot hold open forever (--idle-timeout alone can: one byte per timeout). */
export interface ConnectionLimits {
  /** fewer bytes than this from the client within `windowMs`: close it */
  minRate?: { bytes: number; windowMs: number };
  /** close a connection this long after it was accepted, whatever it does */
  maxLifetimeMs?: number;
}

export interface HandlerContext extends ConnectionLimits {
  logger: Logger;
  idleTimeoutMs?: number;
  socketOptions?: SocketOptions;
  /** print the first accepted socket's option read-back (--verbose) */
  logOptions?: boolean;
  /** read TCP_INFO at close for its RTT, without logging it (a child process of a --metrics server) */
  rttAtClose?: boolean;
  /** extra fields for each connection log line (worker pid…) */
  logFields?: object;
  /** appended to each connection log message, e.g. `worker 1234` */
  label?: string;
  /** the one place a connection's end is told: its record (the backend reports it on) */
  onClose?: (socket: Socket, record: ConnectionRecord) => void;
  /** a light connection's handle was given to a net.Socket (faults came): `to` serves it from now on */
  onHandOver?: (from: Socket, to: Socket) => void;
  /** told of every connection record once it is logged (a worker reports it to its parent) */
  onClosed?: (record: ConnectionRecord) => void;
  /** --trace: every chunk read and written, to stderr or a file */
  tracer?: Tracer;
  /** --verbose: read TCP_INFO as each connection ends and put it in its close line */
  tcpInfo?: boolean;
  /** --banner: sent first to every client */
  banner?: Buffer;
  /** what is served once the transport, preamble and faults are set up (default: echo) */
  app?: Application;
  /** --tls: every connection is a TLS server socket over the accepted TCP (or Unix) one */
  tls?: { context: SecureContext; handshakeTimeoutMs: number; alpn?: string[] };
}

interface ConnState {
  ctx: HandlerContext;
  /** --min-rate: bytes read at the start of the current window */
  markBytes: number;
  markAt: number;
  peer: string;
  base: number;
  /** socket.bytesWritten that are not this connection's (negative: written by the socket it took over from) */
  outBase: number;
  start: number;
  reason: CloseReason | undefined;
  draining: boolean;
  discarded: number;
  error: string | undefined;
  /** the echo through this connection's faults, if it has any */
  faulty: FaultyEcho | undefined;
  /** TCP_INFO, read while the socket still had its fd */
  info: TcpInfo | undefined;
  /** a WebSocket connection's messages (set by its application) */
  messages?: MessageCounts;
  /** the faults a light connection takes once a net.Socket has its handle */
  pendingFaults?: Fault[];
}

const STATE = Symbol('echo-state');
type EchoSocket = Socket & { [STATE]: ConnState };

const connOptionKeys = [
  'keepAlive',
  'keepAliveIdleMs',
  'keepAliveIntervalMs',
  'keepAliveCount',
  'userTimeoutMs',
  'noDelay',
  'sendBuffer',
  'recvBuffer',
  'lingerMs',
] as const;

export function hasConnectionOptions(o: SocketOptions | undefined): boolean {
  return !!o && connOptionKeys.some((k) => o[k] !== undefined);
}

/**
 * Serve an accepted connection: its socket options (on the TCP socket itself), TLS when the
 * server has it, then the echo. `head` holds the client's bytes read already (after a PROXY
 * header); they are echoed first. Returns the socket the echo runs on (the TLS one, under
 * --tls): the one ctx.onClose is later called with. The socket may be paused; resume it to serve.
 */
export function serveConnection(
  socket: Socket,
  ctx: HandlerContext,
  peer: string,
  head?: Buffer,
  faults?: Fault[],
): Socket {
  // a light connection cannot run faults: a net.Socket takes its handle (nothing read yet)
  if (faults?.length && socket instanceof LightSocket) socket = takeOver(socket) ?? socket;
  // before TLS and before any byte: the TCP connection itself misbehaves (the faultless
  // common case allocates nothing here)
  const reset = faults?.some((f) => f.kind === 'reset-on-connect');
  if (reset || faults?.some((f) => f.kind === 'blackhole')) {
    serveEcho(socket, ctx, peer, 0, undefined, true);
    const st = (socket as EchoSocket)[STATE];
    if (reset) {
      st.reason = 'fault reset-on-connect';
      resetSocket(socket);
    } else {
      st.reason = 'fault blackhole';
      stopReading(socket); // never read, never answer: the client's data piles up in the kernel
    }
    return socket;
  }
  resumeReading(socket); // after a PROXY header this process stopped reading it
  if (hasConnectionOptions(ctx.socketOptions)) {
    try {
      const reports = applySocketOptions(socket, ctx.socketOptions!, { report: ctx.logOptions === true });
      if (ctx.logOptions) {
        ctx.logOptions = false;
        for (const r of reports) ctx.logger.info({ ...r }, `accepted socket: ${formatReport(r)}`);
      }
    } catch (err) {
      // an option the kernel refuses is a per-connection failure: log it, keep serving
      ctx.logger.warn({ peer, err: (err as Error).message }, 'socket option failed');
    }
  }
  if (head) socket.unshift(head);
  if (!ctx.tls) {
    // bytes this process read before (a PROXY header) are not the client's; `head` ones are
    serveEcho(socket, ctx, peer, socket.bytesRead - (head?.length ?? 0), faults);
    return socket;
  }
  const t = acceptTls(socket, ctx.tls.context, {
    handshakeTimeoutMs: ctx.tls.handshakeTimeoutMs,
    alpn: ctx.tls.alpn,
  });
  t.once('secure', () =>
    ctx.logger.debug({ peer, ...ctx.logFields, ...tlsInfo(t) }, `${peer}: TLS ${formatTlsInfo(tlsInfo(t))}`),
  );
  serveEcho(t, ctx, peer, 0, faults);
  // a client that leaves before the handshake is done usually rejected our certificate
  let secure = false;
  t.once('secure', () => {
    secure = true;
  });
  t.prependOnceListener('end', () => {
    if (!secure)
      (t as unknown as EchoSocket)[STATE].reason ??=
        'left during the TLS handshake (did it reject the certificate?)';
  });
  return t;
}

/** Start echoing on a socket (serveConnection has applied its options and TLS). */
export function serveEcho(
  socket: Socket,
  ctx: HandlerContext,
  peer = formatAddress(socket.remoteAddress ?? '?', socket.remotePort ?? 0),
  /** socket.bytesRead that are not the client's echoed bytes (negative: its bytes read elsewhere) */
  base = 0,
  /** this connection's faults (--fault) */
  faults?: Fault[],
  /** serve nothing: a fault decides the connection's fate (reset-on-connect, blackhole) */
  silent = false,
): void {
  const s = socket as EchoSocket;
  s[STATE] = {
    ctx,
    peer,
    base,
    outBase: 0,
    start: Date.now(),
    reason: undefined,
    draining: false,
    discarded: 0,
    error: undefined,
    markBytes: base,
    markAt: Date.now(),
    faulty: undefined,
    info: undefined,
  };
  const app = ctx.app ?? echoApplication;
  if (faults?.length && !app.ownFaults) {
    const st = s[STATE];
    st.faulty = new FaultyEcho(socket, faults, (why) => {
      st.reason ??= why as CloseReason;
    });
  }
  openConnections(1);
  if (silent) {
    listen(s, ctx, true);
    return;
  }
  // a socket reading into the shared buffer calls its read callback instead of emitting 'data':
  // echo has nothing else to set up; another application (forwarding) still starts here
  if (!(SHARED_READ in socket) || app !== echoApplication)
    app.serve(socket, app === echoApplication ? { peer } : appInfo(s, faults));
  if (ctx.tracer && !app.tracesItself) traceSocket(socket, ctx.tracer, peer);
  if (ctx.banner) socket.write(ctx.banner);
  listen(s, ctx);
  // built only when written: this runs for every connection
  if (logs(ctx.logger, 'debug'))
    ctx.logger.debug(
      { peer: s[STATE].peer, ...ctx.logFields },
      `connection from ${s[STATE].peer}${ctx.label ? ` (${ctx.label})` : ''}`,
    );
}

/** The handler's listeners on a connection's socket (and its --min-rate/--max-lifetime watch). */
function listen(s: EchoSocket, ctx: HandlerContext, silent = false): void {
  s.on('error', onError);
  s.on('close', onClose);
  if (ctx.idleTimeoutMs) {
    s.setTimeout(ctx.idleTimeoutMs);
    s.on('timeout', onTimeout);
  }
  if (ctx.minRate || ctx.maxLifetimeMs) watch(s);
  if (!silent) s.on('drain', onDrain);
  s.on('end', onEnd);
}

/** What an application other than echo is told of its connection. */
function appInfo(s: EchoSocket, faults: Fault[] | undefined): ServeInfo {
  const st = s[STATE];
  return {
    peer: st.peer,
    logger: st.ctx.logger,
    ...(st.ctx.tracer ? { tracer: st.ctx.tracer } : {}),
    ...(st.ctx.idleTimeoutMs ? { idleTimeoutMs: st.ctx.idleTimeoutMs } : {}),
    ...(faults?.length ? { faults } : {}),
    setReason(reason) {
      st.reason ??= reason;
    },
    setMessages(counts) {
      st.messages = counts;
    },
  };
}

// --- --min-rate and --max-lifetime: one sweep per context, not a timer per connection -------

const WATCHED = new WeakMap<HandlerContext, { sockets: Set<EchoSocket>; timer: NodeJS.Timeout }>();

function watch(s: EchoSocket): void {
  const ctx = s[STATE].ctx;
  let w = WATCHED.get(ctx);
  if (!w) {
    const every = Math.max(
      50,
      Math.min(1000, (ctx.minRate?.windowMs ?? 2000) / 2, (ctx.maxLifetimeMs ?? 2000) / 2),
    );
    const sockets = new Set<EchoSocket>();
    w = { sockets, timer: setInterval(() => sweep(ctx, sockets), every) };
    w.timer.unref();
    WATCHED.set(ctx, w);
  }
  w.sockets.add(s);
  s.once('close', () => {
    w.sockets.delete(s);
    if (w.sockets.size === 0) {
      clearInterval(w.timer);
      WATCHED.delete(ctx);
    }
  });
}

function sweep(ctx: HandlerContext, sockets: Set<EchoSocket>): void {
  const now = Date.now();
  for (const s of sockets) {
    const st = s[STATE];
    if (st.draining) {
      // asked to leave a window ago and still here (it does not read its echo): cut it
      if (now - st.markAt > (ctx.minRate?.windowMs ?? 2000)) s.destroy();
      continue;
    }
    if (ctx.maxLifetimeMs !== undefined && now - st.start >= ctx.maxLifetimeMs) {
      st.reason ??= 'max lifetime';
      st.markAt = now;
      drainConnection(s);
      continue;
    }
    const rate = ctx.minRate;
    if (rate && now - st.markAt >= rate.windowMs) {
      if (s.bytesRead - st.markBytes < rate.bytes) {
        st.reason ??= 'too slow (--min-rate)';
        st.markAt = now;
        drainConnection(s); // what it did send is echoed, then FIN
        continue;
      }
      st.markBytes = s.bytesRead;
      st.markAt = now;
    }
  }
}

function onData(this: EchoSocket, chunk: Buffer): void {
  const st = this[STATE];
  if (st.draining) {
    st.discarded += chunk.length;
    return;
  }
  // backpressure: a client that does not read stops us reading from it
  if (!this.write(chunk)) this.pause();
}

/**
 * The read callback of sockets built by acceptWithSharedRead(): `n` bytes at the start of
 * `buf`, the process's shared read buffer or the socket's own (echoRead() copies what must
 * be, without allocating while writes are taken at once). Faults may hold a chunk for later: they always get a copy.
 */
export function onSharedRead(this: Socket, n: number, buf: Buffer): void {
  const s = this as EchoSocket;
  const st = s[STATE];
  if (st === undefined) return; // never served (refused): what it sends is dropped
  if (st.draining) {
    st.discarded += n;
    return;
  }
  if (st.faulty) st.faulty.data(Buffer.from(buf.subarray(0, n)));
  else if (!echoRead(s, n, buf)) s.pause();
}

/** Echo: every byte read is written back, through the connection's faults if it has any. */
export const echoApplication: Application = {
  name: 'echo',
  serve(conn) {
    conn.on('data', (conn as EchoSocket)[STATE].faulty ? onFaultyData : onData);
  },
  sharedRead: onSharedRead,
};

/**
 * The connection's faults changed while it is open: its echo reschedules what waits by the
 * new ones (what a latency that goes was holding is sent at once); an echo that had none
 * starts running through them from the next byte read. What acts once at the start
 * (reset-on-connect, a blackhole from the accept, accept-delay) is not done again here, and
 * an application that applies faults itself (ownFaults) keeps those it was given.
 */
export function setConnectionFaults(socket: Socket, faults: Fault[]): void {
  const s = socket as EchoSocket;
  const st = s[STATE];
  if (!st || s.destroyed) return;
  if (st.faulty) {
    st.faulty.setFaults(faults);
    return;
  }
  if (st.pendingFaults) st.pendingFaults = faults; // a hand-over waits: it takes these
  const app = st.ctx.app ?? echoApplication;
  if (app !== echoApplication || faults.length === 0 || st.draining || s.writableEnded) return;
  if (st.reason === 'fault blackhole' || st.reason === 'fault reset-on-connect') return; // served silent
  if (socket instanceof LightSocket) {
    // faults run on a net.Socket: it takes the handle once what was written has left (reading
    // waits meanwhile), then runs the faults of that moment; a connection closing meanwhile keeps its echo
    if (st.pendingFaults) return;
    st.pendingFaults = faults;
    handOverLight(socket, (to) => {
      const latest = st.pendingFaults ?? faults;
      st.pendingFaults = undefined;
      setConnectionFaults(to, latest);
    });
    return;
  }
  st.faulty = new FaultyEcho(socket, faults, (why) => {
    st.reason ??= why as CloseReason;
  });
  // the shared-read callback looks at st.faulty on each read; a 'data' reader is swapped
  if (s.listeners('data').includes(onData)) {
    s.off('data', onData);
    s.on('data', onFaultyData);
  }
}

function onFaultyData(this: EchoSocket, chunk: Buffer): void {
  const st = this[STATE];
  if (st.draining) {
    st.discarded += chunk.length;
    return;
  }
  st.faulty!.data(chunk);
}

function onDrain(this: EchoSocket): void {
  const st = this[STATE];
  if (st.faulty) st.faulty.drained();
  else if (st.ctx.app?.drain) st.ctx.app.drain(this);
  else if (!st.draining) this.resume();
}

/** With --verbose: what the kernel knows of the connection, before its fd goes. */
function noteTcpInfo(s: EchoSocket): void {
  const st = s[STATE];
  if (st.ctx.tcpInfo || st.ctx.rttAtClose || closedWanted()) st.info = tcpInfo(s) ?? st.info;
}

function onEnd(this: EchoSocket): void {
  // peer sent FIN: everything it sent has been queued back; close our side after it
  const st = this[STATE];
  noteTcpInfo(this);
  st.reason ??= st.draining ? 'server shutdown' : 'client closed';
  if (st.faulty) st.faulty.end();
  else if (st.ctx.app?.end) st.ctx.app.end(this);
  else this.end();
}

function onTimeout(this: EchoSocket): void {
  noteTcpInfo(this);
  this[STATE].reason ??= 'idle timeout';
  this.destroy();
}

function onError(this: EchoSocket, err: Error): void {
  const st = this[STATE];
  const code = errorCode(err);
  if (code === 'ECONNRESET' && st.reason === undefined && !st.faulty && nothingOwed(this)) {
    // every byte read was echoed and handed to the kernel: the RST lost nothing. Load balancer
    // health checks close so (HAProxy: connect, maybe a line and its echo, then SO_LINGER 0),
    // every few hundred ms: not an error, and its close line is a debug line.
    st.reason = 'reset by peer, nothing lost';
    return;
  }
  st.reason ??= code === 'ECONNRESET' ? 'reset by peer' : `error ${code}`;
  st.error = code; // counted in the totals once the connection's record is folded
}

/** Say why the connection ends, for its close line, unless a reason is set already. */
export function noteCloseReason(socket: Socket, why: string): void {
  const st = (socket as EchoSocket)[STATE];
  if (st) st.reason ??= why as CloseReason;
}

/** A connection's bytes so far: read from the client (not a PROXY header) and handed to the kernel. */
export function liveBytes(socket: Socket): { bytesIn: number; bytesOut: number } {
  const s = socket as EchoSocket;
  const st = s[STATE];
  return {
    bytesIn: s.bytesRead - (st?.base ?? 0) - (st?.discarded ?? 0),
    bytesOut: s.bytesWritten - (st?.outBase ?? 0) - s.writableLength,
  };
}

/** Set by the listener on a connection it queued unread: an RST then may have dropped its bytes. */
export const WAITED = Symbol('waited');

/**
 * Whether everything the client sent has been echoed and nothing waits to be written. A
 * connection that waited unread cannot tell: what it sent meanwhile may have met the RST.
 */
function nothingOwed(s: EchoSocket): boolean {
  const st = s[STATE];
  if ((s as Socket & { [WAITED]?: boolean })[WAITED]) return false;
  return s.writableLength === 0 && s.bytesWritten - st.outBase >= s.bytesRead - st.base - st.discarded;
}

function onClose(this: EchoSocket): void {
  const st = this[STATE];
  const { ctx } = st;
  openConnections(-1);
  st.faulty?.dispose();
  // bytesWritten counts what was handed to the socket; subtract what never left it
  const bytesOut = this.bytesWritten - st.outBase - this.writableLength;
  const bytesIn = this.bytesRead - st.base - st.discarded;
  const record: ConnectionRecord = {
    peer: st.peer,
    bytesIn,
    bytesOut,
    discarded: st.discarded,
    ms: Date.now() - st.start,
    reason: st.reason ?? 'client closed',
  };
  // the optional fields in this order (the close line's): set, not spread from objects made
  // for the purpose (this runs for every connection)
  if (st.error) record.error = st.error;
  if (st.info && ctx.tcpInfo) record.tcp = st.info;
  if (st.info) record.rttUs = st.info.rttUs;
  if (st.messages) record.messages = { ...st.messages };
  const level = record.reason.startsWith('error')
    ? 'warn'
    : record.reason === 'reset by peer, nothing lost'
      ? 'debug'
      : 'info';
  // with -q the line is not written: do not build it (this runs for every connection)
  if (logs(ctx.logger, level)) {
    // an error from the table (TLS failures…) says what it means
    const why =
      st.error && st.error !== 'ECONNRESET'
        ? explainError({ code: st.error }, { role: 'server' })
        : undefined;
    const meaning =
      why && why.meaning !== 'unexpected error' ? ` — ${why.meaning}. ${why.hint}`.trimEnd() : '';
    logLine(
      ctx.logger,
      level,
      ctx.logFields ? { ...record, ...ctx.logFields } : record,
      `closed ${record.peer}: in ${bytesIn} B, out ${bytesOut} B, ${record.messages ? `messages in ${record.messages.messagesIn}, out ${record.messages.messagesOut}, ` : ''}${record.ms} ms, ${record.reason}${meaning}${ctx.label ? ` (${ctx.label})` : ''}${record.tcp ? `; TCP_INFO ${formatTcpInfo(record.tcp)}` : ''}`,
    );
  }
  ctx.onClose?.(this, record);
}

/**
 * Shutdown for one connection: stop reading, let what was read be written back, then FIN.
 * "Read" includes what sits in the socket's readable buffer while reading is paused for
 * backpressure: that is echoed too. Bytes that arrive after that are read and dropped
 * (counted as discarded), so the close is a clean FIN rather than an RST that could destroy
 * echo data the client has not read yet.
 */
export function drainConnection(socket: Socket): void {
  const s = socket as EchoSocket;
  const st = s[STATE];
  if (!st || st.draining) return;
  noteTcpInfo(s);
  // read() hands each buffered chunk to onData, which writes it back
  while (s.readableLength > 0 && s.read() !== null) {}
  st.draining = true;
  st.reason ??= 'server shutdown';
  const app = st.ctx.app ?? echoApplication;
  if (st.faulty) st.faulty.end();
  else if (app.shutdown) app.shutdown(socket);
  else socket.end();
  socket.resume();
}

export function forceClose(socket: Socket): void {
  const st = (socket as EchoSocket)[STATE];
  if (st) noteTcpInfo(socket as EchoSocket);
  if (st)
    st.reason = st.reason === 'server shutdown' ? 'forced at shutdown' : (st.reason ?? 'forced at shutdown');
  socket.destroy();
}

// --- light connections given to a net.Socket -----------------------------------------------

/** The net.Socket that takes over a light connection's handle (reading, into the same buffers). */
function socketFor(light: LightSocket): (handle: object) => Socket {
  return (handle) => {
    const socket = new net.Socket({
      handle,
      allowHalfOpen: true,
      readable: true,
      writable: true,
      onread: sharedReadOf(light as unknown as Socket, onSharedRead),
    } as unknown as net.SocketConstructorOpts);
    moveSharedRead(light as unknown as Socket, socket);
    return socket;
  };
}

/** A light connection not served yet: a net.Socket for it now (nothing was written), or undefined. */
function takeOver(light: LightSocket): Socket | undefined {
  let to: Socket | undefined;
  light.handOver(socketFor(light), (s) => {
    to = s;
  });
  return to;
}

/**
 * Give a light connection being served to a net.Socket: its state, counters and listeners
 * move to that one, which `then` gets (reading again); nothing when it closes first.
 */
function handOverLight(light: LightSocket, then: (to: Socket) => void): void {
  const from = light as unknown as EchoSocket;
  light.handOver(socketFor(light), (socket) => {
    const st = from[STATE];
    if (!socket) {
      st.pendingFaults = undefined;
      return;
    }
    const to = socket as EchoSocket;
    to[STATE] = st;
    // the new socket's counters may start from 0 or from the handle's own (bytesRead, Node 20)
    const inShift = to.bytesRead - light.bytesRead;
    st.base += inShift;
    st.markBytes += inShift;
    st.outBase += to.bytesWritten - light.bytesWritten;
    listen(to, st.ctx);
    const w = WATCHED.get(st.ctx);
    if (w?.sockets.delete(from)) watch(to);
    st.ctx.onHandOver?.(from, to);
    then(to);
  });
}
