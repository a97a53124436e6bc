// A server process that exits mid-connection: its kernel closes its sockets normally, so the
// client reads EOF (a FIN), not a reset. The connection the dead process had lives on in the
// kernel (orphaned FIN_WAIT2), still holding the port: a restart without SO_REUSEADDR fails
// with EADDRINUSE until it expires (tcp_fin_timeout); with SO_REUSEADDR — on the old socket
// and on the new one — it succeeds at once.

import { spawn } from 'node:child_process';
import net from 'node:net';
import { errorCode } from '../../core/errors.js';
import { closeFd } from '../../core/libc.js';
import { rawListenFd } from '../../core/listen.js';
import { Cleanup, Recorder, type ScenarioResult } from '../recorder.js';
import { closeServer, connectLocal, listenLocal, waitFor } from '../util.js';

// listens (SO_REUSEADDR, as every Node server), prints its port, exits once a client is in
const CHILD = `
const srv = require('net').createServer(() => process.exit(0));
srv.listen(0, '127.0.0.1', () => process.stdout.write(srv.address().port + '\\n'));
`;

export async function processExit(): Promise<ScenarioResult> {
  const r = new Recorder(
    'process-exit',
    'a server process exits mid-connection: FIN, not RST; the restart and SO_REUSEADDR',
    'bind errors in a one-to-one client/server; port reuse and a process-per-client server',
  );
  r.dependsOn(['tcp_fin_timeout']);
  // an orphaned FIN_WAIT2 is kept in a TIME_WAIT-table entry: with that table full it is closed at once
  r.needsTimeWait();
  const c = new Cleanup();
  try {
    const child = spawn(process.execPath, ['-e', CHILD], { stdio: ['ignore', 'pipe', 'ignore'] });
    c.add(() => child.kill('SIGKILL'));
    const [line] = await waitFor<[Buffer]>(child.stdout, 'data');
    const port = Number(line.toString().trim());
    r.step(`a server process (pid ${child.pid}) listens on 127.0.0.1:${port}`);
    const client = await connectLocal(port, { allowHalfOpen: true });
    c.add(() => client.destroy());
    let reset: unknown;
    client.on('error', (e) => {
      reset = e;
    });
    client.resume();
    await waitFor(client, 'end');
    r.step(
      `the process exits with the connection open; the client reads EOF (${reset ? errorCode(reset) : 'a FIN'})`,
    );
    r.check('the dead process’s kernel sent FIN, not RST', reset === undefined);
    const orphan = await r.settle('the process is gone; its connection is not', [port], (es) =>
      es.some((e) => e.localPort === port && e.state === 'FIN_WAIT2'),
    );
    r.check(
      'the server side lives on in the kernel (orphaned FIN_WAIT2)',
      orphan.some((e) => e.localPort === port && e.state === 'FIN_WAIT2'),
    );
    try {
      closeFd(rawListenFd({ host: '127.0.0.1', port, backlog: 1, reuseAddr: false, reusePort: false }));
      r.check('a restart without SO_REUSEADDR fails while the orphan lives', false);
    } catch (err) {
      r.step(`restart without SO_REUSEADDR: ${errorCode(err)}`);
      r.error(err);
      r.check('a restart without SO_REUSEADDR fails while the orphan lives', errorCode(err) === 'EADDRINUSE');
    }
    const again = net.createServer();
    c.add(() => closeServer(again));
    const ok = await listenLocal(again, port).then(
      () => true,
      (err) => {
        r.error(err);
        return false;
      },
    );
    r.step(
      `restart with SO_REUSEADDR (both the old and the new socket have it): ${ok ? 'listening at once' : 'failed'}`,
    );
    r.check('a restart with SO_REUSEADDR succeeds', ok);
    return r.result();
  } finally {
    await c.run();
  }
}
