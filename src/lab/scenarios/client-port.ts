// A client that binds a fixed local port. After it closes first, that port sits in TIME_WAIT:
// a plain bind() of it fails with EADDRINUSE. With SO_REUSEADDR (Node's bind) the bind works,
// and connecting to the same server again works too when TCP timestamps are on (the new SYN's
// newer timestamp lets Linux take over the TIME_WAIT pair); with them off, EADDRNOTAVAIL.
// When the server closed first, the TIME_WAIT is the server's, and the reconnect succeeds.
import net from 'node:net';
import { errorCode } from '../../core/errors.js';
import { closeFd } from '../../core/libc.js';
import { rawListenFd } from '../../core/listen.js';
import { LINUX_FACTS, readSysctl } from '../../core/sysctl.js';
import { Cleanup, Recorder, type ScenarioResult } from '../recorder.js';
import { closeServer, connectLocal, listenLocal, waitFor } from '../util.js';

export async function clientPort(): Promise<ScenarioResult> {
  const r = new Recorder(
    'client-port',
    'a fixed client port reused while in TIME_WAIT',
    'Linux socket programming basics',
  );
  r.needsTimeWait();
  r.dependsOn(['tcp_timestamps', 'tcp_tw_reuse', 'ip_local_port_range'], [LINUX_FACTS.timeWait]);
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
        `Node binds with SO_REUSEADDR, so the bind succeeds; connecting again from port ${localPort} to the same server works: that very pair is in TIME_WAIT, and with TCP timestamps on (tcp_timestamps = ${readSysctl('tcp_timestamps') ?? '?'}) Linux lets a new SYN with a newer timestamp take it over. With timestamps off, connect() fails with EADDRNOTAVAIL. tcp_tw_reuse does not decide this: it is for ports the kernel picks.`,
      );
      r.check('reconnecting from the same port to the same server works (timestamps on)', true);
    } catch (err) {
      r.step(`connecting again from port ${localPort} with SO_REUSEADDR: ${errorCode(err)}`);
      r.error(err);
      r.check(
        'reconnecting from the same port works with timestamps on, fails with EADDRNOTAVAIL with them off',
        readSysctl('tcp_timestamps') === '0' && errorCode(err) === 'EADDRNOTAVAIL',
      );
    }
    // the tutorial's second case: this time the server closes first, so the TIME_WAIT is its own
    const firstServer = net.createServer((s) => s.end());
    const port2 = await listenLocal(firstServer);
    c.add(() => closeServer(firstServer));
    const second = await connectLocal(port2, { localPort });
    second.resume();
    await waitFor(second, 'close');
    r.step(
      `again from port ${localPort}, to a server on ${port2} that closes first (its side goes to TIME_WAIT)`,
    );
    await r.settle(
      'after the server closed first',
      [port2],
      (es) => es.some((e) => e.state === 'TIME_WAIT'),
      (e) => e.localPort === port2 && e.remotePort === localPort,
    );
    try {
      const third = await connectLocal(port2, { localPort });
      third.destroy();
      r.step(
        "reconnecting from the same client port succeeds: the server's TIME_WAIT socket accepts the new SYN",
      );
      r.check('when the server closed first, reconnecting from the same port succeeds', true);
    } catch (err) {
      r.error(err);
      r.check('when the server closed first, reconnecting from the same port succeeds', false);
    }
    return r.result();
  } finally {
    await c.run();
  }
}
