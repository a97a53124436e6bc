// The tutorials' two-process chat: one process reads the terminal and writes to the socket,
// a forked one reads the socket and prints; when the peer leaves, the reader tells the writer
// with SIGUSR1. Its Ctrl-D bug: on end of input the writer calls close() — but the reader still
// holds the same socket, and a socket is only closed when its last descriptor is: no FIN goes
// out, the peer never learns the writer is done. shutdown(SHUT_WR) sends the FIN whoever else
// holds the socket.

import { type ChildProcess, spawn } from 'node:child_process';
import type net from 'node:net';
import { Cleanup, Recorder, type ScenarioResult } from '../recorder.js';
import { connectLocal, holdingServer, waitFor } from '../util.js';

// the reader process: prints what arrives; on EOF, tells the writer (its parent) with a signal.
// The tutorial uses SIGUSR1; Node keeps SIGUSR1 for its debugger, so here it is SIGUSR2.
const READER = `
process.on('message', (m, s) => {
  s.on('data', () => {});
  s.on('end', () => { process.kill(process.ppid, 'SIGUSR2'); s.end(); });
  s.on('error', () => {});
  process.send('reading');
});
`;

export async function chatFork(): Promise<ScenarioResult> {
  const r = new Recorder(
    'chat-fork',
    'a two-process chat: close() in one process sends no FIN while the other holds the socket',
    'port reuse and a process-per-client server',
  );
  r.dependsOn(
    [],
    [
      'a socket is closed when its last descriptor is: close() in one of two processes sending nothing is reference counting, not a bug of TCP',
    ],
  );
  const c = new Cleanup();
  // the readers' signal is listened for until every reader is gone: cleanups run last-in
  // first-out, so this one, added first, runs last
  let got = false;
  let onSignal!: () => void;
  const signalled = new Promise<void>((res) => {
    onSignal = () => {
      got = true;
      res();
    };
  });
  process.on('SIGUSR2', onSignal);
  c.add(() => process.off('SIGUSR2', onSignal));
  try {
    const { port, peers } = await holdingServer(c);
    const spawnReader = (sock: net.Socket): ChildProcess => {
      const reader = spawn(process.execPath, ['-e', READER], {
        stdio: ['ignore', 'ignore', 'ignore', 'ipc'],
      });
      // killed and waited for: a reader still alive when its peer is closed below would signal
      // a process that no longer listens for it (and SIGUSR2's default action terminates)
      c.add(() => {
        if (reader.exitCode !== null || reader.signalCode !== null) return;
        reader.kill('SIGKILL');
        return waitFor(reader, 'exit');
      });
      // keepOpen: the writer (this process) keeps its own descriptor, as after fork()
      reader.send('sock', sock, { keepOpen: true });
      return reader;
    };
    const localOf = (s: net.Socket) => s.localPort!;

    // 1. Ctrl-D handled with close(): nothing reaches the peer
    const a = await connectLocal(port, { allowHalfOpen: true });
    const readerA = spawnReader(a);
    await waitFor(readerA, 'message');
    r.step(
      `writer and reader share the connection from port ${localOf(a)}; the writer sees end of input and calls close()`,
    );
    const aPort = localOf(a);
    a.destroy(); // close(): this process's descriptor only
    await waitFor(a, 'close');
    const still = r.snapshot('after close() in the writer', [port], (e) => e.localPort === aPort);
    r.check(
      'no FIN: the connection is still ESTABLISHED (the reader holds the socket)',
      still[0]?.state === 'ESTABLISHED',
    );

    // 2. the fix: shutdown(SHUT_WR)
    const b = await connectLocal(port, { allowHalfOpen: true });
    const readerB = spawnReader(b);
    await waitFor(readerB, 'message');
    const bPort = localOf(b);
    const peerSawFin = new Promise<void>((res) => {
      const p = peers.at(-1)!;
      p.once('end', () => res());
    });
    b.end(); // shutdown(SHUT_WR): a FIN, whoever else holds the socket
    await peerSawFin;
    r.step(
      `a second pair from port ${bPort}: the writer calls shutdown(SHUT_WR) instead; the peer reads EOF at once`,
    );
    const fin = await r.settle('after shutdown() in the writer', [port], (es) =>
      es.some((e) => e.localPort === bPort && e.state === 'FIN_WAIT2'),
    );
    r.check(
      'shutdown() sent the FIN: the writer’s side is in FIN_WAIT2',
      fin.some((e) => e.localPort === bPort && e.state === 'FIN_WAIT2'),
    );

    // the peer leaves: the reader reads EOF and tells the writer with a signal
    peers.at(-1)!.end();
    await Promise.race([signalled, new Promise((res) => setTimeout(res, 5000))]);
    r.step(
      got
        ? 'the peer closes; the reader reads EOF and signals the writer (SIGUSR2 here, SIGUSR1 in the tutorial), which stops'
        : 'no signal came within 5 s',
    );
    r.check('the reader tells the writer the peer left (a signal)', got);
    return r.result();
  } finally {
    await c.run();
  }
}
