// The per-connection echo handler (RFC 862), shared by every server mode: evented and
// iterative in tcp-server.ts, the workers and the forked children. One handler owns one
// connection; whatever goes wrong with it is logged and counted, never thrown to the listener.
//
// Hot path: the event handlers are shared functions using `this` (no closure per
// connection) and per-chunk work is one write and one flag test. Byte counts come from the
// socket's own counters when it closes.

import type { Socket } from 'node:net';
import { errorCode } from '../core/errors.js';
import type { Logger } from '../core/log.js';
import { formatAddress } from '../core/parse.js';
import { applySocketOptions, formatReport, type SocketOptions } from '../core/sockopts.js';

export type CloseReason =
  | 'client closed'
  | 'reset by peer'
  | 'idle timeout'
  | 'server shutdown'
  | 'forced at shutdown'
  | `error ${string}`;

/** What one connection did, reported when it closes. */
export interface ConnectionRecord {
  peer: string;
  bytesIn: number;
  bytesOut: number;
  /** bytes that arrived after shutdown began, read and dropped (the client had its FIN already) */
  discarded: number;
  ms: number;
  reason: CloseReason;
}

export interface ServerTotals {
  connections: number;
  active: number;
  refused: number;
  bytesIn: number;
  bytesOut: number;
  errors: Record<string, number>;
}

export function emptyTotals(): ServerTotals {
  return { connections: 0, active: 0, refused: 0, bytesIn: 0, bytesOut: 0, errors: {} };
}

export function addTotals(into: ServerTotals, t: ServerTotals): void {
  into.connections += t.connections;
  into.refused += t.refused;
  into.bytesIn += t.bytesIn;
  into.bytesOut += t.bytesOut;
  for (const [k, v] of Object.entries(t.errors)) into.errors[k] = (into.errors[k] ?? 0) + v;
}

/** What the handler needs from whoever accepted the connection. */
export interface HandlerContext {
  logger: Logger;
  totals: ServerTotals;
  idleTimeout?: number;
  socketOptions?: SocketOptions;
  /** print the first accepted socket's option read-back (--verbose) */
  reportOptions?: boolean;
  /** extra fields for each connection log line (worker pid…) */
  logFields?: object;
  /** appended to each connection log message, e.g. `worker 1234` */
  label?: string;
  onClose?: (socket: Socket, record: ConnectionRecord) => void;
}

interface ConnState {
  ctx: HandlerContext;
  peer: string;
  start: number;
  reason: CloseReason | undefined;
  draining: boolean;
  discarded: number;
}

const STATE = Symbol('echo-state');
type EchoSocket = Socket & { [STATE]: ConnState };

const connOptionKeys = [
  'keepAlive',
  'keepAliveInterval',
  'keepAliveCount',
  'userTimeout',
  'noDelay',
  'sendBuffer',
  'recvBuffer',
  'linger',
] as const;

export function hasConnectionOptions(o: SocketOptions | undefined): boolean {
  return !!o && connOptionKeys.some((k) => o[k] !== undefined);
}

/** Start echoing on an accepted socket. The socket may be paused (pauseOnConnect); resume it to serve. */
export function serveEcho(socket: Socket, ctx: HandlerContext): void {
  const s = socket as EchoSocket;
  s[STATE] = {
    ctx,
    peer: formatAddress(socket.remoteAddress ?? '?', socket.remotePort ?? 0),
    start: Date.now(),
    reason: undefined,
    draining: false,
    discarded: 0,
  };
  ctx.totals.connections++;
  ctx.totals.active++;
  socket.on('error', onError);
  socket.on('close', onClose);
  if (hasConnectionOptions(ctx.socketOptions)) {
    try {
      const reports = applySocketOptions(socket, ctx.socketOptions!, { report: ctx.reportOptions === true });
      if (ctx.reportOptions) {
        ctx.reportOptions = false;
        for (const r of reports) ctx.logger.info({ ...r }, `accepted socket: ${formatReport(r)}`);
      }
    } catch (err) {
      // an option the kernel refuses is a per-connection failure: log it, keep serving
      ctx.logger.warn({ peer: s[STATE].peer, err: (err as Error).message }, 'socket option failed');
    }
  }
  if (ctx.idleTimeout) {
    socket.setTimeout(ctx.idleTimeout);
    socket.on('timeout', onTimeout);
  }
  socket.on('data', onData);
  socket.on('drain', onDrain);
  socket.on('end', onEnd);
  ctx.logger.debug(
    { peer: s[STATE].peer, ...ctx.logFields },
    `connection from ${s[STATE].peer}${ctx.label ? ` (${ctx.label})` : ''}`,
  );
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

function onDrain(this: EchoSocket): void {
  if (!this[STATE].draining) this.resume();
}

function onEnd(this: EchoSocket): void {
  // peer sent FIN: everything it sent has been queued back; close our side after it
  const st = this[STATE];
  st.reason ??= st.draining ? 'server shutdown' : 'client closed';
  this.end();
}

function onTimeout(this: EchoSocket): void {
  this[STATE].reason ??= 'idle timeout';
  this.destroy();
}

function onError(this: EchoSocket, err: Error): void {
  const st = this[STATE];
  const code = errorCode(err);
  st.reason ??= code === 'ECONNRESET' ? 'reset by peer' : `error ${code}`;
  st.ctx.totals.errors[code] = (st.ctx.totals.errors[code] ?? 0) + 1;
}

function onClose(this: EchoSocket): void {
  const st = this[STATE];
  const { ctx } = st;
  ctx.totals.active--;
  // bytesWritten counts what was handed to the socket; subtract what never left it
  const bytesOut = this.bytesWritten - this.writableLength;
  const bytesIn = this.bytesRead - st.discarded;
  ctx.totals.bytesIn += bytesIn;
  ctx.totals.bytesOut += bytesOut;
  const record: ConnectionRecord = {
    peer: st.peer,
    bytesIn,
    bytesOut,
    discarded: st.discarded,
    ms: Date.now() - st.start,
    reason: st.reason ?? 'client closed',
  };
  const level = record.reason.startsWith('error') ? 'warn' : 'info';
  ctx.logger[level](
    ctx.logFields ? { ...record, ...ctx.logFields } : record,
    `closed ${record.peer}: in ${bytesIn} B, out ${bytesOut} B, ${record.ms} ms, ${record.reason}${ctx.label ? ` (${ctx.label})` : ''}`,
  );
  ctx.onClose?.(this, record);
}

/**
 * Shutdown for one connection: stop reading, let what was read be written back, then FIN.
 * Bytes that arrive after that are read and dropped (counted as discarded), so the close is
 * a clean FIN rather than an RST that could destroy echo data the client has not read yet.
 */
export function drainConnection(socket: Socket): void {
  const s = socket as EchoSocket;
  const st = s[STATE];
  if (!st || st.draining) return;
  st.draining = true;
  st.reason ??= 'server shutdown';
  socket.end();
  socket.resume();
}

export function forceClose(socket: Socket): void {
  const st = (socket as EchoSocket)[STATE];
  if (st)
    st.reason = st.reason === 'server shutdown' ? 'forced at shutdown' : (st.reason ?? 'forced at shutdown');
  socket.destroy();
}
