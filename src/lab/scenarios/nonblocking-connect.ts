// The tutorials' non-blocking connect, step by step on a raw descriptor: set O_NONBLOCK,
// connect() returns -1 with EINPROGRESS, wait until the socket is writable (poll), then read
// SO_ERROR to learn how it ended — 0 (connected), ECONNREFUSED, or, when nothing ever answers,
// our own timer runs out first. Node does exactly this under every net.connect(). Then, on the
// connected socket, send() to a peer that never reads until the send buffer is full: EAGAIN,
// never ENOBUFS. The sockaddr is built by hand, so its bytes show htons (2) and htonl (4).

import { constants } from 'node:os';
import { boundPort, closeFd, getIntOption, type Libc, loadLibc, platformTable } from '../../core/libc.js';
import { rawListenFd, sockaddr } from '../../core/listen.js';
import { Cleanup, Recorder, type ScenarioResult } from '../recorder.js';
import { connectLocal, holdingServer, refusingPort } from '../util.js';

const F_GETFL = 3;
const F_SETFL = 4;
const O_NONBLOCK = 0o4000;
const POLLOUT = 4;
// errno number → name; where two names share a number (EAGAIN/EWOULDBLOCK), the first, as strerror
const ERRNO = new Map<number, string>();
for (const [k, v] of Object.entries(constants.errno)) if (!ERRNO.has(v)) ERRNO.set(v, k);

interface Attempt {
  rc: string;
  writable: boolean;
  soError: string;
  ms: number;
  /** connected: bytes send() took before it failed (the peer never reads), and the errno then */
  filled?: { bytes: number; errno: string; short: number[]; zero: number };
}

/** One non-blocking connect (and, with `fill`, send() until the buffers are full). */
async function attempt(c: Libc, port: number, timeoutMs: number, fill = false): Promise<Attempt> {
  const { family, addr } = sockaddr('127.0.0.1', port);
  const fd = c.socket(family, platformTable().SOCK_STREAM, 0);
  try {
    c.fcntl(fd, F_SETFL, 'int', c.fcntl(fd, F_GETFL, 'int', 0) | O_NONBLOCK);
    const t0 = performance.now();
    const rc = c.connect(fd, addr, addr.length) === 0 ? '0' : `-1 ${ERRNO.get(c.errno()) ?? c.errno()}`;
    const pfd = Buffer.alloc(8);
    pfd.writeInt32LE(fd, 0);
    pfd.writeInt16LE(POLLOUT, 4);
    let writable = false;
    // poll() with a zero timeout from the event loop, so the lab never blocks it
    while (performance.now() - t0 < timeoutMs) {
      if (c.poll(pfd, 1, 0) > 0) {
        writable = true;
        break;
      }
      await new Promise((r) => setTimeout(r, 5));
    }
    const e = writable ? getIntOption(fd, 'SO_ERROR') : -1;
    const a: Attempt = {
      rc,
      writable,
      soError: e < 0 ? '—' : e === 0 ? '0' : (ERRNO.get(e) ?? String(e)),
      ms: performance.now() - t0,
    };
    if (fill && e === 0) {
      // the peer never reads: fill its receive buffer and our send buffer (bounded loop)
      const chunk = Buffer.alloc(65536);
      let bytes = 0;
      // counts send() took short of the 64 KiB asked (a short write), and how often it returned 0
      const short: number[] = [];
      let zero = 0;
      for (let i = 0; i < 100_000; i++) {
        const n = Number(c.send(fd, chunk, chunk.length, 0));
        if (n < 0) {
          a.filled = { bytes, errno: ERRNO.get(c.errno()) ?? String(c.errno()), short, zero };
          break;
        }
        if (n === 0) zero++;
        else if (n < chunk.length) short.push(n);
        bytes += n;
      }
    }
    return a;
  } finally {
    closeFd(fd);
  }
}

export async function nonblockingConnect({ timeoutMs = 1000 } = {}): Promise<ScenarioResult> {
  const r = new Recorder(
    'nonblocking-connect',
    'O_NONBLOCK, EINPROGRESS, wait for writable, read SO_ERROR',
    'Linux socket programming basics',
  );
  r.dependsOn(
    ['tcp_syn_retries'],
    [
      'a signal caught while accept(), recv() or a blocking send() waits: with SA_RESTART the kernel restarts the call, without it the call fails with EINTR and C code loops to retry it; a send() or recv() that already moved bytes returns that short count instead, SA_RESTART or not; Node’s sockets are non-blocking and libuv retries EINTR itself, so Node code never sees it (echo-lab eintr shows each)',
    ],
  );
  const cl = new Cleanup();
  try {
    if (process.platform !== 'linux') return r.result('the raw descriptor steps are written for Linux');
    const c = loadLibc();
    const { port: open } = await holdingServer(cl, { read: false }); // never reads
    const closedPort = refusingPort(cl);
    const fd = rawListenFd({ host: '127.0.0.1', port: 0, backlog: 1, reuseAddr: true, reusePort: false });
    cl.add(() => closeFd(fd));
    const full = boundPort(fd);
    r.usePort(open, closedPort, full);
    for (let i = 0; i < 2; i++) {
      const s = await connectLocal(full);
      cl.add(() => s.destroy());
    }
    const { addr } = sockaddr('127.0.0.1', open);
    r.step(
      `sockaddr_in for 127.0.0.1:${open}: port → htons → ${addr.subarray(2, 4).toString('hex').replace(/(..)/g, '$1 ').trim()} (2 bytes, big-endian), address → htonl → ${addr.subarray(4, 8).toString('hex').replace(/(..)/g, '$1 ').trim()} (4 bytes)`,
    );
    for (const [what, port, want] of [
      ['a listening port', open, '0'],
      ['a port nobody listens on', closedPort, 'ECONNREFUSED'],
      ['a listener whose queue is full (SYNs dropped)', full, '—'],
    ] as const) {
      const a = await attempt(c, port, timeoutMs, port === open);
      r.step(
        `${what}: connect() = ${a.rc}; ${a.writable ? `writable after ${a.ms.toFixed(1)} ms` : `not writable within ${timeoutMs} ms: our timer ends it`}; SO_ERROR = ${a.soError}`,
      );
      r.check(`${what}: connect() returns -1 EINPROGRESS at once`, a.rc === '-1 EINPROGRESS');
      r.check(
        `${what}: SO_ERROR says ${want === '—' ? 'nothing: it never became writable' : want}`,
        a.soError === want,
      );
      if (port === open) {
        r.step(
          `connected, to a peer that never reads: send() took ${a.filled?.bytes ?? '?'} bytes (its receive buffer and our send buffer), then -1 ${a.filled?.errno ?? '?'}`,
        );
        r.check(
          'a full send buffer on a non-blocking socket is EAGAIN, not ENOBUFS',
          a.filled?.errno === 'EAGAIN',
        );
        r.step(
          `short writes: send() took less than the 65536 bytes asked ${a.filled?.short.length ?? 0} time(s) (${(a.filled?.short ?? []).slice(0, 4).join(', ')}) before EAGAIN, and returned 0 ${a.filled?.zero ?? 0} times — a count short of what was asked is normal and the rest must be sent again; 0 is never a TCP send()'s answer. A blocking send() waits for room instead (and only a signal or SO_SNDTIMEO makes it return short); Node's write() queues what the kernel did not take and sends it when the socket is writable`,
        );
        r.check(
          'send() returned a short count before EAGAIN, and never 0',
          (a.filled?.short.length ?? 0) > 0 && a.filled?.zero === 0,
        );
      }
    }
    return r.result();
  } finally {
    await cl.run();
  }
}
