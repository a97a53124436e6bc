// a second server binds a port that a running server holds → EADDRINUSE.
import net from 'node:net';
import { errorCode } from '../../core/errors.js';
import { Cleanup, Recorder, type ScenarioResult } from '../recorder.js';
import { closeServer, listenLocal } from '../util.js';

export async function eaddrinuse(): Promise<ScenarioResult> {
  const r = new Recorder(
    'eaddrinuse',
    'a second listener on a port already in use',
    'bind errors in a one-to-one client/server; Linux socket programming basics',
  );
  r.dependsOn([], ['on Linux EADDRINUSE is errno 98 (macOS: 48)']);
  const c = new Cleanup();
  try {
    const first = net.createServer();
    const port = await listenLocal(first);
    c.add(() => closeServer(first));
    r.step(`server 1 listens on 127.0.0.1:${port}`);
    r.snapshot('while server 1 listens', [port]);
    const second = net.createServer();
    try {
      await listenLocal(second, port);
      c.add(() => closeServer(second));
      r.step('server 2 listened too (unexpected)');
    } catch (err) {
      r.step(`server 2 tries the same port: ${errorCode(err)}`);
      r.error(err);
      r.check('the second bind fails with EADDRINUSE', errorCode(err) === 'EADDRINUSE');
    }
    return r.result();
  } finally {
    await c.run();
  }
}
