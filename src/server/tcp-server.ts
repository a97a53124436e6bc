// The TCP listener for the evented and iterative modes: owns the listening socket, the
// connection limit and shutdown; each accepted connection goes to serveEcho() (handler.ts).
// startEchoServer() is the library entry (SPEC §7) and what echo-server runs in one process.

import net, { type AddressInfo, type Socket } from 'node:net';
import { type AccessControl, RateLimitedLog } from '../core/access.js';
import { errorCode, explainError } from '../core/errors.js';
import { DEFAULT_BACKLOG, listenTcp } from '../core/listen.js';
import { type Logger, silentLogger } from '../core/log.js';
import { formatAddress } from '../core/parse.js';
import {
  fdHeadroom,
  formatReport,
  type OptionReport,
  reportOptions,
  type SocketOptions,
} from '../core/sockopts.js';
import {
  drainConnection,
  emptyTotals,
  forceClose,
  type HandlerContext,
  type ServerTotals,
  serveEcho,
} from './handler.js';

export type TcpMode = 'evented' | 'iterative';

export interface EchoServerOptions extends SocketOptions {
  host?: string;
  /** 0 = the kernel picks; read it back from `address.port` */
  port?: number;
  mode?: TcpMode;
  /** beyond this many open connections, new ones are closed at once (FIN) and counted as refused */
  maxConnections?: number;
  /** at most this many open connections from one address */
  maxConnectionsPerIp?: number;
  /** --allow / --deny: peers refused are closed at once */
  access?: AccessControl;
  /** close a connection after this many ms with nothing read or written */
  idleTimeout?: number;
  /** cluster: open an own listening socket (see workers mode) */
  exclusive?: boolean;
  logger?: Logger;
  /** log each option requested vs. what the kernel reports */
  reportOptions?: boolean;
  /** extra fields on every connection log line */
  logFields?: object;
  /** appended to connection log messages (`worker 1234`) */
  label?: string;
}

export interface CloseOptions {
  /** how long in-flight echoes may take to finish before connections are destroyed (ms); default 5000 */
  graceMs?: number;
}

export interface EchoServer {
  readonly address: AddressInfo;
  /** listener options as the kernel reports them */
  readonly options: OptionReport[];
  stats(): ServerTotals;
  /** the connections being served now, as their sockets report them */
  connections(): LiveConnection[];
  /**
   * Stop accepting, let in-flight echoes finish (every byte read so far is written back,
   * then FIN), force after the grace period. Resolves with the totals.
   */
  close(opts?: CloseOptions): Promise<ServerTotals>;
  /** destroy every connection now (a second signal) */
  forceClose(): void;
}

export interface LiveConnection {
  peer: string;
  bytesIn: number;
  bytesOut: number;
  /** bytes read but not yet handed to the kernel (bounded by backpressure) */
  buffered: number;
  /** false while reading is paused because the client does not read its echo */
  reading: boolean;
}

export const DEFAULT_PORT = 7007;
export const DEFAULT_HOST = '127.0.0.1';

export async function startEchoServer(opts: EchoServerOptions = {}): Promise<EchoServer> {
  const logger = opts.logger ?? silentLogger;
  const mode = opts.mode ?? 'evented';
  const host = opts.host ?? DEFAULT_HOST;
  const totals = emptyTotals();
  const sockets = new Set<Socket>();
  const waiting: Socket[] = []; // iterative mode: accepted with reading paused, not yet served
  let current: Socket | undefined;
  let closing = false;
  let onIdle: (() => void) | undefined; // set while close() waits for the last connection

  const ctx: HandlerContext = {
    logger,
    totals,
    idleTimeout: opts.idleTimeout,
    socketOptions: opts,
    reportOptions: opts.reportOptions,
    logFields: opts.logFields,
    label: opts.label,
    onClose(socket) {
      sockets.delete(socket);
      if (sockets.size === 0) onIdle?.();
      if (mode === 'iterative' && socket === current) serveNext();
    },
  };

  const serveNext = () => {
    current = undefined;
    const next = waiting.shift();
    if (!next) return;
    if (next.destroyed) return serveNext();
    current = next;
    sockets.add(next);
    serveEcho(next, ctx);
    next.resume();
  };

  const perIp = new Map<string, number>(); // open connections per address, when limited
  // Without --max-connections, stay inside the fd limit: at EMFILE libuv accepts and drops
  // connections silently, so we refuse (and say so) a little before it gets there.
  const fds = opts.maxConnections === undefined ? fdHeadroom() : undefined;
  const fdCap =
    fds && fds.limit < 1e9
      ? Math.max(1, fds.limit - fds.open - Math.min(64, Math.ceil(fds.limit / 8)))
      : undefined;
  const refusals = new RateLimitedLog(logger);
  // `kind` keys the log rate limit (one line per kind and source per interval); `why` is told
  const refuse = (socket: Socket, kind: string, why: string) => {
    totals.refused++;
    const ip = socket.remoteAddress ?? '?';
    refusals.warn(`${kind}|${ip}`, { peer: ip, why, ...opts.logFields }, `refused ${ip}: ${why}`);
    socket.on('error', () => {});
    socket.destroy(); // nothing was read: a plain FIN
  };

  const server = net.createServer({ allowHalfOpen: true, pauseOnConnect: mode === 'iterative' }, (socket) => {
    const open = sockets.size + waiting.length;
    const ip = socket.remoteAddress ?? '?';
    if (opts.access?.active) {
      const v = opts.access.check(ip);
      if (!v.ok) return refuse(socket, 'access', v.why);
    }
    if (closing) return refuse(socket, 'closing', 'shutting down');
    if (opts.maxConnections !== undefined && open >= opts.maxConnections) {
      return refuse(socket, 'max', `${open} connections open (--max-connections ${opts.maxConnections})`);
    }
    if (fdCap !== undefined && open >= fdCap) {
      return refuse(
        socket,
        'fd-limit',
        `${open} connections open: the file-descriptor limit (${fds!.limit}) is nearly reached; raise ulimit -n`,
      );
    }
    if (opts.maxConnectionsPerIp !== undefined) {
      const n = perIp.get(ip) ?? 0;
      if (n >= opts.maxConnectionsPerIp) {
        return refuse(
          socket,
          'per-ip',
          `${n} connections from this address (--max-connections-per-ip ${opts.maxConnectionsPerIp})`,
        );
      }
      perIp.set(ip, n + 1);
      socket.once('close', () => {
        const left = (perIp.get(ip) ?? 1) - 1;
        if (left > 0) perIp.set(ip, left);
        else perIp.delete(ip);
      });
    }
    if (mode === 'iterative' && current) {
      // the seed's accept loop: later clients wait, unread, until the current one leaves
      waiting.push(socket);
      socket.on('error', () => {});
      socket.once('close', () => {
        const i = waiting.indexOf(socket);
        if (i >= 0) waiting.splice(i, 1);
      });
      return;
    }
    sockets.add(socket);
    if (mode === 'iterative') current = socket;
    serveEcho(socket, ctx);
    if (mode === 'iterative') socket.resume();
  });
  const address = await listenTcp(server, {
    host,
    port: opts.port ?? DEFAULT_PORT,
    backlog: opts.backlog ?? DEFAULT_BACKLOG,
    reuseAddr: opts.reuseAddr,
    reusePort: opts.reusePort,
    exclusive: opts.exclusive,
    recvBuffer: opts.recvBuffer,
    sendBuffer: opts.sendBuffer,
  });
  // registered once listening: a failed listen is reported by listenTcp, not as an accept error
  server.on('error', (err) => {
    // accept() failures (EMFILE, ENFILE…) are per-connection: count, log once per interval, keep
    // listening. libuv does not spin on them: it closes a reserved fd, accepts the pending
    // connection, closes it, and takes the fd back — so that client sees a close, not a hang.
    const code = errorCode(err);
    totals.errors[code] = (totals.errors[code] ?? 0) + 1;
    refusals.warn(`accept|${code}`, { code }, `accept failed: ${explainError(err).line}`);
  });

  const listenerReports = reportOptions(server, {
    reuseAddr: opts.reuseAddr ?? true,
    reusePort: opts.reusePort,
    ...(opts.recvBuffer !== undefined ? { recvBuffer: opts.recvBuffer } : {}),
    ...(opts.sendBuffer !== undefined ? { sendBuffer: opts.sendBuffer } : {}),
  });
  if (opts.reportOptions) {
    for (const r of listenerReports) logger.info({ ...r }, `listening socket: ${formatReport(r)}`);
  }

  let closed: Promise<ServerTotals> | undefined;
  const force = () => {
    for (const s of sockets) forceClose(s);
    for (const s of waiting) s.destroy();
  };

  const server_: EchoServer = {
    address,
    options: listenerReports,
    stats: () => ({ ...totals, errors: { ...totals.errors } }),
    connections: () =>
      [...sockets].map((s) => ({
        peer: formatAddress(s.remoteAddress ?? '?', s.remotePort ?? 0),
        bytesIn: s.bytesRead,
        bytesOut: s.bytesWritten - s.writableLength,
        buffered: s.writableLength,
        reading: !s.isPaused(),
      })),
    forceClose: force,
    close({ graceMs = 5000 }: CloseOptions = {}) {
      if (closed) return closed;
      closing = true;
      closed = (async () => {
        const listenerClosed = new Promise<void>((resolve) => server.close(() => resolve()));
        // clients still waiting in iterative mode were never served: FIN them without echo
        for (const s of waiting.splice(0)) {
          s.end();
          s.resume();
          s.destroySoon();
        }
        for (const s of sockets) drainConnection(s);
        const timer = setTimeout(force, graceMs);
        // the server's own close callback can run before the sockets' 'close' events; wait for those
        const allClosed = new Promise<void>((resolve) => {
          onIdle = resolve;
          if (sockets.size === 0) resolve();
        });
        await Promise.all([listenerClosed, allClosed]);
        clearTimeout(timer);
        return { ...totals, errors: { ...totals.errors } };
      })();
      return closed;
    },
  };
  return server_;
}
