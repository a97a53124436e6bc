// the peer aborts with RST (SO_LINGER 0 / resetAndDestroy) → ECONNRESET on read.

import { errorCode } from '../../core/errors.js';
import { Cleanup, Recorder, type ScenarioResult } from '../recorder.js';
import { connectedPair, waitFor } from '../util.js';

export async function econnreset(): Promise<ScenarioResult> {
  const r = new Recorder(
    'econnreset',
    'the peer resets the connection (RST)',
    'Linux socket programming basics',
  );
  r.dependsOn(
    [],
    ['a process that crashes or is killed sends FIN, not RST: its kernel closes its sockets normally'],
  );
  const c = new Cleanup();
  try {
    const { port, client, peer } = await connectedPair(c);
    r.step(`client connected to 127.0.0.1:${port}`);
    r.snapshot('connected', [port]);
    const failed = waitFor<[Error]>(client, 'error');
    client.resume();
    peer.resetAndDestroy();
    r.step('server calls resetAndDestroy(): SO_LINGER 0 then close() → RST instead of FIN');
    const [err] = await failed;
    r.step(`client read fails: ${errorCode(err)}`);
    r.error(err);
    r.check('the client sees ECONNRESET', errorCode(err) === 'ECONNRESET');
    r.snapshot('after the RST (no TIME_WAIT: an abort skips it)', [port]);
    return r.result();
  } finally {
    await c.run();
  }
}
