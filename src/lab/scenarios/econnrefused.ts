// connect to a port nobody listens on → the kernel answers the SYN with RST.

import net from 'node:net';
import { constants } from 'node:os';
import { errorCode } from '../../core/errors.js';
import { closeFd, loadLibc, platformTable } from '../../core/libc.js';
import { sockaddr } from '../../core/listen.js';
import { Cleanup, Recorder, type ScenarioResult } from '../recorder.js';
import { closeServer, connectLocal, listenLocal, refusingPort } from '../util.js';

export async function econnrefused(): Promise<ScenarioResult> {
  const r = new Recorder(
    'econnrefused',
    'connect to a port with no listener',
    'a robust TCP client and server, watched on the wire; Linux socket programming basics',
  );
  r.dependsOn(['tcp_syn_retries']);
  const c = new Cleanup();
  try {
    const port = refusingPort(c);
    r.step(`nothing listens on 127.0.0.1:${port} (a socket holds it bound, never listening)`);
    r.snapshot('before connect', [port]);
    const t0 = performance.now();
    try {
      const s = await connectLocal(port);
      s.destroy();
      r.step('connected (unexpected)');
    } catch (err) {
      r.step(
        `connect fails after ${(performance.now() - t0).toFixed(1)} ms: ${errorCode(err)} (an RST, no waiting)`,
      );
      r.error(err);
      r.check('connect fails at once with ECONNREFUSED', errorCode(err) === 'ECONNREFUSED');
    }
    if (process.platform === 'linux') await connectAgain(r, c, port);
    return r.result();
  } finally {
    await c.run();
  }
}

/**
 * The tutorials: a failed connect leaves the socket unusable, close it and make a new one. POSIX
 * leaves the socket's state unspecified, so portable code does that (and Node makes a new
 * socket for every connect); Linux returns a TCP socket whose connect failed to CLOSE, and
 * connect() on the same descriptor works.
 */
async function connectAgain(r: Recorder, c: Cleanup, refused: number): Promise<void> {
  const libc = loadLibc();
  const server = net.createServer((s) => s.destroy());
  const open = await listenLocal(server);
  c.add(() => closeServer(server));
  const name = (e: number) => Object.entries(constants.errno).find(([, v]) => v === e)?.[0] ?? String(e);
  const fd = libc.socket(2 /* AF_INET */, platformTable().SOCK_STREAM, 0);
  c.add(() => closeFd(fd));
  const a = sockaddr('127.0.0.1', refused).addr;
  const first = libc.connect(fd, a, a.length) === 0 ? '0' : `-1 ${name(libc.errno())}`;
  const b = sockaddr('127.0.0.1', open).addr;
  const second = libc.connect(fd, b, b.length) === 0 ? '0' : `-1 ${name(libc.errno())}`;
  r.step(
    `one descriptor, blocking: connect() to :${refused} = ${first}; connect() again on the same descriptor to a listener on :${open} = ${second}`,
  );
  r.check(
    'Linux: after a refused connect the same socket can connect again (POSIX leaves it unspecified: portable code makes a new one)',
    first === '-1 ECONNREFUSED' && second === '0',
  );
}
