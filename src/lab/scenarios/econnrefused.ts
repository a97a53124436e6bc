// connect to a port nobody listens on → the kernel answers the SYN with RST.
import { errorCode } from '../../core/errors.js';
import { Cleanup, Recorder, type ScenarioResult } from '../recorder.js';
import { connectLocal, refusingPort } from '../util.js';

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
    return r.result();
  } finally {
    await c.run();
  }
}
