// echo-chat: two terminals over one TCP connection. Full duplex in one process: stdin → socket,
// socket → stdout. On a TTY a readline prompt, and incoming text is printed above the line
// being typed (cleared, printed, prompt redrawn with the half-typed text); piped, raw bytes.
//
// Endings: the peer closes → `peer closed the connection`, exit 0. Ctrl-D → half-close (FIN)
// and keep printing until the peer closes. Ctrl-C → close, exit 130. A reset or a dead peer
// (keepalive / user timeout) → the explained error, exit 1.

import type { Socket } from 'node:net';
import { createInterface, type Interface } from 'node:readline';
import { connectChat, listenChat } from '../client/chat.js';
import { AccessControl, RateLimitedLog } from '../core/access.js';
import { explainError } from '../core/errors.js';
import {
  formatAddress,
  parseDuration,
  parseHost,
  parseInteger,
  parsePort,
  UsageError,
} from '../core/parse.js';
import { formatReport, type OptionReport } from '../core/sockopts.js';
import {
  addAccessFlags,
  addSocketOptionFlags,
  newProgram,
  resolveAccess,
  resolveSocketOptions,
  runCli,
  type SocketOptionFlags,
} from './common.js';

interface ChatFlags extends SocketOptionFlags {
  allow?: string[];
  deny?: string[];
  listen?: boolean;
  host?: string;
  port?: string;
  name?: string;
  connectTimeout: string;
  retry: string;
  verbose?: boolean;
}

export function buildChatProgram() {
  const cmd = newProgram(
    'echo-chat',
    'Chat between two terminals over one TCP connection (nc can be the other side)',
  )
    .argument('[host]', 'peer to connect to')
    .argument('[port]', 'peer port')
    .option('-l, --listen', 'wait for one peer instead of connecting')
    .option('-H, --host <addr>', 'with --listen: address to listen on', '127.0.0.1')
    .option('-p, --port <port>', 'with --listen: port (0 picks one and prints it)', '7007')
    .option('--name <name>', 'prefix your lines with `name: `')
    .option('--connect-timeout <dur>', 'give up on a connect after this long', '10s')
    .option('--retry <n>', 'retry a refused or timed-out connect, with backoff', '0')
    .option('-v, --verbose', 'report the socket options the kernel applied');
  addSocketOptionFlags(cmd, { listen: true });
  addAccessFlags(cmd);
  cmd.addHelpText(
    'after',
    `
Examples:
  terminal 1:  echo-chat --listen --port 7008
  terminal 2:  echo-chat 127.0.0.1 7008
  or with nc:  nc 127.0.0.1 7008   /   ncat -l 7008  +  echo-chat 127.0.0.1 7008
  dead peers:  echo-chat --keepalive 10s --keepalive-interval 2s --keepalive-count 3 HOST PORT`,
  );
  return cmd;
}

const say = (line: string) => process.stderr.write(`${line}\n`);

// One SIGINT handler for the whole run, installed before anything is printed (a peer that
// reacts to our output may signal us at once); each phase says what Ctrl-C means in it.
let onInterrupt: () => void = () => process.exit(130);

export async function runChatCli(argv: string[]): Promise<void> {
  process.on('SIGINT', () => onInterrupt());
  await runCli('echo-chat', async () => {
    const program = buildChatProgram();
    program.parse(argv, { from: 'user' });
    const f = program.opts<ChatFlags>();
    const [hostArg, portArg] = program.processedArgs as [string | undefined, string | undefined];
    const sock = resolveSocketOptions(f);
    const connectTimeout = parseDuration('--connect-timeout', f.connectTimeout, 1);
    const retries = parseInteger('--retry', f.retry, 0, 1000);
    let socket: Socket;
    let reports: OptionReport[];
    if (f.listen) {
      if (hostArg !== undefined)
        throw new UsageError('HOST', hostArg, 'not with --listen (use --host/--port)');
      const { allow, deny } = resolveAccess(f);
      const refusals = new RateLimitedLog({
        debug() {},
        info() {},
        error() {},
        warn: (_o, msg) => say(msg ?? ''),
      });
      const listener = await listenChat({
        ...sock,
        host: parseHost('--host', f.host!),
        port: parsePort('--port', f.port!),
        access: new AccessControl(allow, deny),
        onRefused: (ip, why) => refusals.warn(ip, {}, `refused ${ip}: ${why}`),
      });
      say(`listening on ${formatAddress(listener.address.address, listener.address.port)}`);
      ({ socket, options: reports } = await listener.peer);
      say(`peer ${formatAddress(socket.remoteAddress ?? '?', socket.remotePort ?? 0)} connected`);
    } else {
      if (hostArg === undefined || portArg === undefined) {
        throw new UsageError('HOST PORT', undefined, 'give both, or use --listen');
      }
      const host = parseHost('HOST', hostArg);
      const port = parsePort('PORT', portArg, { allowZero: false });
      ({ socket, options: reports } = await connectChat({
        host,
        port,
        connectTimeout,
        retries,
        socketOptions: sock,
        onRetry: (err, attempt, delay) =>
          say(`${explainError(err).summary}; retry ${attempt}/${retries} in ${delay} ms`),
      }));
      say(`connected to ${formatAddress(host, port)}`);
    }
    if (f.verbose) for (const r of reports) say(formatReport(r));
    return chat(socket, f.name);
  });
}

/** Run the conversation until it ends; resolves with the exit code. */
function chat(socket: Socket, name?: string): Promise<number> {
  return new Promise((resolve) => {
    const tty = process.stdin.isTTY === true && process.stdout.isTTY === true;
    let rl: Interface | undefined;
    let finished = false;
    let error: Error | undefined;
    let interrupted = false;

    const finish = (code: number) => {
      if (finished) return;
      finished = true;
      rl?.close();
      process.stdin.pause();
      process.stdin.unref?.();
      resolve(code);
    };

    // the peer's bytes → stdout; on a TTY, above the line being typed
    socket.on('data', (chunk: Buffer) => {
      if (!rl) {
        process.stdout.write(chunk);
        return;
      }
      process.stdout.write('\r\x1b[2K'); // clear the prompt line
      const text = chunk.toString();
      process.stdout.write(text.endsWith('\n') ? text : `${text}\n`);
      rl.prompt(true); // redraw the prompt and what was typed so far
    });
    socket.on('error', (err) => {
      error = err;
    });
    socket.on('end', () => {
      // the peer sent FIN: it will send nothing more
      if (rl) process.stdout.write('\r\x1b[2K');
      say('peer closed the connection');
      socket.end();
    });
    socket.on('close', () => {
      if (error) {
        say(`echo-chat: ${explainError(error).line}`);
        finish(1);
      } else {
        finish(interrupted ? 130 : 0);
      }
    });
    onInterrupt = () => {
      // Ctrl-C: close (FIN) and leave; a second one exits at once
      onInterrupt = () => process.exit(130);
      interrupted = true;
      socket.end();
      socket.destroySoon();
      finish(130);
    };

    if (tty) {
      rl = createInterface({
        input: process.stdin,
        output: process.stdout,
        prompt: name ? `${name}> ` : '> ',
      });
      rl.on('line', (line) => {
        socket.write(`${name ? `${name}: ` : ''}${line}\n`);
        rl!.prompt();
      });
      rl.on('SIGINT', () => onInterrupt());
      rl.on('close', () => {
        // Ctrl-D: half-close, keep printing until the peer closes
        if (!finished && !socket.writableEnded) {
          say('(you closed your side; waiting for the peer to close)');
          socket.end();
        }
        rl = undefined;
      });
      rl.prompt();
    } else {
      process.stdin.on('data', (d: Buffer) => {
        const out = name ? Buffer.from(prefixLines(d.toString(), name)) : d;
        if (!socket.write(out)) {
          process.stdin.pause();
          socket.once('drain', () => process.stdin.resume());
        }
      });
      process.stdin.once('end', () => socket.end()); // stdin EOF → FIN, keep reading
    }
  });
}

function prefixLines(text: string, name: string): string {
  return text.replace(/^(?=.)/gm, `${name}: `);
}
