// echo-client: interactive prompt on a TTY (seed 001), one-shot --message, or piped stdin
// with an integrity check. `echo-client bench` is the load generator (bench-cli.ts).

import { createInterface } from 'node:readline';
import type { Command } from 'commander';
import { type ConnectResult, connectTcp, withRetry } from '../client/connect.js';
import { EchoConnection, streamThrough } from '../client/echo.js';
import { explainError } from '../core/errors.js';
import type { Logger } from '../core/log.js';
import {
  formatAddress,
  parseDuration,
  parseHost,
  parseInteger,
  parsePort,
  UsageError,
} from '../core/parse.js';
import { formatReport, type SocketOptions } from '../core/sockopts.js';
import { addBenchCommand, runBenchCli } from './bench-cli.js';
import {
  addLogFlags,
  addSocketOptionFlags,
  type LogFlags,
  loggerFromFlags,
  newProgram,
  resolveSocketOptions,
  runCli,
  type SocketOptionFlags,
} from './common.js';

export const PROMPT = 'Input message (Q to quit): ';

export function buildClientProgram(): Command {
  const cmd = newProgram(
    'echo-client',
    'Echo client: interactive, one-shot, piped with an integrity check, UDP, bench',
  )
    .argument('[host]', 'server address', '127.0.0.1')
    .argument('[port]', 'server port', '7007')
    .option('-m, --message <text>', 'send this message, print the echo, exit')
    .option('-n, --count <n>', 'with --message: send it this many times over one connection', '1')
    .option('-i, --interval <dur>', 'with --count: wait this long between messages', '0')
    .option('--connect-timeout <dur>', 'give up on a connect after this long (ETIMEDOUT)', '10s')
    .option('-t, --timeout <dur>', 'give up on a reply after this long')
    .option('--retry <n>', 'retry a refused or timed-out connect this many times, with backoff', '0')
    .option('--local-port <port>', 'bind this local port before connecting (seed 003)')
    .option('--local-address <addr>', 'bind this local address before connecting')
    .option('-u, --udp', 'UDP: one datagram per line or message')
    .option('--retries <n>', 'UDP: resend an unanswered datagram this many times', '2');
  addSocketOptionFlags(cmd, { listen: false });
  addLogFlags(cmd);
  cmd.addHelpText(
    'after',
    `
Examples:
  echo-client                          interactive: ${PROMPT}
  echo-client 127.0.0.1 7007 --message hello
  echo-client --message ping --count 5 --interval 1s
  head -c 10m /dev/urandom | echo-client > /dev/null   stream and verify every byte
  echo-client --connect-timeout 1s --retry 3 10.0.0.1 7
  echo-client --udp --message hello --timeout 500ms --retries 3
  echo-client bench -c 100 -d 5s`,
  );
  return cmd;
}

export interface ClientFlags extends SocketOptionFlags, LogFlags {
  message?: string;
  count: string;
  interval: string;
  connectTimeout: string;
  timeout?: string;
  retry: string;
  localPort?: string;
  localAddress?: string;
  udp?: boolean;
  retries: string;
}

export interface ClientConfig {
  host: string;
  port: number;
  message?: string;
  count: number;
  interval: number;
  connectTimeout: number;
  timeout?: number;
  retry: number;
  retries: number;
  localPort?: number;
  localAddress?: string;
  udp: boolean;
  socket: SocketOptions;
  verbose: boolean;
}

export function resolveClientConfig(hostArg: string, portArg: string, f: ClientFlags): ClientConfig {
  const cfg: ClientConfig = {
    host: parseHost('HOST', hostArg),
    port: parsePort('PORT', portArg, { allowZero: false }),
    message: f.message,
    count: parseInteger('--count', f.count, 1, 1_000_000_000),
    interval: parseDuration('--interval', f.interval),
    connectTimeout: parseDuration('--connect-timeout', f.connectTimeout, 1),
    timeout: f.timeout !== undefined ? parseDuration('--timeout', f.timeout, 1) : undefined,
    retry: parseInteger('--retry', f.retry, 0, 1000),
    retries: parseInteger('--retries', f.retries, 0, 1000),
    localPort:
      f.localPort !== undefined ? parsePort('--local-port', f.localPort, { allowZero: false }) : undefined,
    localAddress: f.localAddress !== undefined ? parseHost('--local-address', f.localAddress) : undefined,
    udp: f.udp === true,
    socket: resolveSocketOptions(f),
    verbose: f.verbose === true,
  };
  if (f.message === '' && !cfg.udp) throw new UsageError('--message', '""', 'must not be empty');
  if (f.count !== '1' && f.message === undefined) throw new UsageError('--count', f.count, 'needs --message');
  return cfg;
}

async function connectWithRetry(cfg: ClientConfig, logger: Logger): Promise<ConnectResult> {
  return withRetry(
    () =>
      connectTcp({
        host: cfg.host,
        port: cfg.port,
        connectTimeout: cfg.connectTimeout,
        localAddress: cfg.localAddress,
        localPort: cfg.localPort,
        socketOptions: cfg.socket,
      }),
    {
      retries: cfg.retry,
      onRetry: (err, attempt, delay) =>
        logger.warn(
          { attempt, delay },
          `${explainError(err).summary}; retry ${attempt}/${cfg.retry} in ${delay} ms`,
        ),
    },
  );
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export async function runClientCli(argv: string[]): Promise<void> {
  await runCli('echo-client', async () => {
    const program = buildClientProgram();
    // options after `bench` belong to bench (it has its own --udp, --mode…)
    program.enablePositionalOptions();
    program.action(() => {}); // with a subcommand defined, plain HOST PORT still go to the program
    let bench: Promise<number> | undefined;
    addBenchCommand(program, (f, host, port) => {
      bench = runBenchCli(f, host, port);
    });
    program.parse(argv, { from: 'user' });
    if (bench) return bench;
    const [hostArg, portArg] = program.processedArgs as [string, string];
    const flags = program.opts<ClientFlags>();
    const cfg = resolveClientConfig(hostArg, portArg, flags);
    const logger = loggerFromFlags('echo-client', flags);
    if (cfg.udp) {
      const { runUdpClient } = await import('./udp-client-cli.js');
      return runUdpClient(cfg, logger);
    }
    const { socket, options } = await connectWithRetry(cfg, logger);
    const where = formatAddress(cfg.host, cfg.port);
    logger.debug(
      { local: `${socket.localAddress}:${socket.localPort}` },
      `connected to ${where} from ${formatAddress(socket.localAddress ?? '?', socket.localPort ?? 0)}`,
    );
    for (const r of options) logger.info({ ...r }, formatReport(r));
    if (cfg.message !== undefined) return oneShot(cfg, socket, logger);
    if (process.stdin.isTTY) return interactive(cfg, socket);
    const result = await streamThrough(socket, process.stdin, process.stdout);
    if (!result.ok) {
      process.stderr.write(`echo-client: ${explainError(result.problem).line}\n`);
      return 1;
    }
    logger.info(
      { sent: result.sent, received: result.received },
      `${result.sent} bytes sent, all came back identical`,
    );
    return 0;
  });
}

async function oneShot(
  cfg: ClientConfig,
  socket: import('node:net').Socket,
  logger: Logger,
): Promise<number> {
  const conn = new EchoConnection(socket);
  const msg = Buffer.from(cfg.message!);
  try {
    for (let i = 0; i < cfg.count; i++) {
      if (i > 0 && cfg.interval > 0) await sleep(cfg.interval);
      const { reply, rttMs } = await conn.roundTrip(msg, cfg.timeout);
      process.stdout.write(reply);
      if (process.stdout.isTTY && reply[reply.length - 1] !== 0x0a) process.stdout.write('\n');
      logger.debug(
        { seq: i + 1, rtt_ms: Number(rttMs.toFixed(3)) },
        `reply ${i + 1}: ${rttMs.toFixed(3)} ms`,
      );
    }
    await conn.finish();
    return 0;
  } finally {
    socket.destroy();
  }
}

async function interactive(cfg: ClientConfig, socket: import('node:net').Socket): Promise<number> {
  const conn = new EchoConnection(socket);
  const rl = createInterface({ input: process.stdin, output: process.stdout, prompt: PROMPT });
  let serverGone = false;
  socket.once('close', () => {
    serverGone = true;
    rl.close();
  });
  rl.prompt();
  try {
    for await (const line of rl) {
      if (line === 'Q' || line === 'q') break;
      // fgets in the seed keeps the newline; so do we, so `nc` on the other side sees lines
      const { reply } = await conn.roundTrip(Buffer.from(`${line}\n`), cfg.timeout);
      process.stdout.write(`from server: ${reply.toString()}`);
      rl.prompt();
    }
    if (serverGone) {
      process.stdout.write('\n');
      process.stderr.write('echo-client: the server closed the connection\n');
      return 1;
    }
    await conn.finish();
    return 0;
  } finally {
    rl.close();
    socket.destroy();
  }
}
