// echo-client ws://HOST:PORT/PATH (and wss://): the connection is made as for TCP (its TLS,
// PROXY, timeout and retry flags), then upgraded; --message (ping-style with --count), piped
// stdin (binary messages, or lines as text messages with --text) checked echo by echo, or the
// interactive prompt on a terminal.

import { createInterface } from 'node:readline';
import { type ClientConfig, connectWithRetry, PROMPT, pingSummary } from '../client/session.js';
import { MessageReader, openWebSocket, WsFailure } from '../client/websocket.js';
import type { Logger } from '../core/log.js';
import { formatAddress, plural, UsageError } from '../core/parse.js';
import { escapeForTerminal } from '../core/terminal.js';
import type { ClientFlags } from './client-flags.js';
import { stderrLine } from './common.js';
import { conflict } from './flag-groups.js';

/** The parts of a ws:// or wss:// URL echo-client needs; UsageError (naming URL) otherwise. */
export function parseWsUrl(raw: string): { tls: boolean; host: string; port: number; path: string } {
  let u: URL;
  try {
    u = new URL(raw);
  } catch {
    throw new UsageError('URL', raw, 'is ws://HOST[:PORT]/PATH or wss://…');
  }
  if (u.protocol !== 'ws:' && u.protocol !== 'wss:')
    throw new UsageError('URL', raw, 'is ws://HOST[:PORT]/PATH or wss://…');
  if (u.username || u.password) throw new UsageError('URL', raw, 'carries no credentials here');
  const tls = u.protocol === 'wss:';
  return {
    tls,
    host: u.hostname.replace(/^\[|\]$/g, ''),
    port: u.port ? Number(u.port) : tls ? 443 : 80,
    path: `${u.pathname || '/'}${u.search}`,
  };
}

/** echo-client with a ws:// or wss:// URL: its flags checked, then the session. */
export async function runWsUrl(
  url: string,
  portArg: string | undefined,
  flags: ClientFlags,
  resolve: (host: string, f: ClientFlags) => ClientConfig,
  logger: () => Logger,
): Promise<number> {
  const u = parseWsUrl(url);
  if (portArg !== undefined || flags.port !== undefined)
    throw conflict('--port', 'a URL (its port is in it)');
  if (flags.udp) throw conflict('--udp', 'a ws:// URL');
  if (flags.tls && !u.tls) throw conflict('--tls', 'a ws:// URL (wss:// is WebSocket over TLS)');
  for (const [flag, given] of [
    ['--banner', flags.banner],
    ['--heartbeat', flags.heartbeat],
    ['--trace', flags.trace],
  ] as const)
    if (given !== undefined) throw conflict(flag, 'a ws:// URL');
  if (flags.text && flags.message !== undefined) throw conflict('--text', '--message (a message is text)');
  const cfg = resolve(formatAddress(u.host, u.port), { ...flags, ...(u.tls ? { tls: true } : {}) });
  return runWsClient(cfg, { path: u.path, text: flags.text === true }, logger());
}

export interface WsClientRun {
  path: string;
  /** --text: piped lines are text messages */
  text: boolean;
  /** the protocols offered (--ws-protocol) */
  protocols?: string[];
}

/** Piped: at most this much sent and not yet echoed before stdin is paused. */
const IN_FLIGHT = 4 * 1024 * 1024;
/** Piped, binary: the largest message a stdin chunk becomes. */
const CHUNK = 64 * 1024;

export async function runWsClient(cfg: ClientConfig, run: WsClientRun, logger: Logger): Promise<number> {
  const { socket } = await connectWithRetry(cfg, logger);
  const where = `${cfg.transport.tls ? 'wss' : 'ws'}://${formatAddress(cfg.host, cfg.port)}${run.path}`;
  try {
    const ws = await openWebSocket(socket, {
      host: formatAddress(cfg.host, cfg.port),
      path: run.path,
      timeoutMs: cfg.timeoutMs ?? cfg.connectTimeoutMs,
      ...(run.protocols ? { protocols: run.protocols } : {}),
    });
    logger.debug({ url: where, protocol: ws.protocol }, `WebSocket open: ${where}`);
    const reader = new MessageReader(ws);
    if (cfg.message !== undefined) return await oneShot(cfg, reader, where);
    if (process.stdin.isTTY) return await interactive(reader);
    return await piped(cfg, run, reader, logger);
  } catch (err) {
    if (!(err instanceof WsFailure)) throw err;
    stderrLine('echo-client', 'error', `${where}: ${err.line}`, { exitCode: 1, code: err.code });
    return 1;
  } finally {
    socket.destroy();
  }
}

async function oneShot(cfg: ClientConfig, reader: MessageReader, where: string): Promise<number> {
  const rtts: number[] = [];
  for (let i = 0; i < cfg.count; i++) {
    if (i > 0 && cfg.intervalMs > 0) await new Promise((r) => setTimeout(r, cfg.intervalMs));
    const t0 = performance.now();
    reader.ws.send(cfg.message!);
    const { data } = await reader.next(cfg.timeoutMs);
    const rtt = performance.now() - t0;
    rtts.push(rtt);
    if (cfg.count === 1)
      process.stdout.write(`${process.stdout.isTTY ? escapeForTerminal(data.toString()) : data}\n`);
    else
      process.stdout.write(
        `${plural(data.length, 'byte')} from ${where}: seq=${i + 1} time=${rtt.toFixed(3)} ms\n`,
      );
  }
  if (cfg.count > 1) process.stdout.write(pingSummary(cfg.count, rtts));
  await reader.close(1000);
  return 0;
}

async function interactive(reader: MessageReader): Promise<number> {
  const rl = createInterface({ input: process.stdin, output: process.stdout, prompt: PROMPT });
  let ended: 'server' | 'interrupted' | undefined;
  const stop = (why: 'server' | 'interrupted') => {
    if (ended) return;
    ended = why;
    process.stdout.write('\n'); // end the prompt's line: the shell prompt starts clean
    rl.close();
  };
  reader.ws.once('close', () => stop('server'));
  rl.on('SIGINT', () => stop('interrupted'));
  try {
    rl.prompt();
    for await (const line of rl) {
      if (line === 'Q' || line === 'q') break;
      reader.ws.send(line);
      const { data } = await reader.next();
      process.stdout.write(`from server: ${escapeForTerminal(data.toString())}\n`);
      rl.prompt();
    }
  } finally {
    rl.close();
  }
  if (ended === 'server') throw reader.ended ?? new WsFailure('the server closed the WebSocket', 'WS_CLOSED');
  await reader.close(1000);
  return ended === 'interrupted' ? 130 : 0;
}

async function piped(
  cfg: ClientConfig,
  run: WsClientRun,
  reader: MessageReader,
  logger: Logger,
): Promise<number> {
  const sent: Buffer[] = [];
  let inFlight = 0;
  let bytes = 0;
  let messages = 0;
  let mismatch: WsFailure | undefined;
  let inputDone = false;
  let wake: (() => void) | undefined;
  const stdin = process.stdin;
  const send = (b: Buffer, text: boolean) => {
    sent.push(b);
    inFlight += b.length;
    bytes += b.length;
    messages++;
    reader.ws.send(b, { binary: !text });
    if (inFlight > IN_FLIGHT) stdin.pause();
  };
  const echoes = (async () => {
    for (;;) {
      if (sent.length === 0 && inputDone) return;
      if (sent.length === 0) {
        await new Promise<void>((r) => {
          wake = r;
        });
        continue;
      }
      const { data } = await reader.next(cfg.timeoutMs);
      const want = sent.shift()!;
      inFlight -= want.length;
      if (!data.equals(want)) {
        mismatch = new WsFailure(
          `message ${messages - sent.length} came back different (${plural(data.length, 'byte')} for ${want.length})`,
          'EMISMATCH',
        );
        return;
      }
      process.stdout.write(run.text ? `${data}\n` : data);
      if (inFlight <= IN_FLIGHT / 2 && stdin.isPaused()) stdin.resume();
    }
  })();
  const poke = () => {
    const w = wake;
    wake = undefined;
    w?.();
  };
  let inputEnd: Promise<void>;
  if (run.text) {
    const rl = createInterface({ input: stdin, crlfDelay: Number.POSITIVE_INFINITY });
    rl.on('line', (line) => {
      send(Buffer.from(line), true);
      poke();
    });
    inputEnd = new Promise<void>((r) => rl.once('close', () => r()));
  } else {
    stdin.on('data', (chunk: Buffer) => {
      for (let o = 0; o < chunk.length; o += CHUNK) send(chunk.subarray(o, o + CHUNK), false);
      poke();
    });
    inputEnd = new Promise<void>((r) => stdin.once('end', () => r()));
  }
  try {
    // the server may close (or an echo differ) before stdin ends: that ends the run
    await Promise.race([inputEnd, echoes]);
  } finally {
    if (!stdin.readableEnded) stdin.destroy();
  }
  inputDone = true;
  poke();
  await echoes;
  if (mismatch) throw mismatch;
  await reader.close(1000);
  logger.info(
    { sent: bytes, messages },
    `${plural(bytes, 'byte')} sent in ${plural(messages, 'message')}, all came back identical`,
  );
  return 0;
}
