// echo-client --udp: one datagram per --message, per input line, or per --datagram-size bytes
// of piped input; each awaited for --timeout and resent --resend times. Piped input is sent
// byte for byte (a line keeps its newline, and input without one gets none) and every echo is
// compared with what was sent; lost, late and duplicate replies are counted.

import { createInterface } from 'node:readline';
import type { Readable } from 'node:stream';
import { startProgress } from '../client/echo.js';
import { type ClientConfig, PROMPT, pingSummary, progressOnStderr } from '../client/session.js';
import { explainError } from '../core/errors.js';
import type { Logger } from '../core/log.js';
import { formatAddress, plural } from '../core/parse.js';
import { escapeForTerminal, TerminalText } from '../core/terminal.js';
import { UdpEchoClient } from '../udp/client.js';
import { onSignals, warn } from './common.js';

/** Cut a byte stream into datagrams: at each newline (kept), or every `size` bytes. */
export async function* datagrams(input: Readable, size?: number): AsyncGenerator<Buffer> {
  let carry: Buffer = Buffer.alloc(0);
  for await (const chunk of input) {
    carry = carry.length ? Buffer.concat([carry, chunk as Buffer]) : (chunk as Buffer);
    for (;;) {
      const end = size !== undefined ? (carry.length >= size ? size : -1) : carry.indexOf(0x0a) + 1 || -1;
      if (end < 0) break;
      yield carry.subarray(0, end);
      carry = carry.subarray(end);
    }
  }
  if (carry.length) yield carry;
}

export async function runUdpClient(cfg: ClientConfig, logger: Logger): Promise<number> {
  const client = await UdpEchoClient.open({
    host: cfg.host,
    port: cfg.port,
    family: cfg.family,
    sendBuffer: cfg.socket.sendBuffer,
    recvBuffer: cfg.socket.recvBuffer,
    localAddress: cfg.localAddress,
    localPort: cfg.localPort,
  });
  const timing = { timeoutMs: cfg.timeoutMs ?? 1000, retries: cfg.resend };
  const where = formatAddress(cfg.host, cfg.port);
  let lost = 0;
  /** One datagram's round trip; undefined when it was lost (said on stderr), other errors thrown. */
  const send = async (msg: Buffer) => {
    try {
      const r = await client.roundTrip(msg, timing);
      logger.debug(
        { rtt_ms: Number(r.rttMs.toFixed(3)), attempts: r.attempts },
        `echo in ${r.rttMs.toFixed(3)} ms after ${r.attempts} tries`,
      );
      return r;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ERR_REPLY_TIMEOUT') throw err;
      lost++;
      warn('echo-client', explainError(err, { role: 'client' }).line);
      return undefined;
    }
  };
  let code = 0;
  try {
    if (cfg.message !== undefined) {
      const msg = Buffer.from(cfg.message);
      const rtts: number[] = [];
      for (let i = 0; i < cfg.count; i++) {
        if (i > 0 && cfg.intervalMs > 0) await new Promise((r) => setTimeout(r, cfg.intervalMs));
        const r = await send(msg);
        if (!r) continue;
        rtts.push(r.rttMs);
        if (cfg.count > 1) {
          process.stdout.write(
            `${plural(r.reply.length, 'byte')} from ${where}: seq=${i + 1} time=${r.rttMs.toFixed(3)} ms${r.attempts > 1 ? ` (${r.attempts} tries)` : ''}\n`,
          );
        } else {
          process.stdout.write(process.stdout.isTTY ? escapeForTerminal(r.reply.toString()) : r.reply);
          if (r.reply[r.reply.length - 1] !== 0x0a) process.stdout.write('\n');
        }
      }
      if (cfg.count > 1) process.stdout.write(pingSummary(cfg.count, rtts));
    } else if (process.stdin.isTTY) {
      code = await interactive(send);
    } else {
      let sent = 0;
      let n = 0;
      // a terminal on stdout gets the echo as text with its controls made visible, whatever stdin is
      const text = process.stdout.isTTY ? new TerminalText() : undefined;
      let received = 0;
      const progress = progressOnStderr(cfg);
      const stopProgress = progress.onProgress
        ? startProgress(() => ({ sent, received }), progress.onProgress)
        : () => {};
      try {
        for await (const d of datagrams(process.stdin, cfg.datagramSize)) {
          n++;
          sent += d.length;
          const r = await send(d);
          if (!r) continue;
          received += r.reply.length;
          // identical to `d`: roundTrip compared every byte
          process.stdout.write(text ? text.write(r.reply) : r.reply);
        }
      } finally {
        stopProgress();
        progress.clear();
      }
      if (text) process.stdout.write(text.end());
      if (!lost)
        logger.info(
          { datagrams: n, sent },
          `${plural(n, 'datagram')}, ${plural(sent, 'byte')} sent, all came back identical`,
        );
    }
  } finally {
    const c = client.counters;
    const line = `udp ${where}: ${c.answered} answered, ${c.lost} lost, ${c.retried} resent, ${c.late} late, ${c.duplicate} duplicate${c.mismatched ? `, ${c.mismatched} differing from what was sent` : ''}`;
    if (c.lost || c.late || c.duplicate || c.mismatched) logger.warn({ ...c }, line);
    else logger.info({ ...c }, line);
    await client.close();
  }
  return code || (lost > 0 ? 1 : 0);
}

async function interactive(send: (m: Buffer) => Promise<{ reply: Buffer } | undefined>): Promise<number> {
  const rl = createInterface({ input: process.stdin, output: process.stdout, prompt: PROMPT });
  let interrupted = false;
  const stop = () => {
    interrupted = true;
    process.stdout.write('\n');
    rl.close();
  };
  rl.on('SIGINT', stop);
  const stopSignals = onSignals(stop, () => {});
  try {
    rl.prompt();
    let quit = false;
    for await (const line of rl) {
      if (line === 'Q' || line === 'q') {
        quit = true;
        break;
      }
      const r = await send(Buffer.from(`${line}\n`));
      if (r) process.stdout.write(`from server: ${escapeForTerminal(r.reply.toString())}`);
      rl.prompt();
    }
    if (!interrupted && !quit) process.stdout.write('\n'); // Ctrl-D on the prompt: end its line
    return interrupted ? 130 : 0;
  } finally {
    // an error (ECONNREFUSED) leaves the loop too: the prompt must not keep the process alive
    stopSignals();
    rl.close();
  }
}
