// One echo-client session over a connected TCP socket, as the CLI runs it: connect with
// retries, read a --banner line, then a one-shot --message (ping-style with --count) or the
// interactive prompt; and the helpers the UDP client shares (prompt, ping summary, progress).

import type { Socket } from 'node:net';
import { createInterface } from 'node:readline';
import { type ConnectResult, connectTcp, withRetry } from '../core/connect.js';
import { codedError, explainError } from '../core/errors.js';
import type { Logger } from '../core/log.js';
import { formatAddress, plural } from '../core/parse.js';
import type { SocketOptions } from '../core/sockopts.js';
import { escapeForTerminal } from '../core/terminal.js';
import type { ClientTls } from '../core/tls.js';
import { EchoConnection, formatProgress, type StreamProgress, startHeartbeat } from './echo.js';

/** How the server is reached: --unix, --tls…, --send-proxy. */
export interface ClientTransport {
  path?: string;
  tls?: ClientTls;
  sendProxy?: 1 | 2;
}

/** The interactive prompt, TCP and UDP. */
export const PROMPT = 'Input message (Q to quit): ';

/** One echo-client run, resolved from its flags. */
export interface ClientConfig {
  host: string;
  port: number;
  family?: 4 | 6;
  message?: string;
  count: number;
  intervalMs: number;
  connectTimeoutMs: number;
  timeoutMs?: number;
  /** TCP: connect attempts after the first */
  retry: number;
  /** UDP: resends of an unanswered datagram */
  resend: number;
  datagramSize?: number;
  heartbeat?: { intervalMs: number; timeoutMs: number };
  localPort?: number;
  localAddress?: string;
  udp: boolean;
  socket: SocketOptions;
  verbose: boolean;
  /** -q, and --log-format json: no progress line */
  quiet: boolean;
  jsonLogs: boolean;
  /** --unix, --tls…, --send-proxy */
  transport: ClientTransport;
  trace?: { format: 'text' | 'hex'; file?: string };
  banner: boolean;
}

/** Connect as `cfg` says, retrying --retry times with a warning per retry. */
export async function connectWithRetry(cfg: ClientConfig, logger: Logger): Promise<ConnectResult> {
  return withRetry(
    () =>
      connectTcp({
        host: cfg.host,
        port: cfg.port,
        ...cfg.transport,
        family: cfg.family,
        connectTimeoutMs: cfg.connectTimeoutMs,
        localAddress: cfg.localAddress,
        localPort: cfg.localPort,
        reuseAddr: cfg.socket.reuseAddr,
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

/** The first line the server sends (echo-server --banner), read before any echo. */
export function readBanner(socket: Socket, timeoutMs: number): Promise<string> {
  return new Promise((resolve, reject) => {
    let got = Buffer.alloc(0);
    const done = (err?: Error, line?: string) => {
      clearTimeout(timer);
      socket.off('data', onData);
      socket.off('end', onEnd);
      // held until whoever reads next attaches its 'data' listener (no byte lost between)
      socket.pause();
      const onListener = (event: string) => {
        if (event !== 'data') return;
        socket.off('newListener', onListener);
        process.nextTick(() => socket.resume());
      };
      socket.on('newListener', onListener);
      if (err) reject(err);
      else resolve(line!);
    };
    const onData = (d: Buffer) => {
      got = Buffer.concat([got, d]);
      const nl = got.indexOf(0x0a);
      if (nl < 0) {
        if (got.length > 4096) done(codedError('ERR_BANNER', 'no newline in the first 4 KiB: not a banner'));
        return;
      }
      const rest = got.subarray(nl + 1);
      if (rest.length) socket.unshift(rest);
      done(undefined, got.subarray(0, nl).toString('utf8').replace(/\r$/, ''));
    };
    const onEnd = () => done(codedError('ERR_BANNER', 'the server closed before sending a banner line'));
    const timer = setTimeout(
      () =>
        done(
          codedError(
            'ERR_BANNER',
            `no banner line within ${timeoutMs} ms (does the server run with --banner?)`,
          ),
        ),
      timeoutMs,
    );
    socket.on('data', onData);
    socket.once('end', onEnd);
  });
}

/**
 * The progress line of a piped transfer, on stderr when it is a terminal and stdout is not that
 * terminal too; none with -q or JSON logs. `clear()` removes it before the last log line.
 */
export function progressOnStderr(cfg: ClientConfig): {
  onProgress?: (p: StreamProgress) => void;
  clear: () => void;
} {
  if (process.stderr.isTTY !== true || process.stdout.isTTY === true || cfg.quiet || cfg.jsonLogs)
    return { clear: () => {} };
  let shown = '';
  return {
    onProgress: (p) => {
      // a terminal write is synchronous: a stalled transfer does not repeat its line
      const line = formatProgress(p);
      if (line !== shown) process.stderr.write(`\r\x1b[2K${line}`);
      shown = line;
    },
    clear: () => {
      if (shown) process.stderr.write('\r\x1b[2K');
      shown = '';
    },
  };
}

/** ping's last line: `5 sent, 5 echoed; rtt min/avg/max = 0.081/0.112/0.204 ms` */
export function pingSummary(sent: number, rtts: number[]): string {
  if (!rtts.length) return `${sent} sent, 0 echoed\n`;
  const avg = rtts.reduce((a, b) => a + b, 0) / rtts.length;
  const f = (x: number) => x.toFixed(3);
  return `${sent} sent, ${rtts.length} echoed; rtt min/avg/max = ${f(Math.min(...rtts))}/${f(avg)}/${f(Math.max(...rtts))} ms\n`;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** --message: print the echo; with --count, one ping-style line per echo and a summary. */
export async function oneShot(cfg: ClientConfig, socket: Socket, logger: Logger): Promise<number> {
  const conn = new EchoConnection(socket);
  const msg = Buffer.from(cfg.message!);
  const where =
    cfg.transport.path !== undefined ? `unix:${cfg.transport.path}` : formatAddress(cfg.host, cfg.port);
  const rtts: number[] = [];
  try {
    for (let i = 0; i < cfg.count; i++) {
      if (i > 0 && cfg.intervalMs > 0) await sleep(cfg.intervalMs);
      const { reply, rttMs } = await conn.roundTrip(msg, cfg.timeoutMs);
      rtts.push(rttMs);
      if (cfg.count === 1) {
        // the echo, as echo(1) prints its argument: on its own line
        const text = process.stdout.isTTY ? escapeForTerminal(reply.toString()) : reply;
        process.stdout.write(text);
        if (reply[reply.length - 1] !== 0x0a) process.stdout.write('\n');
      } else {
        process.stdout.write(
          `${plural(reply.length, 'byte')} from ${where}: seq=${i + 1} time=${rttMs.toFixed(3)} ms\n`,
        );
      }
      logger.debug(
        { seq: i + 1, rtt_ms: Number(rttMs.toFixed(3)) },
        `reply ${i + 1}: ${rttMs.toFixed(3)} ms`,
      );
    }
    if (cfg.count > 1) process.stdout.write(pingSummary(cfg.count, rtts));
    await conn.finish(cfg.timeoutMs);
    return 0;
  } finally {
    socket.destroy();
  }
}

/**
 * The prompt loop: each line is sent in full and its whole echo read back before the next
 * prompt. The server closing is reported when it happens, not at the next line typed.
 * `onSignal(stop)` calls stop on SIGINT/SIGTERM and returns what undoes that.
 */
export async function interactive(
  cfg: ClientConfig,
  socket: Socket,
  onSignal: (stop: () => void) => () => void,
): Promise<number> {
  const conn = new EchoConnection(socket);
  const rl = createInterface({ input: process.stdin, output: process.stdout, prompt: PROMPT });
  let ended: 'server' | 'interrupted' | 'dead' | undefined;
  let dead: Error | undefined;
  const stop = (why: 'server' | 'interrupted' | 'dead') => {
    if (ended) return;
    ended = why;
    process.stdout.write('\n'); // end the prompt's line: the shell prompt starts clean
    rl.close();
  };
  socket.once('end', () => stop('server'));
  socket.once('close', () => stop('server'));
  rl.on('SIGINT', () => stop('interrupted'));
  const stopHeartbeat = cfg.heartbeat
    ? startHeartbeat(conn, cfg.heartbeat, (err) => {
        dead = err;
        stop('dead');
      })
    : () => {};
  const stopSignals = onSignal(() => stop('interrupted'));
  rl.prompt();
  try {
    let quit = false;
    for await (const line of rl) {
      if (line === 'Q' || line === 'q') {
        quit = true;
        break;
      }
      // the newline goes too, so `nc` on the other side sees lines
      const { reply } = await conn.roundTrip(Buffer.from(`${line}\n`), cfg.timeoutMs);
      process.stdout.write(`from server: ${escapeForTerminal(reply.toString())}`);
      rl.prompt();
    }
    if (!ended && !quit) process.stdout.write('\n'); // Ctrl-D on the prompt: end its line
    if (ended === 'interrupted') return 130;
    if (ended === 'dead') throw dead;
    if (ended === 'server') throw codedError('ERR_SERVER_CLOSED', 'the server closed the connection');
    await conn.finish(cfg.timeoutMs);
    return 0;
  } finally {
    stopHeartbeat();
    stopSignals();
    rl.close();
    socket.destroy();
  }
}
