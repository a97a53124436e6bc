// A server that never closes its side of a connection the client has closed leaks a socket in
// CLOSE_WAIT for as long as it runs: CLOSE_WAIT has no timer. The client's side, closed and
// orphaned in FIN_WAIT2, does expire: after tcp_fin_timeout (60 s by default) — shown live here
// with a per-socket TCP_LINGER2 of 2 s.

import { setIntOption, socketFd } from '../../core/libc.js';
import { LINUX_FACTS } from '../../core/sysctl.js';
import { Cleanup, Recorder, type ScenarioResult } from '../recorder.js';
import { connectLocal, holdingServer, waitFor } from '../util.js';

export async function closeWait({ linger2 = 2 } = {}): Promise<ScenarioResult> {
  const r = new Recorder(
    'close-wait',
    'a server that never closes: CLOSE_WAIT forever, the peer’s FIN_WAIT2 expires',
    'bind errors in a one-to-one client/server; Linux socket programming basics',
  );
  r.dependsOn(['tcp_fin_timeout'], [LINUX_FACTS.closeWait]);
  const c = new Cleanup();
  try {
    // reads to the end, then keeps its socket open: the classic missing close()
    const { port } = await holdingServer(c);
    const client = await connectLocal(port, { allowHalfOpen: true });
    const fd = socketFd(client);
    if (fd !== undefined) setIntOption(fd, 'TCP_LINGER2', linger2);
    r.step(
      `client sets TCP_LINGER2 ${linger2} s (its FIN_WAIT2 lifetime once closed; tcp_fin_timeout otherwise)`,
    );
    client.destroy(); // close(): FIN, and the socket is orphaned
    await waitFor(client, 'close');
    r.step('client closes; the server reads EOF but never calls close()');
    const both = await r.settle('client closed, server did not', [port], (es) =>
      ['FIN_WAIT2', 'CLOSE_WAIT'].every((st) => es.some((e) => e.state === st)),
    );
    r.check(
      'client FIN_WAIT2, server CLOSE_WAIT',
      ['FIN_WAIT2', 'CLOSE_WAIT'].every((st) => both.some((e) => e.state === st)),
    );
    const later = await r.settle(
      `${linger2} s later`,
      [port],
      (es) => !es.some((e) => e.state === 'FIN_WAIT2'),
      undefined,
      linger2 * 1000 + 4000,
    );
    r.step(`after ${linger2} s the orphaned FIN_WAIT2 is gone; the CLOSE_WAIT stays until the server closes`);
    r.check('the orphaned FIN_WAIT2 expired', !later.some((e) => e.state === 'FIN_WAIT2'));
    r.check(
      'the CLOSE_WAIT is still there',
      later.some((e) => e.state === 'CLOSE_WAIT'),
    );
    return r.result();
  } finally {
    await c.run();
  }
}
