// Writes on a net.Socket straight through its TCP handle, past the Writable stream: one
// WriteWrap and one handle.writeBuffer() per chunk (what net does underneath), without the
// stream's per-write state, callbacks and next-tick completion. For a forwarder that passes
// each chunk on as it comes and waits for a write that is not taken at once before it writes
// again. The kernel orders these writes with the socket's own (libuv keeps one queue per
// handle), and the handle counts them in bytesWritten as it counts net's.
//
// It uses process.binding('stream_wrap') (WriteWrap, streamBaseState, kLastWriteWasAsync),
// which Node 20 and 24 still allow, and net.Socket's `_handle` and `_unrefTimer()`.
// directWriteUsable() checks the whole path once per process on a loopback pair; where the
// check fails, or with ECHO_DIRECT_WRITE=0, writeDirect() always says no and callers write().

import net from 'node:net';
import util from 'node:util';

interface Req {
  handle?: object;
  oncomplete?: (status: number) => void;
  buffer?: Uint8Array;
  socket?: Inner;
  done?: (ok: boolean) => void;
}
interface Binding {
  WriteWrap: new () => Req;
  state: Int32Array;
  kLastWriteWasAsync: number;
}
interface Handle {
  writeBuffer(req: Req, buf: Uint8Array): number;
}
type Inner = net.Socket & {
  _handle?: Handle | null;
  _unrefTimer?: () => void;
  connecting: boolean;
  encrypted?: boolean;
};

let bindingCache: Binding | null | undefined;
function binding(): Binding | null {
  if (bindingCache !== undefined) return bindingCache;
  bindingCache = null;
  try {
    const bind = (process as unknown as { binding?: (m: string) => Record<string, unknown> }).binding;
    const b = bind?.call(process, 'stream_wrap');
    if (
      b &&
      typeof b.WriteWrap === 'function' &&
      b.streamBaseState instanceof Int32Array &&
      typeof b.kLastWriteWasAsync === 'number'
    )
      bindingCache = {
        WriteWrap: b.WriteWrap as Binding['WriteWrap'],
        state: b.streamBaseState,
        kLastWriteWasAsync: b.kLastWriteWasAsync,
      };
  } catch {
    // no process.binding, or it refuses stream_wrap: write() stays
  }
  return bindingCache;
}

/** Off with ECHO_DIRECT_WRITE=0, to compare both paths on one build. */
export const directWriteEnabled = () => process.env.ECHO_DIRECT_WRITE !== '0';

/** Writes made by writeDirect() in this process: taken at once, and not (for tests and profiles). */
export const directWrites = { sent: 0, pending: 0 };

/** set by directWriteUsable(): whether writeDirect() may write in this process */
let usable = false;

function writeError(errno: number): NodeJS.ErrnoException {
  let code: string;
  try {
    code = util.getSystemErrorName(errno);
  } catch {
    code = `E${-errno}`;
  }
  const err = new Error(`write ${code}`) as NodeJS.ErrnoException;
  err.errno = errno;
  err.code = code;
  err.syscall = 'write';
  return err;
}

function afterDirectWrite(this: Req, status: number): void {
  const socket = this.socket!;
  const done = this.done!;
  this.socket = undefined;
  this.buffer = undefined;
  this.done = undefined;
  // a close cancels what waits (ECANCELED): the socket is gone already
  if (socket.destroyed) done(false);
  else if (status < 0) {
    socket.destroy(writeError(status));
    done(false);
  } else {
    socket._unrefTimer?.();
    done(true);
  }
}

/**
 * Write `chunk` on `socket` through its handle. 'sent': the kernel took all of it. 'pending':
 * part of it waits in libuv, holding `chunk`; `done(true)` once it is taken, `done(false)` if
 * the write failed (the socket is destroyed with the error) or the socket closed first; no
 * write may follow until then. undefined: nothing was written (not usable here, a TLS or
 * connecting socket, one with writes queued in its stream, ended, destroyed, corked):
 * the caller writes through write(). A write that fails at once destroys the socket with its
 * error (on the next tick, as net does) and says 'sent'.
 */
export function writeDirect(
  socket: net.Socket,
  chunk: Buffer,
  done: (ok: boolean) => void,
): 'sent' | 'pending' | undefined {
  if (!usable) return undefined;
  const s = socket as Inner;
  const h = s._handle;
  if (
    !h ||
    s.encrypted ||
    s.connecting ||
    s.destroyed ||
    s.writableEnded ||
    s.writableLength !== 0 ||
    s.writableCorked !== 0 ||
    typeof s._unrefTimer !== 'function' ||
    !(s instanceof net.Socket)
  )
    return undefined;
  const b = bindingCache!;
  const req = new b.WriteWrap();
  req.handle = h;
  req.oncomplete = afterDirectWrite;
  req.socket = s;
  req.done = done;
  req.buffer = chunk; // kept alive while libuv holds it
  const err = h.writeBuffer(req, chunk);
  s._unrefTimer();
  if (err) {
    process.nextTick(() => {
      if (!socket.destroyed) socket.destroy(writeError(err));
    });
    return 'sent';
  }
  if (b.state[b.kLastWriteWasAsync]) {
    directWrites.pending++;
    return 'pending';
  }
  directWrites.sent++;
  return 'sent';
}

let check: Promise<boolean> | undefined;

/**
 * Whether writeDirect() may write in this process: not with ECHO_DIRECT_WRITE=0, nor where
 * the check fails. The check (once per process, loopback): a small write taken at once, then
 * 1 MiB writes until one cannot be taken at once (the reader waits until then), then end()
 * with a last chunk once it was; the reader must get every byte in order, and bytesWritten
 * count them.
 */
export function directWriteUsable(): Promise<boolean> {
  if (!directWriteEnabled() || !binding()) return Promise.resolve(false);
  check ??= runCheck().then(
    (ok) => {
      usable = ok;
      return ok;
    },
    () => false,
  );
  return check;
}

function runCheck(): Promise<boolean> {
  return new Promise((resolve) => {
    const small = Buffer.from('direct-write check\n');
    // 1 MiB pieces, each filled with its own byte, until one is not taken at once (at most 32)
    const piece = (k: number) => Buffer.alloc(1024 * 1024, k);
    const sent: Buffer[] = [small];
    const tail = Buffer.from('tail');
    const got: Buffer[] = [];
    let settled = false;
    // the peer reads only once a write waits: it cannot be taken at once while nobody reads
    let peer: net.Socket | undefined;
    let written = false;
    const read = () => {
      if (peer && written) peer.resume();
    };
    const server = net.createServer({ pauseOnConnect: true }, (p) => {
      peer = p;
      p.on('data', (d) => got.push(d));
      p.on('end', () => finish(Buffer.concat(got).equals(Buffer.concat([...sent, tail]))));
      p.on('error', () => finish(false));
      read();
    });
    const timer = setTimeout(() => finish(false), 5000);
    let client: net.Socket | undefined;
    const finish = (ok: boolean) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      client?.destroy();
      peer?.destroy();
      server.close();
      resolve(ok);
    };
    server.on('error', () => finish(false));
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as net.AddressInfo;
      client = net.connect(port, '127.0.0.1', () => {
        const c = client!;
        usable = true; // for the check's own writes
        let how = writeDirect(c, small, () => finish(false));
        if (how !== 'sent') {
          usable = false;
          return finish(false);
        }
        const whenTaken = (ok: boolean) => {
          const bytes = sent.reduce((n, b) => n + b.length, 0);
          if (!ok || c.bytesWritten !== bytes) return finish(false);
          c.end(tail);
        };
        for (let k = 1; k <= 32 && how === 'sent'; k++) {
          const b = piece(k);
          how = writeDirect(c, b, whenTaken);
          if (how) sent.push(b);
        }
        usable = false; // until the check says so
        if (how !== 'pending') return finish(false);
        written = true;
        read();
      });
      client.on('error', () => finish(false));
    });
  });
}
