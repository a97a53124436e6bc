// The tutorials' non-blocking connect, step by step on a raw descriptor: set O_NONBLOCK,
// connect() returns -1 with EINPROGRESS, wait until the socket is writable (poll), then read
// SO_ERROR to learn how it ended — 0 (connected), ECONNREFUSED, or, when nothing ever answers,
// our own timer runs out first. Node does exactly this under every net.connect().

import net from 'node:net';
import { constants } from 'node:os';
import { boundPort, closeFd, getIntOption, type Libc, loadLibc, platformTable } from '../../core/libc.js';
import { rawListenFd, sockaddr } from '../../core/listen.js';
import { Cleanup, Recorder, type ScenarioResult } from '../recorder.js';
import { closeServer, connectLocal, listenLocal } from '../util.js';

const F_GETFL = 3;
const F_SETFL = 4;
const O_NONBLOCK = 0o4000;
const POLLOUT = 4;
const ERRNO = new Map(Object.entries(constants.errno).map(([k, v]) => [v, k]));

/** One non-blocking connect; returns what each step said. */
async function attempt(
  c: Libc,
  port: number,
  timeoutMs: number,
): Promise<{ rc: string; writable: boolean; soError: string; ms: number }> {
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
    return {
      rc,
      writable,
      soError: e < 0 ? '—' : e === 0 ? '0' : (ERRNO.get(e) ?? String(e)),
      ms: performance.now() - t0,
    };
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
  r.dependsOn(['tcp_syn_retries']);
  const cl = new Cleanup();
  try {
    if (process.platform !== 'linux') return r.result('the raw descriptor steps are written for Linux');
    const c = loadLibc();
    const server = net.createServer((s) => s.destroy());
    const open = await listenLocal(server);
    cl.add(() => closeServer(server));
    const probe = net.createServer(); // a port the kernel just gave out, closed again
    const closedPort = await listenLocal(probe);
    await closeServer(probe);
    const fd = rawListenFd({ host: '127.0.0.1', port: 0, backlog: 1, reuseAddr: true, reusePort: false });
    cl.add(() => closeFd(fd));
    const full = boundPort(fd);
    for (let i = 0; i < 2; i++) {
      const s = await connectLocal(full);
      cl.add(() => s.destroy());
    }
    for (const [what, port, want] of [
      ['a listening port', open, '0'],
      ['a port nobody listens on', closedPort, 'ECONNREFUSED'],
      ['a listener whose queue is full (SYNs dropped)', full, '—'],
    ] as const) {
      const a = await attempt(c, port, timeoutMs);
      r.step(
        `${what}: connect() = ${a.rc}; ${a.writable ? `writable after ${a.ms.toFixed(1)} ms` : `not writable within ${timeoutMs} ms: our timer ends it`}; SO_ERROR = ${a.soError}`,
      );
      r.check(`${what}: connect() returns -1 EINPROGRESS at once`, a.rc === '-1 EINPROGRESS');
      r.check(
        `${what}: SO_ERROR says ${want === '—' ? 'nothing: it never became writable' : want}`,
        a.soError === want,
      );
    }
    return r.result();
  } finally {
    await cl.run();
  }
}
