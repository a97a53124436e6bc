// The fork server's restart: the parent is gone, a child still serves a client on the port.
// 1. The child holds only its connection (it closed its copy of the listening socket, as a
//    fork server's child should): a restart without SO_REUSEADDR fails (EADDRINUSE), with it
//    succeeds — and the child keeps echoing.
// 2. The child also kept the listening socket (fork() duplicates every descriptor; forgetting
//    close(listenfd) in the child is the tutorials' bug): the port is still listening, so the
//    restart fails even with SO_REUSEADDR, for as long as that child lives.

import { type ChildProcess, spawn } from 'node:child_process';
import net from 'node:net';
import { Cleanup, Recorder, type ScenarioResult } from '../recorder.js';
import { connectLocal, listenLocal, tryListen, waitFor } from '../util.js';

// a forked child: echoes the connection it is handed; holds a listening socket if given one
const CHILD = `
process.on('message', (m, h) => {
  if (m === 'conn') { h.on('data', (d) => h.write(d)); h.on('error', () => {}); }
  process.send('held ' + m);
});
`;

function child(c: Cleanup): ChildProcess {
  const p = spawn(process.execPath, ['-e', CHILD], { stdio: ['ignore', 'ignore', 'ignore', 'ipc'] });
  // waits for the exit: the kernel closes the child's sockets (FIN) as it exits, and a traced
  // run stops its capture once the cleanup is done
  c.add(
    () =>
      new Promise<void>((done) => {
        if (p.exitCode !== null || p.signalCode !== null) return done();
        p.once('exit', () => done());
        p.kill('SIGKILL');
      }),
  );
  return p;
}

export async function forkHoldsPort(): Promise<ScenarioResult> {
  const r = new Recorder(
    'fork-holds-port',
    "the fork server restarts while a child still serves: what binds, what doesn't",
    'port reuse and a process-per-client server',
  );
  r.dependsOn([], ['fork() gives the child a copy of every descriptor, the listening socket included']);
  const c = new Cleanup();
  try {
    // 1. the child got only the connection
    const parent = net.createServer({ pauseOnConnect: true });
    const port = await listenLocal(parent);
    r.usePort(port);
    const accepted = waitFor<[net.Socket]>(parent, 'connection');
    const client = await connectLocal(port);
    c.add(() => client.destroy());
    const [conn] = await accepted;
    const kid = child(c);
    kid.send('conn', conn);
    await waitFor(kid, 'message');
    // not awaited: once a socket went to another process, Node's close callback waits on it too;
    // the listening socket itself is closed at once
    parent.close();
    r.step(
      `the parent handed the connection on ${port} to child ${kid.pid} and stopped listening (as if it exited)`,
    );
    const without = tryListen('127.0.0.1', port, false, c);
    r.step(`restart without SO_REUSEADDR: ${without} (the child's connection still uses the port)`);
    r.check('without SO_REUSEADDR the restart fails while the child serves', without === 'EADDRINUSE');
    const withIt = tryListen('127.0.0.1', port, true, c);
    r.step(`restart with SO_REUSEADDR: ${withIt}`);
    r.check('with SO_REUSEADDR the restart succeeds', withIt === 'listening');
    client.write('still there?');
    const [echo] = await waitFor<[Buffer]>(client, 'data');
    r.step(`the child still echoes: "${echo.toString()}"`);
    r.check("the old child's client is untouched", echo.toString() === 'still there?');

    // 2. the child also kept the listening socket
    const parent2 = net.createServer();
    const port2 = await listenLocal(parent2);
    r.usePort(port2);
    const kid2 = child(c);
    kid2.send('listener', parent2);
    await waitFor(kid2, 'message');
    parent2.close();
    r.step(
      `a second parent on ${port2} gives child ${kid2.pid} its listening socket too, then stops listening`,
    );
    const listening = await r.settle('the parent is gone', [port2], (es) =>
      es.some((e) => e.state === 'LISTEN'),
    );
    r.check(
      'the port is still in LISTEN: the child holds the socket',
      listening.some((e) => e.state === 'LISTEN'),
    );
    const kept = tryListen('127.0.0.1', port2, true, c);
    r.step(
      `restart with SO_REUSEADDR: ${kept}: SO_REUSEADDR does not share a port another socket listens on`,
    );
    r.check('with the listener still open in the child, even SO_REUSEADDR fails', kept === 'EADDRINUSE');
    return r.result();
  } finally {
    await c.run();
  }
}
