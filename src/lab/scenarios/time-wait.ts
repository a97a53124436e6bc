// restart a server right after it closed connections first. The side that
// closes first keeps the connection in TIME_WAIT (2×MSL, 60 s on Linux); binding the port
// again without SO_REUSEADDR fails with EADDRINUSE, with it (Node's default) it works.
import net from 'node:net';
import { errorCode } from '../../core/errors.js';
import { listenTcp } from '../../core/listen.js';
import { LINUX_FACTS } from '../../core/sysctl.js';
import { Cleanup, Recorder, type ScenarioResult } from '../recorder.js';
import { closeServer, connectLocal, listenLocal, waitFor } from '../util.js';

export async function timeWait(): Promise<ScenarioResult> {
  const r = new Recorder(
    'time-wait',
    'restart after an active close, with and without SO_REUSEADDR',
    'bind errors in a one-to-one client/server; a first TCP client and server; port reuse and a process-per-client server',
  );
  r.needsTimeWait();
  r.dependsOn(['tcp_timestamps', 'tcp_tw_reuse'], [LINUX_FACTS.timeWait]);
  const c = new Cleanup();
  try {
    // echoes the first message, then closes first (active close)
    const server = net.createServer({ allowHalfOpen: true }, (s) => s.once('data', (d: Buffer) => s.end(d)));
    const port = await listenLocal(server);
    r.step(`server on 127.0.0.1:${port} echoes a client's first message, then closes first (active close)`);
    const client = await connectLocal(port, { allowHalfOpen: true });
    c.add(() => client.destroy());
    client.resume();
    client.write('hello\n');
    await waitFor(client, 'end');
    client.end();
    await waitFor(client, 'close');
    await closeServer(server);
    r.step('client closed too; the server process stops listening (as if it exited)');
    const tw = await r.settle(
      'after the server is gone',
      [port],
      (es) => es.some((e) => e.state === 'TIME_WAIT'),
      (e) => e.localPort === port,
    );
    r.check(
      'the server side of the connection is in TIME_WAIT',
      tw.some((e) => e.state === 'TIME_WAIT'),
    );

    const strict = net.createServer();
    try {
      await listenTcp(strict, { host: '127.0.0.1', port, reuseAddr: false });
      c.add(() => closeServer(strict));
      r.step('restart without SO_REUSEADDR succeeded (unexpected)');
      r.check('restart without SO_REUSEADDR fails', false);
    } catch (err) {
      r.step(`restart without SO_REUSEADDR: bind fails with ${errorCode(err)}`);
      r.error(err);
      r.check('restart without SO_REUSEADDR fails with EADDRINUSE', errorCode(err) === 'EADDRINUSE');
    }
    const again = net.createServer();
    try {
      await listenTcp(again, { host: '127.0.0.1', port });
      r.step('restart with SO_REUSEADDR (Node and echo-server default): listening again at once');
      r.check('restart with SO_REUSEADDR succeeds', true);
      await closeServer(again);
    } catch (err) {
      r.error(err);
      r.check('restart with SO_REUSEADDR succeeds', false);
    }
    return r.result();
  } finally {
    await c.run();
  }
}
