// echo-server: flags → a validated config → one of the server modes. The only code that
// touches argv, signals and the exit code for the server.

import { availableParallelism } from 'node:os';
import type { Command } from 'commander';
import { Option } from 'commander';
import {
  formatAddress,
  parseDuration,
  parseHost,
  parseInteger,
  parsePort,
  UsageError,
} from '../core/parse.js';
import type { ServerConfig } from '../server/config.js';
import { DEFAULT_HOST, DEFAULT_PORT } from '../server/tcp-server.js';
import {
  addAccessFlags,
  addLogFlags,
  addSocketOptionFlags,
  conflict,
  type LogFlags,
  loggerFromFlags,
  newProgram,
  onSignals,
  resolveAccess,
  resolveSocketOptions,
  runCli,
  type SocketOptionFlags,
} from './common.js';
import { type RunningServer, startMode } from './server-modes.js';

export function buildServerProgram(): Command {
  const cmd = newProgram('echo-server', 'TCP (RFC 862) and UDP echo server on real sockets')
    .option('-H, --host <addr>', 'address to listen on (0.0.0.0 or :: opens it to the network)', DEFAULT_HOST)
    .option('-p, --port <port>', 'port to listen on; 0 picks a free one and prints it', String(DEFAULT_PORT))
    .addOption(
      new Option('-m, --mode <mode>', 'concurrency model')
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
      '--grace <dur>',
      'on SIGINT/SIGTERM, how long in-flight echoes may take before connections are cut',
      '5s',
    )
    .option(
      '--rate-limit <n>',
      'UDP: datagrams per second allowed per source (token bucket; 0 = no limit)',
      '1000',
    )
    .option('--rate-burst <n>', 'UDP: burst size per source', '200');
  addSocketOptionFlags(cmd, { listen: true });
  addAccessFlags(cmd);
  addLogFlags(cmd);
  cmd.addHelpText(
    'after',
    `
Examples:
  echo-server                          listen on 127.0.0.1:7007, evented
  echo-server --port 0                 pick a free port and print it
  echo-server --mode iterative         one client at a time, as the seed's accept loop
  echo-server --mode workers --workers 4
  echo-server --mode fork --max-children 50
  echo-server --udp --port 7007
  echo-server --no-reuse-addr --verbose   show what the kernel reports for each option
  echo-server --host 0.0.0.0 --allow 10.0.0.0/8 --max-connections-per-ip 20`,
  );
  return cmd;
}

export interface ServerFlags extends SocketOptionFlags, LogFlags {
  host: string;
  port: string;
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
  grace: string;
  rateLimit: string;
  rateBurst: string;
}

/** Validate every flag up front; throws UsageError naming the flag. */
export function resolveServerConfig(f: ServerFlags): ServerConfig {
  const host = parseHost('--host', f.host);
  const port = parsePort('--port', f.port);
  const mode = f.mode as ServerConfig['mode'];
  const sock = resolveSocketOptions(f);
  if (f.workers !== undefined && mode !== 'workers')
    throw new UsageError('--workers', f.workers, 'needs --mode workers');
  if (f.maxChildren !== undefined && mode !== 'fork')
    throw new UsageError('--max-children', f.maxChildren, 'needs --mode fork');
  if (f.exclusive && mode !== 'workers')
    throw new UsageError('--exclusive', undefined, 'needs --mode workers');
  if (f.udp && mode !== 'evented') throw conflict('--udp', `--mode ${mode}`);
  return {
    host,
    port,
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
    idleTimeout:
      f.idleTimeout !== undefined
        ? parseDuration('--idle-timeout', f.idleTimeout, 1, 2_147_483_647)
        : undefined,
    graceMs: parseDuration('--grace', f.grace, 0, 3_600_000),
    rateLimit: parseInteger('--rate-limit', f.rateLimit, 0, 10_000_000),
    rateBurst: parseInteger('--rate-burst', f.rateBurst, 1, 10_000_000),
    socket: sock,
    verbose: f.verbose === true,
    logLevel: f.verbose ? 'debug' : f.quiet ? 'warn' : 'info',
    logFormat: (f.logFormat ?? 'auto') as ServerConfig['logFormat'],
    label: `${f.udp ? 'udp' : 'tcp'}, ${mode}`,
    display: formatAddress(host, port),
  };
}

/** Totals as one human line. */
export function formatTotals(t: {
  connections: number;
  refused: number;
  bytesIn: number;
  bytesOut: number;
  errors: Record<string, number>;
}): string {
  const errs = Object.entries(t.errors)
    .map(([k, v]) => `${k} ${v}`)
    .join(', ');
  return `totals: ${t.connections} connections, ${t.refused} refused, in ${t.bytesIn} B, out ${t.bytesOut} B${errs ? `, errors: ${errs}` : ''}`;
}

export async function runServerCli(argv: string[]): Promise<void> {
  await runCli('echo-server', async () => {
    const program = buildServerProgram();
    program.parse(argv, { from: 'user' });
    const cfg = resolveServerConfig(program.opts<ServerFlags>());
    const logger = loggerFromFlags('echo-server', program.opts<ServerFlags>());
    if (cfg.host !== '127.0.0.1' && cfg.host !== '::1' && cfg.host !== 'localhost') {
      logger.warn({ host: cfg.host }, `listening on ${cfg.host}: this server is reachable from the network`);
    }
    // signals are handled from before the first line is printed: a supervisor that reacts to
    // `listening on …` may signal at once
    let runner: RunningServer | undefined;
    let done!: (code: number) => void;
    const finished = new Promise<number>((resolve) => {
      done = resolve;
    });
    onSignals(
      (signal) => {
        if (!runner) return done(signal === 'SIGINT' ? 130 : 143);
        logger.info({ signal }, `${signal}: shutting down, in-flight echoes get ${cfg.graceMs} ms`);
        runner.close().then(
          (totals) => {
            logger.info({ ...totals }, formatTotals(totals));
            done(0);
          },
          (err) => {
            logger.error({ err: String(err) }, 'shutdown failed');
            done(1);
          },
        );
      },
      () => runner?.forceClose(),
    );
    runner = await startMode(cfg, logger);
    return finished;
  });
}
