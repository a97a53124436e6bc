// startEchoServer(): the library's TCP echo server in this process (evented or iterative),
// and what each process of the multi-process modes runs. It is the listener (listener.ts)
// with the serve-here backend (here.ts).

import { AccessControl, parseCidr } from '../core/access.js';
import { FaultSet } from '../core/faults.js';
import { DEFAULT_BACKLOG, type ListenOptions } from '../core/listen.js';
import { type Logger, silentLogger } from '../core/log.js';
import type { ConnectionRecord } from '../core/records.js';
import type { SocketOptions } from '../core/sockopts.js';
import { serverSecureContext } from '../core/tls.js';
import { createTracer, type Tracer, traceSink } from '../core/trace.js';
import { type Application, discardApplication } from './application.js';
import type { ServedOptions, ServerConfig } from './config.js';
import { echoApplication, type HandlerContext } from './handler.js';
import { hereBackend } from './here.js';
import { type ListenerOptions, type ServerHandle, startListener } from './listener.js';
import { websocketApplication } from './websocket.js';

export type { CloseOptions, LiveConnection } from './listener.js';

export type TcpMode = 'evented' | 'iterative';

export interface EchoServerOptions extends ServedOptions {
  host?: string;
  /** 0 = the kernel picks; read it back from `address.port` */
  port?: number;
  /** evented: every client at once; iterative: one at a time, later ones wait unread */
  mode?: TcpMode;
  /** --allow / --deny: peers refused are closed at once */
  access?: AccessControl;
  /** options of the listening socket (reuseAddr, reusePort, backlog, buffers) and of every accepted one */
  socket?: SocketOptions;
  logger?: Logger;
  /** log each option requested vs. what the kernel reports */
  logOptions?: boolean;
  /** extra fields on every connection log line */
  logFields?: object;
  /** appended to connection log messages (`worker 1234`) */
  label?: string;
  /** told of every connection once it has closed */
  onConnectionClosed?: (record: ConnectionRecord) => void;
  /** what each connection is served, as an object: in this process only (evented, iterative); overrides `app` */
  application?: Application;
}

/** A running echo server (the same handle every mode returns). */
export type EchoServer = ServerHandle;

export const DEFAULT_PORT = 7007;
export const DEFAULT_HOST = '127.0.0.1';

export const DEFAULT_HANDSHAKE_TIMEOUT_MS = 10_000;
/** a proxy sends its header with the connection's first bytes: seconds are plenty */
export const DEFAULT_PROXY_TIMEOUT_MS = 3_000;
/** whose PROXY headers are believed when proxyFrom is not given */
export const DEFAULT_PROXY_FROM: readonly string[] = ['127.0.0.0/8', '::1/128'];

/** The listener's PROXY protocol settings for these options (undefined without proxyProtocol). */
export function proxyOptionsOf(
  opts: EchoServerOptions,
): { timeoutMs: number; from: AccessControl } | undefined {
  if (!opts.proxyProtocol) return undefined;
  const from = opts.proxyFrom?.length
    ? opts.proxyFrom
    : DEFAULT_PROXY_FROM.map((c) => parseCidr('--proxy-from', c));
  return {
    timeoutMs: opts.proxyTimeoutMs ?? opts.handshakeTimeoutMs ?? DEFAULT_PROXY_TIMEOUT_MS,
    from: new AccessControl(from),
  };
}

/** Where and how the listening socket is opened. */
export function listenOptions(opts: EchoServerOptions): ListenOptions {
  const sock = opts.socket ?? {};
  return {
    host: opts.host ?? DEFAULT_HOST,
    port: opts.port ?? DEFAULT_PORT,
    path: opts.path,
    unixMode: opts.unixMode,
    ipv6Only: opts.ipv6Only,
    backlog: sock.backlog ?? DEFAULT_BACKLOG,
    reuseAddr: sock.reuseAddr,
    reusePort: sock.reusePort,
    recvBuffer: sock.recvBuffer,
    sendBuffer: sock.sendBuffer,
  };
}

/** The tracer of a process (one sink per process, shared by its connections). */
export function tracerOf(opts: EchoServerOptions): Tracer | undefined {
  if (!opts.trace) return undefined;
  const where = opts.trace.file ?? 'stderr';
  const lost = (err: NodeJS.ErrnoException) =>
    opts.logger?.warn(
      { trace: where, code: err.code },
      `trace to ${where} failed (${err.code}): the trace is dropped from now on; echoing goes on`,
    );
  return createTracer(opts.trace.format, traceSink(opts.trace.file, lost));
}

/** The TLS part of a handler's context, made once per process. */
export function tlsContextOf(opts: EchoServerOptions) {
  return opts.tls
    ? {
        context: serverSecureContext(opts.tls),
        handshakeTimeoutMs: opts.handshakeTimeoutMs ?? DEFAULT_HANDSHAKE_TIMEOUT_MS,
        alpn: opts.tls.alpn,
      }
    : undefined;
}

/** The applications a config can name; every process (children too) knows the same ones. */
const APPLICATIONS: ReadonlyMap<string, Application> = new Map(
  [echoApplication, discardApplication].map((a) => [a.name, a]),
);

/**
 * The application these options select (default echo); an unknown name is a TypeError.
 * `ws` (WebSocket echo) is made with its options, one per process.
 */
export function applicationOf(opts: Pick<ServedOptions, 'app' | 'ws'>): Application {
  return opts.app === 'ws' ? websocketApplication(opts.ws) : applicationNamed(opts.app);
}

/** The application called `name` (default echo); an unknown name is a TypeError. */
export function applicationNamed(name = 'echo'): Application {
  const app = APPLICATIONS.get(name);
  if (!app)
    throw new TypeError(`unknown application "${name}" (one of: ${[...APPLICATIONS.keys()].join(', ')})`);
  return app;
}

/**
 * The handler's context for these options: the one translation of a config into what serves
 * a connection, used by this process and by every child process (child-main.ts).
 */
export function handlerContextOf(opts: EchoServerOptions): Omit<HandlerContext, 'onClose'> {
  return {
    logger: opts.logger ?? silentLogger,
    app: opts.application ?? applicationOf(opts),
    idleTimeoutMs: opts.idleTimeoutMs,
    minRate: opts.minRate,
    maxLifetimeMs: opts.maxLifetimeMs,
    socketOptions: opts.socket ?? {},
    logOptions: opts.logOptions,
    logFields: opts.logFields,
    label: opts.label,
    onClosed: opts.onConnectionClosed,
    tls: tlsContextOf(opts),
    tracer: tracerOf(opts),
    banner: opts.banner !== undefined ? Buffer.from(opts.banner) : undefined,
    tcpInfo: opts.logOptions === true,
  };
}

/**
 * The listener's options for these options, whatever backend serves: where to listen, the
 * PROXY header, TLS's first bytes, the faults and the admission limits.
 */
export function listenerOptionsOf(
  opts: EchoServerOptions,
): Omit<ListenerOptions, 'backend' | 'concurrency' | 'waitReason'> {
  return {
    listen: listenOptions(opts),
    proxyProtocol: proxyOptionsOf(opts),
    tls: opts.tls ? { timeoutMs: opts.handshakeTimeoutMs ?? DEFAULT_HANDSHAKE_TIMEOUT_MS } : undefined,
    faults: new FaultSet(opts.faults),
    admission: {
      access: opts.access,
      maxConnections: opts.maxConnections,
      maxConnectionsPerIp: opts.maxConnectionsPerIp,
    },
    logger: opts.logger ?? silentLogger,
    logFields: opts.logFields,
    logOptions: opts.logOptions,
  };
}

export async function startEchoServer(opts: EchoServerOptions = {}): Promise<EchoServer> {
  const iterative = opts.mode === 'iterative';
  return startListener({
    ...listenerOptionsOf(opts),
    // iterative: later clients are accepted with reading paused and wait their turn
    backend: hereBackend(handlerContextOf(opts), { pauseOnConnect: iterative }),
    concurrency: iterative ? 1 : undefined,
    waitReason: 'iterative mode serves one client at a time',
  });
}

/** The options of startEchoServer() that a validated config sets, for every process that serves. */
export function echoServerOptions(cfg: ServerConfig, logger: Logger): EchoServerOptions {
  return {
    socket: cfg.socket,
    host: cfg.host,
    port: cfg.port,
    path: cfg.path,
    unixMode: cfg.unixMode,
    ipv6Only: cfg.ipv6Only,
    tls: cfg.tls,
    proxyProtocol: cfg.proxyProtocol,
    proxyFrom: cfg.proxyFrom,
    proxyTimeoutMs: cfg.proxyTimeoutMs,
    handshakeTimeoutMs: cfg.handshakeTimeoutMs,
    faults: cfg.faults,
    trace: cfg.trace,
    banner: cfg.banner,
    mode: cfg.mode === 'iterative' ? 'iterative' : 'evented',
    ...(cfg.app !== undefined ? { app: cfg.app } : {}),
    ...(cfg.ws ? { ws: cfg.ws } : {}),
    maxConnections: cfg.maxConnections,
    maxConnectionsPerIp: cfg.maxConnectionsPerIp,
    access: new AccessControl(cfg.allow, cfg.deny),
    idleTimeoutMs: cfg.idleTimeoutMs,
    minRate: cfg.minRate,
    maxLifetimeMs: cfg.maxLifetimeMs,
    logger,
    logOptions: cfg.verbose,
  };
}
