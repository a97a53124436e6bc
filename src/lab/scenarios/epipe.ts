// writing to a connection the peer has closed. The first write after the peer's
// FIN draws an RST from the peer's kernel; the next write fails with EPIPE (Node ignores
// SIGPIPE, so it arrives as an error, not a signal).

import { errorCode } from '../../core/errors.js';
import { Cleanup, Recorder, type ScenarioResult } from '../recorder.js';
import { connectedPair, waitFor } from '../util.js';

export async function epipe(): Promise<ScenarioResult> {
  const r = new Recorder(
    'epipe',
    'write after the peer has closed',
    'a robust TCP client and server, watched on the wire',
  );
  r.dependsOn(
    [],
    [
      'SIGPIPE: Node ignores it, so a write to a reset connection is the EPIPE error; a C program with the default action dies by signal 13 (echo-lab sigpipe)',
    ],
  );
  // the server's closed socket waits in FIN_WAIT2 in a TIME_WAIT-table entry: with that table
  // full the kernel closes it at once, and the client's write meets no socket
  r.needsTimeWait();
  const c = new Cleanup();
  try {
    // allowHalfOpen: Node must not close the client's side itself when the FIN arrives
    const { port, client, peer } = await connectedPair(c, { allowHalfOpen: true });
    client.resume();
    const ended = waitFor(client, 'end');
    peer.destroy();
    r.step('server closes its socket (FIN); it will never read again');
    await ended;
    r.step("client reads 0 bytes ('end'): the peer sent FIN, but the client may still write");
    // the server's side reaches FIN_WAIT2 once the client's ACK of its FIN lands: wait for it
    const states = await r.settle('after the FIN: client CLOSE_WAIT, server FIN_WAIT2', [port], (es) =>
      ['CLOSE_WAIT', 'FIN_WAIT2'].every((st) => es.some((e) => e.state === st)),
    );
    r.check(
      'the states under the caption are the ones it names',
      ['CLOSE_WAIT', 'FIN_WAIT2'].every((st) => states.some((e) => e.state === st)),
    );
    let failure: unknown;
    for (let i = 1; i <= 5 && !failure; i++) {
      failure = await new Promise<unknown>((resolve) => {
        client.once('error', resolve);
        client.write(`write ${i}\n`, (err) => {
          if (!err) {
            client.off('error', resolve);
            resolve(undefined);
          }
        });
      });
      r.step(
        failure
          ? `write ${i} fails: ${errorCode(failure)}`
          : `write ${i} succeeds locally; the peer's kernel answers it with RST`,
      );
    }
    if (failure) r.error(failure);
    r.check('a write after the RST fails with EPIPE', errorCode(failure) === 'EPIPE');
    return r.result();
  } finally {
    await c.run();
  }
}
