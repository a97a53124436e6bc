// a client that binds a fixed local port. After it closes first, that port sits
// in TIME_WAIT: a plain bind() of it fails with EADDRINUSE. Node binds with SO_REUSEADDR,
// and on loopback Linux may even reuse the TIME_WAIT pair (net.ipv4.tcp_tw_reuse).
import { readFileSync } from 'node:fs';
import net from 'node:net';
import { errorCode } from '../../core/errors.js';
import { closeFd } from '../../core/libc.js';
import { rawListenFd } from '../../core/listen.js';
import { Cleanup, Recorder, type ScenarioResult } from '../recorder.js';
import { closeServer, connectLocal, listenLocal, waitFor } from '../util.js';

function twReuse(): string {
  try {
    return readFileSync('/proc/sys/net/ipv4/tcp_tw_reuse', 'utf8').trim();
  } catch {
    return 'unknown';
  }
}

export async function clientPort(): Promise<ScenarioResult> {
  const r = new Recorder(
    'client-port',
    'a fixed client port reused while in TIME_WAIT',
    'Linux socket programming basics',
  );
  const c = new Cleanup();
  try {
    const server = net.createServer({ allowHalfOpen: true }, (s) => {
      s.resume();
      s.on('end', () => s.end());
    });
    const port = await listenLocal(server);
    c.add(() => closeServer(server));
    // a free local port for the client
    const probe = net.createServer();
    const localPort = await listenLocal(probe);
    await closeServer(probe);
    const client = await connectLocal(port, { localPort, allowHalfOpen: true });
    c.add(() => client.destroy());
    r.step(`client binds 127.0.0.1:${localPort} and connects to 127.0.0.1:${port}`);
    client.resume();
    client.end();
    await waitFor(client, 'close');
    r.step('client closes first (active close)');
    const tw = await r.settle(
      'after the client closed',
      [localPort],
      (es) => es.some((e) => e.state === 'TIME_WAIT'),
      (e) => e.localPort === localPort,
    );
    r.check(
      'the client port is in TIME_WAIT',
      tw.some((e) => e.state === 'TIME_WAIT'),
    );
    try {
      const fd = rawListenFd({
        host: '127.0.0.1',
        port: localPort,
        backlog: 0,
        reuseAddr: false,
        reusePort: false,
        bindOnly: true,
      });
      closeFd(fd);
      r.step('bind() without SO_REUSEADDR succeeded (unexpected)');
      r.check('bind() without SO_REUSEADDR fails', false);
    } catch (err) {
      r.step(`bind(${localPort}) without SO_REUSEADDR: ${errorCode(err)}`);
      r.error(err);
      r.check(
        'bind() of the port in TIME_WAIT without SO_REUSEADDR fails with EADDRINUSE',
        errorCode(err) === 'EADDRINUSE',
      );
    }
    try {
      const again = await connectLocal(port, { localPort });
      again.destroy();
      r.step(
        `Node binds with SO_REUSEADDR: connecting again from port ${localPort} works (tcp_tw_reuse = ${twReuse()})`,
      );
    } catch (err) {
      r.step(
        `connecting again from port ${localPort} with SO_REUSEADDR: ${errorCode(err)} (tcp_tw_reuse = ${twReuse()})`,
      );
      r.error(err);
    }
    return r.result();
  } finally {
    await c.run();
  }
}
