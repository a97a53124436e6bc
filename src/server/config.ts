// The validated echo-server configuration: what startServer() takes, and what a worker or
// forked child receives from its parent.

import { AccessControl, type Cidr } from '../core/access.js';
import type { Fault } from '../core/faults.js';
import type { Logger } from '../core/log.js';
import type { SocketOptions } from '../core/sockopts.js';
import type { EchoServerOptions } from './tcp-server.js';

export interface ServerConfig {
  host: string;
  port: number;
  /** --unix PATH (or @name) instead of host and port */
  path?: string;
  unixMode?: number;
  ipv6Only?: boolean;
  /** --tls: certificate and key (PEM), read from --cert/--key or made at start */
  tls?: { cert: string; key: string; alpn?: string[] };
  proxyProtocol?: boolean;
  /** --proxy-from: whose PROXY headers are believed (default loopback) */
  proxyFrom?: Cidr[];
  /** --proxy-timeout */
  proxyTimeoutMs?: number;
  handshakeTimeoutMs?: number;
  /** --fault */
  faults?: Fault[];
  /** --instance-name (default host:pid): in every log line and metric */
  instanceName?: string;
  /** --banner: a line sent to each client on connect */
  banner?: string;
  /** --metrics: where /metrics is served */
  metrics?: { host: string; port: number };
  /** --trace [hex], --trace-file */
  trace?: { format: 'text' | 'hex'; file?: string };
  mode: 'evented' | 'iterative' | 'workers' | 'fork';
  udp: boolean;
  workers: number;
  exclusive: boolean;
  /** what each connection is served: an application's name (default `echo`; no flag sets it) */
  app?: string;
  maxChildren: number;
  maxConnections?: number;
  maxConnectionsPerIp?: number;
  allow: Cidr[];
  deny: Cidr[];
  idleTimeoutMs?: number;
  /** --min-rate over --min-rate-window: bytes the client must send per window */
  minRate?: { bytes: number; windowMs: number };
  maxLifetimeMs?: number;
  graceMs: number;
  rateLimit: number;
  rateBurst: number;
  socket: SocketOptions;
  verbose: boolean;
  /** for child processes, which log as their parent does */
  logLevel: 'debug' | 'info' | 'warn';
  logFormat: 'auto' | 'pretty' | 'json';
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
