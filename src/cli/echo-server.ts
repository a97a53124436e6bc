// echo-server: flags → a validated config → one of the server modes. The only code that
// touches argv, signals and the exit code for the server.

import { availableParallelism, hostname } from 'node:os';
import type { Command } from 'commander';
import { Option } from 'commander';
import { formatFault, parseFault, TCP_FAULTS, UDP_FAULTS } from '../core/faults.js';
import {
  formatAddress,
  parseDuration,
  parseHost,
  parseInteger,
  parsePort,
  parseSize,
  plural,
  UsageError,
} from '../core/parse.js';
import type { ServerTotals } from '../core/records.js';
import { describeCertificate, selfSignedTls } from '../core/tls.js';
import type { ServerConfig } from '../server/config.js';
import { listeningLine, startServer } from '../server/index.js';
import type { ServerHandle } from '../server/listener.js';
import { type MetricsServer, startMetrics } from '../server/metrics.js';
import { DEFAULT_HOST, DEFAULT_PORT, DEFAULT_PROXY_FROM } from '../server/tcp-server.js';
import {
  addListenerFlags,
  addTraceFlags,
  checkLogFlags,
  checkRedirects,
  conflict,
  type FamilyFlags,
  hostForFamily,
  type LogFlags,
  listenArgs,
  loggerFromFlags,
  newProgram,
  normalizeTraceArg,
  onSignals,
  redirectOption,
  resolveAccess,
  resolveFamily,
  resolveSocketOptions,
  resolveTrace,
  runCli,
  type SocketOptionFlags,
  type TraceFlags,
  warnIfReachable,
} from './common.js';
import {
  addServerTransportFlags,
  checkAddressRulesOnUnix,
  parseAlpn,
  resolveServerTransport,
  type ServerTransportFlags,
} from './transport.js';

export function buildServerProgram(): Command {
  const cmd = newProgram('echo-server', 'TCP (RFC 862) and UDP echo server on real sockets')
    .argument('[addr]', 'PORT to listen on (as nc -l PORT), or HOST followed by PORT (as nc -l HOST PORT)')
    .argument('[port]', 'after HOST: the port')
    .option(
      '-H, --host <addr>',
      `address to listen on (default ${DEFAULT_HOST}; 0.0.0.0 or :: opens it to the network, :: to both IPv4 and IPv6)`,
    )
    .option(
      '-p, --port <port>',
      `port to listen on (default ${DEFAULT_PORT}); 0 picks a free one and prints it`,
    )
    .option('-4', 'IPv4: listen on 127.0.0.1 by default; an IPv6 --host is refused')
    .option('-6', 'IPv6: listen on ::1 by default; an IPv4 --host is refused')
    .option('-l, --listen', 'accepted as in nc -l (echo-server always listens)')
    .option(
      '-k, --keep-open',
      'accepted as in nc -k (echo-server always keeps listening when a client leaves)',
    )
    .addOption(redirectOption('-m <value>'))
    .addOption(redirectOption('-w <seconds>'))
    .addOption(
      new Option('--mode <mode>', 'concurrency model')
        .choices(['evented', 'iterative', 'workers', 'fork'])
        .default('evented'),
    )
    .option('-u, --udp', 'UDP echo instead of TCP')
    .option('--workers <n>', 'workers mode: number of worker processes (default: CPU count)')
    .option(
      '--exclusive',
      'workers mode: each worker opens its own listening socket (needs --reuse-port to share)',
    )
    .option('--max-children <n>', 'fork mode: at most this many children; later clients wait')
    .option('--max-connections <n>', 'close new connections at once beyond this many open ones')
    .option(
      '--max-connections-per-ip <n>',
      'close new connections from an address beyond this many open ones',
    )
    .option('--idle-timeout <dur>', 'close a connection idle this long (e.g. 30s)')
    .option(
      '--min-rate <bytes>',
      'close a connection whose client sends less than this per second (e.g. 100 or 1k), judged per --min-rate-window: stops a slow drip',
    )
    .option('--min-rate-window <dur>', 'with --min-rate: the window the rate is judged over (default 10s)')
    .option('--max-lifetime <dur>', 'close every connection this long after it was accepted (e.g. 1h)')
    .option(
      '--grace <dur>',
      'TCP: on SIGINT/SIGTERM, how long in-flight echoes may take before connections are cut (default 5s)',
    )
    .option(
      '--rate-limit <n>',
      'UDP: datagrams per second allowed per source (token bucket; 0 = no limit; default 1000)',
    )
    .option('--rate-burst <n>', 'UDP: burst size per source (default 200)')
    .option('--instance-name <name>', 'name of this instance in every log line and metric (default HOST:PID)')
    .option(
      '--banner [text]',
      'send a line to each client on connect, before any echo (default: the instance name); off by default: RFC 862 echo stays byte-exact',
    )
    .option(
      '--metrics <[host:]port>',
      'serve Prometheus metrics at http://HOST:PORT/metrics (host 127.0.0.1 unless given; port 0 picks one and prints it)',
    )
    .option(
      '--fault <spec>',
      'misbehave on purpose (repeatable): latency=DUR[,jitter=DUR] bandwidth=RATE slice=SIZE[,delay=DUR] stall-after=SIZE close-after=SIZE[,how=fin|rst] reset-on-connect blackhole corrupt=P accept-delay=DUR; UDP: latency corrupt drop=P duplicate=P reorder[=P]; each may end in ,p=FRACTION or ,every=N',
      (v: string, prev: string[] = []) => [...prev, v],
    );
  addServerTransportFlags(cmd);
  addTraceFlags(cmd);
  addListenerFlags(cmd);
  cmd.addHelpText(
    'after',
    `
Examples:
  echo-server                          listen on 127.0.0.1:7007, evented
  echo-server --port 0                 pick a free port and print it
  echo-server -l 7007                  as nc -l 7007 (also: echo-server 7007, -l -p 7007, -k)
  echo-server -6 7007                  on [::1]:7007
  echo-server --mode iterative         one client at a time, as a plain accept() loop
  echo-server --mode workers --workers 4
  echo-server --mode fork --max-children 50
  echo-server --udp --port 7007
  echo-server --tls                    TLS with a self-signed certificate; its fingerprint is printed
  echo-server --tls --cert c.pem --key k.pem --mode workers
  echo-server --unix /tmp/echo.sock --unix-mode 0660
  echo-server --proxy-protocol         behind HAProxy (send-proxy / send-proxy-v2)
  echo-server --host :: --ipv6-only    IPv6 clients only
  echo-server --fault latency=50ms,jitter=10ms --fault close-after=64k,how=rst,p=0.05
  echo-server --no-reuse-addr --verbose   show what the kernel reports for each option
  echo-server --host 0.0.0.0 --allow 10.0.0.0/8 --max-connections-per-ip 20`,
  );
  return cmd;
}

export interface ServerFlags
  extends SocketOptionFlags,
    LogFlags,
    ServerTransportFlags,
    TraceFlags,
    FamilyFlags {
  listen?: boolean;
  keepOpen?: boolean;
  /** -m: echo-client's --message; refused here, naming --mode */
  m?: string;
  /** -w: nc's client timeout; refused here, naming --idle-timeout */
  w?: string;
  host?: string;
  port?: string;
  mode: string;
  udp?: boolean;
  workers?: string;
  exclusive?: boolean;
  maxChildren?: string;
  maxConnections?: string;
  maxConnectionsPerIp?: string;
  allow?: string[];
  deny?: string[];
  idleTimeout?: string;
  minRate?: string;
  minRateWindow?: string;
  maxLifetime?: string;
  grace?: string;
  rateLimit?: string;
  rateBurst?: string;
  fault?: string[];
  metrics?: string;
  instanceName?: string;
  banner?: boolean | string;
}

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

/** Totals as one human line. */
export function formatTotals(t: ServerTotals, udp = false): string {
  const list = (r: Record<string, number>) =>
    Object.entries(r)
      .map(([k, v]) => `${k} ${v}`)
      .join(', ');
  const errs = list(t.errors);
  const by = list(t.refusedBy);
  const what = udp
    ? `${plural(t.connections, 'source')}, ${t.refused} dropped`
    : `${plural(t.connections, 'connection')}, ${t.refused} refused`;
  return `totals: ${what}${by ? ` (${by})` : ''}, in ${t.bytesIn} B, out ${t.bytesOut} B${errs ? `, errors: ${errs}` : ''}`;
}

export async function runServerCli(argv: string[]): Promise<void> {
  await runCli('echo-server', async () => {
    const program = buildServerProgram();
    program.parse(normalizeTraceArg(argv), { from: 'user' });
    checkLogFlags(program.opts<ServerFlags>());
    const cfg = resolveServerConfig(program.opts<ServerFlags>(), program.processedArgs as string[]);
    const logger = loggerFromFlags('echo-server', program.opts<ServerFlags>(), cfg.instanceName);
    // signals are handled from before the first line is printed: a supervisor that reacts to
    // `listening on …` may signal at once
    let runner: ServerHandle | undefined;
    let metricsServer: MetricsServer | undefined;
    let done!: (code: number) => void;
    const finished = new Promise<number>((resolve) => {
      done = resolve;
    });
    // a signal during start-up stops the children being started; a server that did start is
    // then closed like any other (the start cannot be taken back half-way)
    const startup = new AbortController();
    let early: NodeJS.Signals | undefined;
    let stopping = false;
    const shutdown = (signal: NodeJS.Signals, runner: ServerHandle) => {
      stopping = true;
      logger.info({ signal }, `${signal}: shutting down, in-flight echoes get ${cfg.graceMs} ms`);
      runner.close({ graceMs: cfg.graceMs }).then(
        async (totals) => {
          logger.info({ ...totals }, formatTotals(totals, cfg.udp));
          await metricsServer?.close();
          done(0);
        },
        (err) => {
          logger.error({ err: String(err) }, 'shutdown failed');
          done(1);
        },
      );
    };
    onSignals(
      (signal) => {
        if (runner) return shutdown(signal, runner);
        early = signal;
        startup.abort();
      },
      () => runner?.forceClose(),
    );
    const interrupted = () => (early === 'SIGINT' ? 130 : 143);
    const flags = program.opts<ServerFlags>();
    if (flags.tls && !cfg.tls) {
      const t = await selfSignedTls(cfg.host);
      cfg.tls = { cert: t.cert, key: t.key, ...(flags.alpn ? { alpn: parseAlpn(flags.alpn) } : {}) };
    }
    if (early) return interrupted();
    try {
      runner = await startServer(cfg, logger, { signal: startup.signal });
    } catch (err) {
      if (early) return interrupted(); // the children it had started are gone
      throw err;
    }
    if (early) {
      shutdown(early, runner);
      return finished;
    }
    // the port the kernel chose is printed with -q too: nothing else can tell it
    const chosen =
      cfg.port === 0 && !logger.isLevelEnabled('info') ? logger.child({}, { level: 'info' }) : logger;
    chosen.info(
      {
        address: runner.address.address,
        port: runner.address.port,
        mode: cfg.mode,
        proto: cfg.udp ? 'udp' : cfg.path !== undefined ? 'unix' : 'tcp',
        ...(cfg.tls ? { tls: true } : {}),
      },
      listeningLine(cfg, runner),
    );
    if (cfg.proxyProtocol) {
      const from = (cfg.proxyFrom ?? DEFAULT_PROXY_FROM.map((c) => ({ text: c }))).map((c) => c.text);
      logger.info(
        { proxyFrom: cfg.path === undefined ? from : 'unix' },
        cfg.path === undefined
          ? `PROXY headers are believed only from ${from.join(', ')} (--proxy-from); any other peer is refused unread`
          : `PROXY headers are believed from every peer of the Unix socket: its file mode (--unix-mode) says who may connect`,
      );
    }
    if (cfg.tls) {
      const c = describeCertificate(cfg.tls.cert);
      logger.info(
        { fingerprint: c.fingerprint, subject: c.subject, validTo: c.validTo, selfSigned: !flags.cert },
        `TLS certificate${flags.cert ? '' : ' (self-signed, made at start)'}: SHA-256 ${c.fingerprint}, valid to ${c.validTo}; pin it with echo-client --tls --fingerprint ${c.fingerprint}`,
      );
    }
    if (cfg.path === undefined) warnIfReachable(logger, runner.address.address);
    if (cfg.metrics) {
      const m = await startMetrics(runner, cfg.metrics.host, cfg.metrics.port, cfg.instanceName);
      if (stopping) {
        await m.close(); // a signal came while it started: it would keep the process alive
        return finished;
      }
      metricsServer = m;
      const a = metricsServer.address;
      (cfg.metrics.port === 0 && !logger.isLevelEnabled('info')
        ? logger.child({}, { level: 'info' })
        : logger
      ).info(
        { metrics: `${formatAddress(a.address, a.port)}` },
        `metrics on http://${formatAddress(a.address, a.port)}/metrics`,
      );
      warnIfReachable(logger, a.address);
    }
    if (cfg.faults) {
      const list = cfg.faults.map(formatFault).join('; ');
      logger.warn({ faults: cfg.faults }, `faults injected on purpose: ${list}`);
    }
    return finished;
  });
}
