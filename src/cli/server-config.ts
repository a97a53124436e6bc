// echo-server's flags resolved into a ServerConfig: every value parsed and every combination
// checked up front, so bad input exits 2 naming the flag before any socket is opened.

import { availableParallelism, hostname } from 'node:os';
import { parseFault, TCP_FAULTS, UDP_FAULTS } from '../core/faults.js';
import { parseDuration, parseHost, parseInteger, parsePort, parseSize, UsageError } from '../core/parse.js';
import type { ServerConfig } from '../server/config.js';
import { DEFAULT_HOST, DEFAULT_PORT } from '../server/tcp-server.js';
import { checkRedirects } from './common.js';
import {
  conflict,
  hostForFamily,
  listenArgs,
  resolveAccess,
  resolveFamily,
  resolveSocketOptions,
  resolveTrace,
} from './flag-groups.js';
import type { ServerFlags } from './server-flags.js';
import { checkAddressRulesOnUnix, resolveServerTransport } from './transport.js';
import { resolveWs } from './ws-flags.js';

/** Flags that mean something for TCP only, with how each shows in the resolved config. */
const TCP_ONLY: [string, (f: ServerFlags, c: ServerConfig) => boolean][] = [
  ['--max-connections', (f) => f.maxConnections !== undefined],
  ['--max-connections-per-ip', (f) => f.maxConnectionsPerIp !== undefined],
  ['--idle-timeout', (f) => f.idleTimeout !== undefined],
  ['--min-rate', (f) => f.minRate !== undefined],
  ['--max-lifetime', (f) => f.maxLifetime !== undefined],
  ['--grace', (f) => f.grace !== undefined],
  ['--backlog', (_f, c) => c.socket.backlog !== undefined],
  ['--keepalive', (_f, c) => c.socket.keepAlive !== undefined],
  ['--user-timeout', (_f, c) => c.socket.userTimeoutMs !== undefined],
  ['--no-delay', (_f, c) => c.socket.noDelay !== undefined],
  ['--linger', (_f, c) => c.socket.lingerMs !== undefined],
];

/** Validate every flag up front; throws UsageError naming the flag. `args`: the positional ones. */
export function resolveServerConfig(f: ServerFlags, args: (string | undefined)[] = []): ServerConfig {
  checkRedirects(f, [
    ['m', '-m', (v) => `is echo-client's --message; for the server's mode type --mode ${v}`],
    [
      'w',
      '-w',
      (v) =>
        `is echo-client's timeout (nc -w does nothing with -l); to close idle connections type --idle-timeout ${/^\d+(\.\d+)?$/.test(v) ? `${v}s` : v}`,
    ],
  ]);
  const given = listenArgs(f, args[0], args[1]);
  if (f.unix !== undefined && (f[4] || f[6])) throw conflict(f[4] ? '-4' : '-6', '--unix');
  given.host = hostForFamily(resolveFamily(f), given.host, given.hostFlag, { names: false });
  const host = parseHost(given.hostFlag, given.host ?? DEFAULT_HOST);
  const port = parsePort('--port', given.port ?? String(DEFAULT_PORT));
  const mode = (f.mode ?? 'evented') as ServerConfig['mode'];
  const sock = resolveSocketOptions(f);
  const transport = resolveServerTransport(f, {
    host,
    hostGiven: f.host !== undefined || args[1] !== undefined,
    portGiven: given.port !== undefined,
    udp: f.udp === true,
    socket: sock,
  });
  checkAddressRulesOnUnix(transport, f);
  if (transport.path !== undefined && f.exclusive) throw conflict('--exclusive', '--unix');
  if (f.workers !== undefined && mode !== 'workers')
    throw new UsageError('--workers', f.workers, 'needs --mode workers');
  if (f.maxChildren !== undefined && mode !== 'fork')
    throw new UsageError('--max-children', f.maxChildren, 'needs --mode fork');
  if (f.exclusive && mode !== 'workers')
    throw new UsageError('--exclusive', undefined, 'needs --mode workers');
  if (f.udp && mode !== 'evented') throw conflict('--udp', `--mode ${mode}`);
  if (f.minRateWindow !== undefined && f.minRate === undefined)
    throw new UsageError('--min-rate-window', f.minRateWindow, 'needs --min-rate');
  if (!f.udp) {
    if (f.rateLimit !== undefined) throw new UsageError('--rate-limit', f.rateLimit, 'needs --udp');
    if (f.rateBurst !== undefined) throw new UsageError('--rate-burst', f.rateBurst, 'needs --udp');
  }
  if (f.exclusive) {
    // no process sees every connection when each worker accepts on its own socket
    for (const flag of ['--max-connections', '--max-connections-per-ip'] as const) {
      if ((flag === '--max-connections' ? f.maxConnections : f.maxConnectionsPerIp) !== undefined) {
        throw new UsageError(
          flag,
          undefined,
          'cannot be used with --exclusive: each worker accepts on its own socket, so no process could hold the limit for all of them (drop --exclusive: the primary then accepts and the limit is global)',
        );
      }
    }
  }
  const faults = (f.fault ?? []).map((spec) => parseFault(spec));
  const udp = f.udp === true;
  for (const x of faults) {
    const allowed = udp ? UDP_FAULTS : TCP_FAULTS;
    if (!TCP_FAULTS.includes(x.kind) && !UDP_FAULTS.includes(x.kind))
      throw new UsageError(
        `--fault ${x.kind}`,
        undefined,
        'is a fault of echo-proxy (in front of another service), not of echo-server',
      );
    if (x.kind === 'reset-on-connect' && x.delayMs !== undefined)
      throw new UsageError(
        '--fault reset-on-connect',
        undefined,
        "after= is echo-proxy's: echo-server resets at once",
      );
    if (!allowed.includes(x.kind))
      throw udp
        ? conflict(`--fault ${x.kind}`, '--udp (it is about a TCP connection)')
        : new UsageError(`--fault ${x.kind}`, undefined, 'needs --udp (it is about datagrams)');
  }
  if (faults.some((x) => x.kind === 'accept-delay')) {
    if (transport.path !== undefined) throw conflict('--fault accept-delay', '--unix');
    if (process.platform !== 'linux')
      throw new UsageError(
        '--fault accept-delay',
        undefined,
        'needs Linux (accept4 on a socket Node does not watch)',
      );
  }
  const wsPart = resolveWs(f, faults);
  const trace = resolveTrace(f);
  const instanceName = f.instanceName ?? `${hostname()}:${process.pid}`;
  if (!/^[\x21-\x7e]{1,128}$/.test(instanceName))
    throw new UsageError('--instance-name', instanceName, 'is 1–128 printable characters without spaces');
  if (f.banner !== undefined && f.udp) throw conflict('--banner', '--udp');
  if (typeof f.banner === 'string' && /[\r\n]/.test(f.banner))
    throw new UsageError('--banner', f.banner, 'is one line (the server adds the newline)');
  const metrics = f.metrics !== undefined ? parseMetricsAddress(f.metrics) : undefined;
  const cfg: ServerConfig = {
    host,
    port,
    ...(faults.length ? { faults } : {}),
    ...wsPart,
    ...(trace ? { trace } : {}),
    ...(metrics ? { metrics } : {}),
    instanceName,
    ...(f.banner !== undefined
      ? { banner: `${f.banner === true ? `echo-server ${instanceName}` : f.banner}\n` }
      : {}),
    ...(transport.path !== undefined ? { path: transport.path } : {}),
    ...(transport.unixMode !== undefined ? { unixMode: transport.unixMode } : {}),
    ...(transport.ipv6Only ? { ipv6Only: true } : {}),
    ...(transport.tls
      ? {
          tls: {
            cert: transport.tls.cert,
            key: transport.tls.key,
            ...(transport.alpn ? { alpn: transport.alpn } : {}),
          },
        }
      : {}),
    ...(transport.proxyProtocol ? { proxyProtocol: true } : {}),
    ...(transport.proxyFrom ? { proxyFrom: transport.proxyFrom } : {}),
    ...(transport.proxyTimeoutMs !== undefined ? { proxyTimeoutMs: transport.proxyTimeoutMs } : {}),
    ...(transport.handshakeTimeoutMs !== undefined
      ? { handshakeTimeoutMs: transport.handshakeTimeoutMs }
      : {}),
    mode,
    udp: f.udp === true,
    workers: f.workers !== undefined ? parseInteger('--workers', f.workers, 1, 256) : availableParallelism(),
    exclusive: f.exclusive === true,
    maxChildren: f.maxChildren !== undefined ? parseInteger('--max-children', f.maxChildren, 1, 10000) : 64,
    maxConnections:
      f.maxConnections !== undefined
        ? parseInteger('--max-connections', f.maxConnections, 1, 10_000_000)
        : undefined,
    maxConnectionsPerIp:
      f.maxConnectionsPerIp !== undefined
        ? parseInteger('--max-connections-per-ip', f.maxConnectionsPerIp, 1, 10_000_000)
        : undefined,
    ...resolveAccess(f),
    idleTimeoutMs:
      f.idleTimeout !== undefined
        ? parseDuration('--idle-timeout', f.idleTimeout, 1, 2_147_483_647)
        : undefined,
    ...(f.minRate !== undefined ? { minRate: resolveMinRate(f.minRate, f.minRateWindow) } : {}),
    maxLifetimeMs:
      f.maxLifetime !== undefined
        ? parseDuration('--max-lifetime', f.maxLifetime, 1, 2_147_483_647)
        : undefined,
    graceMs: parseDuration('--grace', f.grace ?? '5s', 0, 3_600_000),
    rateLimit: parseInteger('--rate-limit', f.rateLimit ?? '1000', 0, 10_000_000),
    rateBurst: parseInteger('--rate-burst', f.rateBurst ?? '200', 1, 10_000_000),
    socket: sock,
    verbose: f.verbose === true,
    logLevel: f.verbose ? 'debug' : f.quiet ? 'warn' : 'info',
    logFormat: (f.logFormat ?? 'auto') as ServerConfig['logFormat'],
  };
  if (cfg.udp) {
    for (const [flag, given] of TCP_ONLY) if (given(f, cfg)) throw conflict(flag, '--udp');
  }
  return cfg;
}

/** `--metrics 9100`, `--metrics 127.0.0.1:9100`, `--metrics [::1]:9100` */
function parseMetricsAddress(raw: string): { host: string; port: number } {
  const v6 = /^\[([^\]]+)\]:(\d+)$/.exec(raw);
  const v4 = /^([^:\s]+):(\d+)$/.exec(raw);
  const [host, port] = v6 ? [v6[1]!, v6[2]!] : v4 ? [v4[1]!, v4[2]!] : [DEFAULT_HOST, raw];
  return { host: parseHost('--metrics', host), port: parsePort('--metrics', port) };
}

function resolveMinRate(rate: string, window = '10s'): { bytes: number; windowMs: number } {
  const perSecond = parseSize('--min-rate', rate, 1, 1024 ** 3);
  const windowMs = parseDuration('--min-rate-window', window, 100, 3_600_000);
  return { bytes: Math.max(1, Math.round((perSecond * windowMs) / 1000)), windowMs };
}
