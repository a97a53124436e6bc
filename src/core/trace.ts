// Data traces (--trace): every chunk a connection reads or writes, with time, direction, peer
// and length, as socat -v prints it (text, non-printables escaped) or as ncat -x / xxd do
// (hex). Written to stderr or --trace-file, never to stdout, through an asynchronous sink
// that drops (and counts) rather than block when nobody reads it. Off, it costs nothing: the
// echo path is only wrapped on connections that are traced.

import { LossySink } from './sink.js';

export type TraceFormat = 'text' | 'hex';

export interface Tracer {
  /** `<` read from the peer, `>` written to it; `offset`: the stream position of data[0] */
  chunk(dir: '<' | '>', peer: string, data: Buffer, offset: number): void;
  /** one WebSocket message or control frame: `> text 5 B "hello"` (hex: its payload dumped) */
  message?(dir: '<' | '>', peer: string, kind: string, data: Buffer): void;
}

/** How much of a message's payload a text trace shows. */
const MESSAGE_SHOWN = 256;

/**
 * A message's payload quoted on one line: printable ASCII as is, `"` and `\` escaped, other
 * bytes as \xHH (text: as \u{…} for characters outside ASCII that are controls or
 * bidirectional, printable ones as they are); cut after MESSAGE_SHOWN bytes.
 */
export function quotePayload(data: Buffer, text: boolean): string {
  const shown = data.subarray(0, MESSAGE_SHOWN);
  let out = '';
  if (text) {
    for (const ch of shown.toString('utf8')) {
      const c = ch.codePointAt(0)!;
      if (ch === '"' || ch === '\\') out += `\\${ch}`;
      else if (ch === '\n') out += '\\n';
      else if (ch === '\r') out += '\\r';
      else if (ch === '\t') out += '\\t';
      else if (c < 0x20 || c === 0x7f) out += `\\x${c.toString(16).padStart(2, '0')}`;
      else if ((c >= 0x80 && c <= 0x9f) || /[\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]/.test(ch))
        out += `\\u{${c.toString(16)}}`;
      else out += ch;
    }
  } else {
    for (const b of shown) {
      if (b === 0x22 || b === 0x5c) out += `\\${String.fromCharCode(b)}`;
      else if (b >= 0x20 && b < 0x7f) out += String.fromCharCode(b);
      else out += `\\x${b.toString(16).padStart(2, '0')}`;
    }
  }
  return `"${out}"${data.length > MESSAGE_SHOWN ? `…(+${data.length - MESSAGE_SHOWN} B)` : ''}`;
}

const pad2 = (n: number) => String(n).padStart(2, '0');

/** `2026/11/23 16:50:01.123456`, as socat -v */
function stamp(): string {
  const t = performance.timeOrigin + performance.now();
  const d = new Date(Math.floor(t));
  const us = String(Math.floor((t % 1000) * 1000)).padStart(6, '0');
  return `${d.getFullYear()}/${pad2(d.getMonth() + 1)}/${pad2(d.getDate())} ${pad2(d.getHours())}:${pad2(d.getMinutes())}:${pad2(d.getSeconds())}.${us}`;
}

/** socat -v's escaping: printable ASCII as is, `\` doubled, `\n` shown and kept as a line end, others `\xHH`. */
export function escapeTrace(data: Buffer): string {
  let out = '';
  for (const b of data) {
    if (b === 0x5c) out += '\\\\';
    else if (b === 0x0a) out += '\\n\n';
    else if (b === 0x0d) out += '\\r';
    else if (b === 0x09) out += '\\t';
    else if (b >= 0x20 && b < 0x7f) out += String.fromCharCode(b);
    else out += `\\x${b.toString(16).padStart(2, '0')}`;
  }
  return out.endsWith('\n') ? out : `${out}\n`;
}

/** xxd's layout: `00000010: 6865 6c6c 6f0a …  hello.` with the stream offset. */
export function hexDump(data: Buffer, offset = 0): string {
  const lines: string[] = [];
  for (let i = 0; i < data.length; i += 16) {
    const row = data.subarray(i, i + 16);
    let hex = '';
    for (let j = 0; j < 16; j++) {
      hex += j < row.length ? row[j]!.toString(16).padStart(2, '0') : '  ';
      if (j % 2 === 1) hex += ' ';
    }
    const ascii = [...row].map((b) => (b >= 0x20 && b < 0x7f ? String.fromCharCode(b) : '.')).join('');
    lines.push(`${(offset + i).toString(16).padStart(8, '0')}: ${hex} ${ascii}`);
  }
  return `${lines.join('\n')}\n`;
}

/** Parse escapeTrace() output back into bytes (the tests check the trace is exact). */
export function unescapeTrace(text: string): Buffer {
  const out: number[] = [];
  for (let i = 0; i < text.length; i++) {
    const c = text[i]!;
    if (c === '\n') continue; // the line break after \n, or the trailing one
    if (c !== '\\') {
      out.push(c.charCodeAt(0));
      continue;
    }
    const n = text[++i];
    if (n === '\\') out.push(0x5c);
    else if (n === 'n') out.push(0x0a);
    else if (n === 'r') out.push(0x0d);
    else if (n === 't') out.push(0x09);
    else if (n === 'x') {
      out.push(Number.parseInt(text.slice(i + 1, i + 3), 16));
      i += 2;
    }
  }
  return Buffer.from(out);
}

export interface TraceSink {
  write(s: string): void;
}

/**
 * stderr (fd 2) or a file, written asynchronously; at most 4 MiB waits, beyond that drops. A
 * destination that fails (a full disk, a closed pipe) is given up: the trace is dropped from
 * then on and `onLost` is told once; the connections being traced are not held up.
 */
export function traceSink(file?: string, onLost?: (err: NodeJS.ErrnoException) => void): TraceSink {
  const sink = new LossySink({ ...(file ? { file } : { fd: 2 }), maxLength: 4 * 1024 * 1024 });
  if (onLost) {
    if (sink.lostError) onLost(sink.lostError);
    else sink.onLost = onLost;
  }
  return { write: (s) => sink.push(s) };
}

export function createTracer(format: TraceFormat, sink: TraceSink): Tracer {
  return {
    chunk(dir, peer, data, offset) {
      const head = `${dir} ${stamp()}  length=${data.length} from=${offset} to=${offset + data.length - 1}  ${dir === '<' ? 'from' : 'to'} ${peer}\n`;
      sink.write(head + (format === 'hex' ? hexDump(data, offset) : escapeTrace(data)));
    },
    message(dir, peer, kind, data) {
      const where = `${dir === '<' ? 'from' : 'to'} ${peer}`;
      if (format === 'hex') {
        sink.write(`${dir} ${stamp()}  ${kind} ${data.length} B  ${where}\n${hexDump(data)}`);
        return;
      }
      const body =
        data.length || kind === 'text' || kind === 'binary'
          ? ` ${quotePayload(data, kind === 'text' || kind === 'close')}`
          : '';
      sink.write(`${dir} ${kind} ${data.length} B${body}  ${where} ${stamp()}\n`);
    },
  };
}

/**
 * Trace a socket: its reads (a 'data' listener added first) and its writes (its write()
 * wrapped). Only the sockets traced pay for it.
 */
export function traceSocket(socket: import('node:net').Socket, tracer: Tracer, peer: string): void {
  let inOff = 0;
  let outOff = 0;
  socket.prependListener('data', (d: Buffer) => {
    tracer.chunk('<', peer, d, inOff);
    inOff += d.length;
  });
  const write = socket.write;
  socket.write = function (this: typeof socket, chunk: unknown, ...rest: unknown[]) {
    const b = typeof chunk === 'string' ? Buffer.from(chunk) : (chunk as Buffer);
    if (b?.length) {
      tracer.chunk('>', peer, b, outOff);
      outOff += b.length;
    }
    return (write as (...a: unknown[]) => boolean).call(this, chunk, ...rest);
  } as typeof socket.write;
}
