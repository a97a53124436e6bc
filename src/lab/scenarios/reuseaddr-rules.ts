// What SO_REUSEADDR does and does not allow on Linux, one bind at a time:
// 1. it must be on the old socket too: a connection left by a listener made without it blocks
//    a new listener that has it (EADDRINUSE);
// 2. a wildcard listener (0.0.0.0:P) blocks a specific address on the same port (127.0.0.1:P),
//    with or without it;
// 3. two different specific addresses (127.0.0.1:P and 127.0.0.2:P) need no option at all —
//    a tutorial says otherwise.

import net from 'node:net';
import { rawListenFd } from '../../core/listen.js';
import { Cleanup, Recorder, type ScenarioResult } from '../recorder.js';
import { labTcpStates } from '../states.js';
import { closeServer, connectLocal, listenLocal, tryListen, waitFor } from '../util.js';

export async function reuseaddrRules(): Promise<ScenarioResult> {
  const r = new Recorder(
    'reuseaddr-rules',
    'SO_REUSEADDR: on both sockets, not past a wildcard, not needed for two addresses',
    'bind errors in a one-to-one client/server; port reuse and a process-per-client server',
  );
  r.needsTimeWait();
  r.dependsOn(
    [],
    [
      'on Linux, rebinding a port held by a non-listening socket needs SO_REUSEADDR on the new socket and on the old one',
    ],
  );
  const c = new Cleanup();
  try {
    // 1. a listener without SO_REUSEADDR; the connection it accepts inherits that
    const fd = rawListenFd({ host: '127.0.0.1', port: 0, backlog: 1, reuseAddr: false, reusePort: false });
    const old = net.createServer((s) => s.end()); // closes first: its side goes to TIME_WAIT
    old.listen({ fd }, 1);
    await waitFor(old, 'listening');
    const port = (old.address() as net.AddressInfo).port;
    const client = await connectLocal(port, { allowHalfOpen: true });
    client.resume();
    await waitFor(client, 'end');
    client.end();
    await waitFor(client, 'close');
    await closeServer(old);
    r.step(
      `1. a listener made without SO_REUSEADDR on ${port} served a connection and closed it first, then stopped`,
    );
    await r.settle('the old connection', [port], (es) => es.some((e) => e.state === 'TIME_WAIT'));
    const one = tryListen('127.0.0.1', port, true, c);
    r.step(`   a new listener WITH SO_REUSEADDR on ${port}: ${one}`);
    r.check(
      'SO_REUSEADDR on the new socket alone does not get past an old socket without it',
      one === 'EADDRINUSE',
    );

    // 2. wildcard vs specific
    const wild = net.createServer();
    const p2 = await listenLocal(wild, 0, undefined, '0.0.0.0');
    c.add(() => closeServer(wild));
    const two = tryListen('127.0.0.1', p2, true, c);
    r.step(`2. 0.0.0.0:${p2} is listening; 127.0.0.1:${p2} with SO_REUSEADDR: ${two}`);
    r.check(
      'a wildcard listener blocks a specific address on its port, SO_REUSEADDR or not',
      two === 'EADDRINUSE',
    );

    // 3. two specific addresses, no options. The port is one the kernel just gave 127.0.0.1;
    // another program's connection may hold it on 127.0.0.2 by chance (then the bind fails for
    // that reason, which /proc/net/tcp shows): try another port a few times before concluding.
    let three = '';
    let p3 = 0;
    for (let attempt = 0; attempt < 5 && three !== 'listening'; attempt++) {
      const first = net.createServer();
      p3 = await listenLocal(first, 0, undefined, '127.0.0.1');
      c.add(() => closeServer(first));
      three = tryListen('127.0.0.2', p3, false, c);
      const busy =
        three === 'EADDRINUSE' &&
        labTcpStates([p3]).entries.some((e) => e.localPort === p3 && e.local !== '127.0.0.1');
      if (!busy) break;
    }
    r.step(`3. 127.0.0.1:${p3} is listening; 127.0.0.2:${p3} WITHOUT SO_REUSEADDR: ${three}`);
    r.check('two different specific addresses share a port with no option at all', three === 'listening');
    return r.result();
  } finally {
    await c.run();
  }
}
