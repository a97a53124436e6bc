// echo-chat's sockets and relay: one side listens for exactly one peer and then stops
// listening (the classic peer-to-peer chat); the other connects. Raw bytes on the wire, no
// framing, so nc, ncat or socat can be either side. relayChat() runs the conversation:
// input → socket, socket → output, full duplex, with nc's half-close rules.

import net, { type AddressInfo, type Socket } from 'node:net';
import { createInterface, type Interface } from 'node:readline';
import type { Readable, Writable } from 'node:stream';
import type { AccessControl } from '../core/access.js';
import { Admission } from '../core/admission.js';
import { type ConnectResult, connectTcp, withRetry } from '../core/connect.js';
import { explainError } from '../core/errors.js';
import { listenSocket } from '../core/listen.js';
import { type Logger, silentLogger } from '../core/log.js';
import { applySocketOptions, type OptionReport, type SocketOptions } from '../core/sockopts.js';
import { TerminalText } from '../core/terminal.js';
import { acceptTls, type ClientTls, serverSecureContext } from '../core/tls.js';

export interface ChatListenOptions {
  host?: string;
  /** a Unix-domain socket (path or @name) instead of host and port */
  path?: string;
  unixMode?: number;
  /** TLS with this certificate and key (PEM) */
  tls?: { cert: string; key: string };
  /** the TLS handshake must be done within this (ms, default 10 000) */
  handshakeTimeoutMs?: number;
  /** options of the listening socket and of the peer's */
  socket?: SocketOptions;
  port?: number;
  /** --allow / --deny: a refused peer is closed at once and the listener keeps waiting */
  access?: AccessControl;
  /** where refusals are logged (once per source per 10 s) */
  logger?: Logger;
}

export interface ChatListener {
  readonly address: AddressInfo;
  /**
   * The next peer. Without `keepOpen` there is one: the listening socket closes as soon as it
   * arrives (a chat is one to one). With `keepOpen` the socket stays open and peers who come
   * during a conversation wait, unread, for the next call (at most `backlog` of them).
   */
  next(): Promise<{ socket: Socket; options: OptionReport[] }>;
  /** the first peer (the same as the first next()) */
  readonly peer: Promise<{ socket: Socket; options: OptionReport[] }>;
  /** Stop listening; peers still waiting and refused peers not yet gone are closed at once. */
  close(): Promise<void>;
}

export async function listenChat(o: ChatListenOptions & { keepOpen?: boolean } = {}): Promise<ChatListener> {
  const sock = o.socket ?? {};
  const backlog = sock.backlog ?? 1;
  const server = net.createServer({ allowHalfOpen: true, pauseOnConnect: o.keepOpen === true });
  const address = await listenSocket(server, {
    host: o.host ?? '127.0.0.1',
    port: o.port ?? 7007,
    path: o.path,
    unixMode: o.unixMode,
    backlog,
    reuseAddr: sock.reuseAddr,
    reusePort: sock.reusePort,
  });
  // the same gate as echo-server's
  const admission = new Admission({ access: o.access, logger: o.logger ?? silentLogger, fdPerConnection: 0 });
  const arrived: Socket[] = [];
  const takers: { resolve: (s: Socket) => void; reject: (e: Error) => void }[] = [];
  let failed: Error | undefined;
  server.on('connection', (socket: Socket) => {
    const release = admission.admit(socket);
    if (!release) return;
    socket.once('close', release);
    if (!o.keepOpen) server.close(); // one peer: stop listening at once
    const t = takers.shift();
    if (t) return t.resolve(socket);
    if (arrived.length >= backlog) {
      release();
      admission.refuse(socket, 'queue-full', `a conversation is going on and ${arrived.length} more wait`);
      return;
    }
    socket.on('error', () => {});
    arrived.push(socket);
  });
  server.on('error', (err) => {
    failed = err;
    for (const t of takers.splice(0)) t.reject(err);
  });
  const context = o.tls ? serverSecureContext(o.tls) : undefined;
  const next = async (): Promise<{ socket: Socket; options: OptionReport[] }> => {
    const socket = await new Promise<Socket>((resolve, reject) => {
      for (let s = arrived.shift(); s; s = arrived.shift()) if (!s.destroyed) return resolve(s);
      if (failed) return reject(failed);
      if (!server.listening && !o.keepOpen && first)
        return reject(new Error('this chat listener took its one peer'));
      takers.push({ resolve, reject });
    });
    if (socket.isPaused()) socket.resume();
    let options: OptionReport[];
    try {
      options = applySocketOptions(socket, sock);
    } catch (err) {
      socket.destroy();
      throw err;
    }
    if (!context) return { socket, options };
    const t = acceptTls(socket, context, { handshakeTimeoutMs: o.handshakeTimeoutMs });
    try {
      await new Promise<void>((resolve, reject) => {
        t.once('secure', resolve);
        t.once('error', reject);
        t.once('close', () => reject(new Error('the peer closed before the TLS handshake was done')));
      });
    } catch (err) {
      t.destroy();
      if (!o.keepOpen) throw err;
      // with --keep-open a failed handshake costs that peer only: say why, wait for the next
      (o.logger ?? silentLogger).warn(
        {},
        `a peer's TLS handshake failed: ${explainError(err, { role: 'server' }).line}`,
      );
      return next();
    }
    return { socket: t, options };
  };
  let first: Promise<{ socket: Socket; options: OptionReport[] }> | undefined;
  first = next();
  first.catch(() => {});
  let taken = false;
  return {
    address,
    peer: first,
    next: () => {
      if (!taken) {
        taken = true;
        return first!;
      }
      return next();
    },
    close: () => {
      // peers waiting, unread, for a conversation would keep the process alive, and so would
      // refused ones still read and dropped until their FIN (for up to REFUSED_LINGER_MS)
      for (const s of arrived.splice(0)) s.destroy();
      admission.endLingering();
      return new Promise<void>((resolve) => (server.listening ? server.close(() => resolve()) : resolve()));
    },
  };
}

export interface ChatConnectOptions {
  host: string;
  port: number;
  path?: string;
  tls?: ClientTls;
  family?: 4 | 6;
  connectTimeoutMs?: number;
  retries?: number;
  socketOptions?: SocketOptions;
  onRetry?: (err: unknown, attempt: number, delayMs: number) => void;
}

/** Library: connect to a chat peer (an echo-chat --listen, nc -l, anything TCP). */
export async function connectChat(o: ChatConnectOptions): Promise<ConnectResult> {
  return withRetry(
    () =>
      connectTcp({
        host: o.host,
        port: o.port,
        path: o.path,
        tls: o.tls,
        family: o.family,
        connectTimeoutMs: o.connectTimeoutMs,
        socketOptions: o.socketOptions,
      }),
    { retries: o.retries ?? 0, onRetry: o.onRetry },
  );
}

/**
 * On a terminal, the most of a peer's unfinished line held back (UTF-16 units of escaped
 * text): a longer line is shown in pieces of this size, so memory and work stay linear in
 * what arrives however long a line the peer sends.
 */
export const CHAT_PIECE = 4096;

const isHighSurrogate = (c: number) => c >= 0xd800 && c <= 0xdbff;

/** `t` with a newline put into each line longer than CHAT_PIECE, every CHAT_PIECE units (a surrogate pair stays whole). */
export function inPieces(t: string): string {
  if (t.length <= CHAT_PIECE) return t;
  let out = '';
  let pos = 0;
  while (pos < t.length) {
    const nl = t.indexOf('\n', pos);
    const end = nl < 0 ? t.length : nl;
    while (end - pos > CHAT_PIECE) {
      let n = CHAT_PIECE;
      if (isHighSurrogate(t.charCodeAt(pos + n - 1))) n--;
      out += `${t.slice(pos, pos + n)}\n`;
      pos += n;
    }
    out += t.slice(pos, nl < 0 ? end : end + 1);
    pos = end + 1;
  }
  return out;
}

export interface RelayOptions {
  socket: Socket;
  input: Readable;
  output: Writable;
  /**
   * A person at a terminal: a readline prompt on `output`, and the peer's text printed above
   * the line being typed, decoded as UTF-8 and with control characters made visible. Otherwise
   * raw bytes both ways.
   */
  tty?: boolean;
  /** prefix each of our lines with `name: ` (and the prompt is `name> `) */
  name?: string;
  /** status lines (`peer closed the connection`…); the caller decides where they go */
  status?: (line: string) => void;
}

export type RelayEnd =
  | { how: 'closed' }
  /** our output was closed (`| head`): we stopped, nothing is wrong */
  | { how: 'output closed' }
  | { how: 'interrupted' }
  | { how: 'error'; error: Error };

export interface Relay {
  /** resolves once the connection is closed both ways */
  done: Promise<RelayEnd>;
  /** Ctrl-C: close our side (FIN) and stop */
  interrupt(): void;
}

/**
 * Run a chat over `socket`, as nc's readwrite(): input EOF → half-close (FIN) and keep
 * printing; the peer's FIN → on a terminal, the conversation is over (we close too); piped,
 * the rest of the input is still sent to its end, then we close, as ncat does (nc -N / -q
 * decide the same question for nc).
 */
export function relayChat(o: RelayOptions): Relay {
  const { socket, input, output } = o;
  const status = o.status ?? (() => {});
  let rl: Interface | undefined;
  let end: RelayEnd | undefined;
  let inputEnded = false;
  let peerEnded = false;
  let resolveDone!: (e: RelayEnd) => void;
  const done = new Promise<RelayEnd>((r) => {
    resolveDone = r;
  });
  let detachInput = () => {};
  const finish = (e: RelayEnd) => {
    end ??= e;
    clearTimeout(flushTimer);
    rl?.close();
    input.pause();
    detachInput(); // --keep-open: the next conversation reads the same input
    resolveDone(end);
  };
  const text = o.tty ? new TerminalText() : undefined;
  // On a terminal, whole lines are printed above the prompt; a line still arriving is held
  // (briefly: a peer may never send its newline) so that it is not cut in two on screen, and
  // at most CHAT_PIECE of it: beyond that it is shown in pieces, each on a line of its own.
  let partial = '';
  let flushTimer: NodeJS.Timeout | undefined;
  const printAbovePrompt = (t: string) => {
    output.write('\r\x1b[2K'); // clear the prompt line
    const more = output.write(t.endsWith('\n') ? t : `${t}\n`);
    rl?.prompt(true); // redraw the prompt and what was typed so far
    if (!more && !socket.isPaused()) {
      // a slow output: stop reading the peer until it has taken what it has
      socket.pause();
      output.once('drain', () => socket.resume());
    }
  };
  // `final`: the peer is done, so bytes of a character still incomplete are shown as U+FFFD;
  // before that they stay in the decoder for the next chunk
  const flushPartial = (final = false) => {
    clearTimeout(flushTimer);
    flushTimer = undefined;
    const t = partial + (final ? (text?.end() ?? '') : '');
    partial = '';
    if (t) printAbovePrompt(t);
  };

  socket.on('data', (chunk: Buffer) => {
    if (!rl || !text) {
      output.write(chunk);
      return;
    }
    // only the new text is searched and joined: the held part is bounded, so each chunk costs
    // its own length, not that of the line so far
    const t = text.write(chunk);
    const cut = t.lastIndexOf('\n') + 1;
    let show = '';
    if (cut > 0) {
      show = partial + t.slice(0, cut);
      partial = t.slice(cut);
    } else partial += t;
    if (partial.length > CHAT_PIECE) {
      // what is beyond the bound is shown now, in pieces; the last piece (at most CHAT_PIECE) waits
      let n = Math.floor((partial.length - 1) / CHAT_PIECE) * CHAT_PIECE;
      if (isHighSurrogate(partial.charCodeAt(n - 1))) n--;
      show += `${partial.slice(0, n)}\n`;
      partial = partial.slice(n);
    }
    if (show) printAbovePrompt(inPieces(show));
    clearTimeout(flushTimer);
    flushTimer = partial ? setTimeout(() => flushPartial(), 200) : undefined;
  });
  let error: Error | undefined;
  socket.on('error', (err) => {
    error = err;
  });
  socket.on('end', () => {
    peerEnded = true;
    if (rl) {
      flushPartial(true);
      output.write('\r\x1b[2K');
    }
    status('peer closed the connection');
    // a terminal's conversation ends with the peer; piped input is still sent to its end
    if (o.tty || inputEnded) socket.end();
  });
  socket.on('close', () => {
    if (error) finish({ how: 'error', error });
    else finish(end ?? { how: 'closed' });
  });
  output.on('error', (err: NodeJS.ErrnoException) => {
    // the reader of our output left (EPIPE): stop quietly, as cat does
    end ??= err.code === 'EPIPE' ? { how: 'output closed' } : { how: 'error', error: err };
    socket.destroy();
  });

  if (o.tty) {
    const prefix = o.name ? `${o.name}: ` : '';
    rl = createInterface({ input, output, prompt: o.name ? `${o.name}> ` : '> ' });
    rl.on('line', (line) => {
      socket.write(`${prefix}${line}\n`);
      rl?.prompt();
    });
    rl.on('SIGINT', () => interrupt());
    rl.on('close', () => {
      // Ctrl-D: half-close, keep printing until the peer closes
      if (!end && !socket.writableEnded && !peerEnded) {
        status('(you closed your side; waiting for the peer to close)');
        socket.end();
      }
      rl = undefined;
    });
    rl.prompt();
  } else {
    let pending = '';
    const onInput = (d: Buffer) => {
      let out: Buffer = d;
      if (o.name) {
        // prefix whole lines only: a line split across reads gets one prefix
        const lines = (pending + d.toString('latin1')).split('\n');
        pending = lines.pop()!;
        out = Buffer.from(lines.map((l) => `${o.name}: ${l}\n`).join(''), 'latin1');
      }
      if (!socket.write(out)) {
        input.pause();
        socket.once('drain', () => input.resume());
      }
    };
    input.on('data', onInput);
    const onInputEnd = () => {
      inputEnded = true;
      if (o.name && pending) socket.write(Buffer.from(`${o.name}: ${pending}`, 'latin1'));
      socket.end(); // input EOF → FIN, keep reading until the peer closes
    };
    // an input that ended in an earlier conversation (--keep-open) ends this one's side at once
    if (input.readableEnded) onInputEnd();
    else input.once('end', onInputEnd);
    detachInput = () => {
      input.off('data', onInput);
      input.off('end', onInputEnd);
    };
    // a previous conversation paused it: adding a 'data' listener does not undo an explicit pause
    input.resume();
  }

  const interrupt = () => {
    end ??= { how: 'interrupted' };
    socket.end();
    socket.destroySoon();
    finish(end);
  };
  return { done, interrupt };
}
