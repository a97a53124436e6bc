// echo-chat: two terminals over one TCP connection. Flags → listen for one peer or connect →
// relayChat() (client/chat.ts) until the conversation ends → an exit code.
//
// Endings: the peer closes → `peer closed the connection`, exit 0. Ctrl-D → half-close (FIN)
// and keep printing until the peer closes. Ctrl-C → close, exit 130 (SIGTERM: 143). A reset
// or a dead peer (keepalive / user timeout) → the explained error, exit 1. Our stdout closed
// (`| head`) → exit 0 quietly.

import type { Socket } from 'node:net';
import { connectChat, listenChat, type RelayEnd, relayChat } from '../client/chat.js';
import { explainError } from '../core/errors.js';
import { formatAddress } from '../core/parse.js';
import { formatReport, type OptionReport } from '../core/sockopts.js';
import { formatTlsInfo, selfSignedTls } from '../core/tls.js';
import { createTracer, traceSink, traceSocket } from '../core/trace.js';
import { peerName } from '../server/listener.js';
import { buildChatProgram, type ChatFlags, resolveChatConfig } from './chat-flags.js';
import { exitOnSignal, onSignals, runCli, signalExitCode, statusLogger, warnIfReachable } from './common.js';
import { normalizeTraceArg, resolveTrace } from './flag-groups.js';
import { INSECURE_WARNING } from './transport.js';

export { buildChatProgram, type ChatFlags, resolveChatConfig } from './chat-flags.js';

export async function runChatCli(argv: string[]): Promise<void> {
  // Ctrl-C / SIGTERM handled from before anything is printed (a peer that reacts to our output
  // may signal us at once); what a signal means depends on the phase
  let onSignal: (signal: NodeJS.Signals) => void = exitOnSignal;
  const stopSignals = onSignals(
    (signal) => onSignal(signal),
    () => {},
  );
  await runCli('echo-chat', async () => {
    const program = buildChatProgram();
    program.parse(normalizeTraceArg(argv), { from: 'user' });
    const f = program.opts<ChatFlags>();
    const [hostArg, portArg] = program.processedArgs as [string | undefined, string | undefined];
    const cfg = resolveChatConfig(hostArg, portArg, f);
    const traceCfg = resolveTrace(f);
    const tracer = traceCfg ? createTracer(traceCfg.format, traceSink(traceCfg.file)) : undefined;
    const { sock, family, connectTimeoutMs, retries } = cfg;
    const log = statusLogger('echo-chat', f);
    const say = (line: string) => log.info({}, line);
    const tty = process.stdin.isTTY === true && process.stdout.isTTY === true;

    /** One conversation; resolves with its exit code (an error is thrown for the runner). */
    const converse = async (socket: Socket, reports: OptionReport[]): Promise<number | 'next'> => {
      if (f.verbose) for (const r of reports) log.debug({ ...r }, formatReport(r));
      const relay = relayChat({
        socket,
        input: process.stdin,
        output: process.stdout,
        tty,
        name: f.name,
        status: say,
      });
      let signalled: NodeJS.Signals | undefined;
      onSignal = (signal) => {
        signalled = signal;
        onSignal = exitOnSignal; // a second one: at once
        relay.interrupt();
      };
      const end: RelayEnd = await relay.done;
      (process.stdin as { unref?: () => void }).unref?.(); // nothing more to read: let the process end
      if (tty) process.stdout.write('\n'); // end the prompt's line: what follows starts clean
      // a signal that came as the conversation was ending still ends the command (--keep-open
      // would otherwise wait for the next peer)
      if (signalled) return signalExitCode(signalled);
      // Ctrl-C on a terminal reaches readline, not the signal handler: the same exit code
      if (end.how === 'interrupted') return 130;
      if (end.how === 'error') {
        if (!f.keepOpen) throw end.error;
        // --keep-open: a reset or a dead peer costs that conversation only (ncat -k does the same)
        log.warn({}, explainError(end.error, { role: 'chat' }).line);
        return 'next';
      }
      // our reader left (`| head`): there is nowhere to print the next conversation
      if (end.how === 'output closed') return 0;
      return f.keepOpen ? 'next' : 0;
    };

    if (cfg.listen) {
      const t = cfg.transport!;
      const tls = f.tls ? (t.tls ?? (await selfSignedTls(cfg.listen.host))) : undefined;
      const listener = await listenChat({
        socket: sock,
        ...cfg.listen,
        path: t.path,
        unixMode: t.unixMode,
        ...(tls ? { tls: { cert: tls.cert, key: tls.key } } : {}),
        handshakeTimeoutMs: t.handshakeTimeoutMs,
        logger: log,
        keepOpen: f.keepOpen === true,
      });
      // waiting for a peer, a signal ends the command at once (closing removes a Unix socket file)
      const whileWaiting = (signal: NodeJS.Signals) => {
        void listener.close();
        exitOnSignal(signal);
      };
      onSignal = whileWaiting;
      const unix = listener.address.family === 'unix';
      say(
        `listening on ${unix ? `unix:${listener.address.address}` : formatAddress(listener.address.address, listener.address.port)}${tls ? ' (TLS)' : ''}`,
      );
      if (tls)
        say(
          `TLS certificate${tls.selfSigned ? ' (self-signed, made at start)' : ''}: SHA-256 ${tls.fingerprint}; the peer can pin it with --tls --fingerprint ${tls.fingerprint}`,
        );
      if (!unix) warnIfReachable(log, listener.address.address);
      try {
        for (;;) {
          const { socket, options } = await listener.next();
          say(`peer ${peerName(socket, unix)} connected`);
          if (tracer) traceSocket(socket, tracer, peerName(socket, unix));
          const code = await converse(socket, options);
          if (code !== 'next') return code;
          onSignal = whileWaiting;
        }
      } finally {
        // --keep-open ended by a signal or an error: the listening socket (and the peers queued
        // on it) would otherwise keep the process alive after the exit code is set
        void listener.close();
      }
    }
    const { host, port } = cfg.connect!;
    const ct = cfg.clientTransport!;
    if (ct.tls?.insecure) log.warn({}, INSECURE_WARNING);
    const { socket, options, tls } = await connectChat({
      host,
      port,
      ...ct,
      family,
      connectTimeoutMs,
      retries,
      socketOptions: sock,
      onRetry: (err, attempt, delay) =>
        log.warn({}, `${explainError(err).summary}; retry ${attempt}/${retries} in ${delay} ms`),
    });
    say(
      `connected to ${ct.path !== undefined ? `unix:${ct.path}` : formatAddress(host, port)}${tls ? ' (TLS)' : ''}`,
    );
    if (tls) log.debug({ ...tls }, `TLS: ${formatTlsInfo(tls)}`);
    if (tracer)
      traceSocket(socket, tracer, ct.path !== undefined ? `unix:${ct.path}` : formatAddress(host, port));
    const code = await converse(socket, options);
    return code === 'next' ? 0 : code; // 'next' needs --listen --keep-open
  });
  stopSignals();
}
