// echo-client --udp: one datagram per --message or per input line, each awaited with
// --timeout and resent --retries times; lost, late and duplicate replies are reported.

import { createInterface } from 'node:readline';
import { explainError } from '../core/errors.js';
import type { Logger } from '../core/log.js';
import { formatAddress } from '../core/parse.js';
import { UdpEchoClient } from '../udp/client.js';
import { type ClientConfig, PROMPT } from './echo-client.js';

export async function runUdpClient(cfg: ClientConfig, logger: Logger): Promise<number> {
  const client = await UdpEchoClient.open({
    host: cfg.host,
    port: cfg.port,
    sendBuffer: cfg.socket.sendBuffer,
    recvBuffer: cfg.socket.recvBuffer,
    localAddress: cfg.localAddress,
    localPort: cfg.localPort,
  });
  const timing = { timeout: cfg.timeout ?? 1000, retries: cfg.retries };
  let failures = 0;
  const send = async (msg: Buffer, print: (reply: Buffer) => void) => {
    try {
      const { reply, rttMs, attempts } = await client.roundTrip(msg, timing);
      print(reply);
      logger.debug(
        { rtt_ms: Number(rttMs.toFixed(3)), attempts },
        `echo in ${rttMs.toFixed(3)} ms after ${attempts} tries`,
      );
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'ERR_REPLY_TIMEOUT') {
        failures++;
        process.stderr.write(`echo-client: ${explainError(err).line}\n`);
        return;
      }
      throw err;
    }
  };
  try {
    if (cfg.message !== undefined) {
      const msg = Buffer.from(cfg.message);
      for (let i = 0; i < cfg.count; i++) {
        if (i > 0 && cfg.interval > 0) await new Promise((r) => setTimeout(r, cfg.interval));
        await send(msg, (r) => process.stdout.write(process.stdout.isTTY ? `${r.toString()}\n` : r));
      }
    } else {
      const tty = process.stdin.isTTY === true;
      const rl = createInterface({
        input: process.stdin,
        output: tty ? process.stdout : undefined,
        prompt: PROMPT,
      });
      if (tty) rl.prompt();
      for await (const line of rl) {
        if (tty && (line === 'Q' || line === 'q')) break;
        const msg = Buffer.from(`${line}\n`);
        await send(msg, (r) => process.stdout.write(tty ? `from server: ${r.toString()}` : r));
        if (tty) rl.prompt();
      }
      rl.close();
    }
  } finally {
    const c = client.counters;
    const line = `udp ${formatAddress(cfg.host, cfg.port)}: ${c.answered} answered, ${c.lost} lost, ${c.retried} resent, ${c.late} late, ${c.duplicate} duplicate`;
    if (c.lost || c.late || c.duplicate) logger.warn({ ...c }, line);
    else logger.info({ ...c }, line);
    await client.close();
  }
  return failures > 0 ? 1 : 0;
}
