// The validated echo-server configuration: what startServer() takes, and what a worker or
// forked child receives from its parent.

import type { Cidr } from '../core/access.js';
import type { Fault } from '../core/faults.js';
import type { SocketOptions } from '../core/sockopts.js';
import type { TraceFormat } from '../core/trace.js';
import type { ConnectionLimits } from './handler.js';
import type { WebSocketOptions } from './websocket.js';

/**
 * What a TCP server listens on and how each connection is treated: the same fields in the
 * CLI's validated config (ServerConfig) and in the library's options (EchoServerOptions).
 */
export interface ServedOptions extends ConnectionLimits {
  /** a Unix-domain socket (a path, or `@name`: a Linux abstract name) instead of host and port */
  path?: string;
  /** with `path`: the socket file's permissions, e.g. 0o660 */
  unixMode?: number;
  /** on `::`, IPv6 clients only (IPV6_V6ONLY); by default `::` accepts IPv4 clients too */
  ipv6Only?: boolean;
  /** TLS with this certificate and key (PEM); the echo runs inside it; `alpn`: protocols offered */
  tls?: { cert: string; key: string; alpn?: string[] };
  /** every connection starts with a PROXY protocol v1 or v2 header naming the real client */
  proxyProtocol?: boolean;
  /**
   * with proxyProtocol: the proxies whose headers are believed (default: loopback,
   * 127.0.0.0/8 and ::1); a TCP peer outside them is refused before anything is read
   */
  proxyFrom?: Cidr[];
  /** with proxyProtocol: the header must have come within this (ms; default handshakeTimeoutMs if set, else 3000) */
  proxyTimeoutMs?: number;
  /** a new connection's TLS handshake must be done within this (ms, default 10 000) */
  handshakeTimeoutMs?: number;
  /** a line sent to each client as it connects (after TLS), before any echo: which instance answered */
  banner?: string;
  /** --trace: every chunk, as text (socat -v) or hex (xxd), to stderr or `file` */
  trace?: { format: TraceFormat; file?: string };
  /** misbehave on purpose (--fault); change them later with the handle's setFaults() */
  faults?: Fault[];
  /** what each connection is served, by name: `echo` (the default), `discard` (RFC 863) or `ws` (WebSocket echo) */
  app?: string;
  /** with app `ws`: its path, message limit, compression, subprotocols and origins */
  ws?: WebSocketOptions;
  /** beyond this many open connections, new ones are closed at once (FIN) and counted as refused */
  maxConnections?: number;
  /** at most this many open connections from one address */
  maxConnectionsPerIp?: number;
  /** close a connection after this many ms with nothing read or written */
  idleTimeoutMs?: number;
}

export interface ServerConfig extends ServedOptions {
  host: string;
  port: number;
  /** --instance-name (default host:pid): in every log line and metric */
  instanceName?: string;
  /** --metrics: where /metrics is served */
  metrics?: { host: string; port: number };
  mode: 'evented' | 'iterative' | 'workers' | 'fork';
  udp: boolean;
  workers: number;
  exclusive: boolean;
  maxChildren: number;
  allow: Cidr[];
  deny: Cidr[];
  graceMs: number;
  rateLimit: number;
  rateBurst: number;
  socket: SocketOptions;
  verbose: boolean;
  /** for child processes, which log as their parent does */
  logLevel: 'debug' | 'info' | 'warn';
  logFormat: 'auto' | 'pretty' | 'json';
}
