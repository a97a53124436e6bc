// Writing to a connection the peer has reset raises SIGPIPE, whose default action kills the
// process: a C program that ignores the tutorials' advice dies by signal 13 without a word.
// Node (libuv) ignores SIGPIPE at start-up, so the same write is an EPIPE error instead.
// Both are shown with a child process: one that restores SIG_DFL through libc, one that doesn't.

import { spawn } from 'node:child_process';
import { createRequire } from 'node:module';
import net from 'node:net';
import { Cleanup, Recorder, type ScenarioResult } from '../recorder.js';
import { closeServer, listenLocal } from '../util.js';

// The child: connect, wait for the server's FIN, write (the peer's kernel answers RST), write again.
const CHILD = `
const [port, dfl, koffiPath] = process.argv.slice(1);
if (dfl === '1') {
  const koffi = require(koffiPath);
  const signal = koffi.load('libc.so.6').func('void *signal(int, void *)');
  signal(13, null); // SIGPIPE back to SIG_DFL: terminate
}
const s = require('net').connect({ port: Number(port), host: '127.0.0.1', allowHalfOpen: true });
s.on('error', (e) => { process.stdout.write('error ' + e.code + '\\n'); process.exit(0); });
s.resume();
s.on('end', () => {
  s.write('one\\n');
  setTimeout(() => s.write('two\\n', () => {}), 100);
});
setTimeout(() => process.exit(3), 5000);
`;

function runChild(
  port: number,
  dfl: boolean,
): Promise<{ code: number | null; signal: string | null; out: string }> {
  const koffiPath = createRequire(import.meta.url).resolve('koffi');
  const child = spawn(process.execPath, ['-e', CHILD, String(port), dfl ? '1' : '0', koffiPath], {
    stdio: ['ignore', 'pipe', 'ignore'],
  });
  let out = '';
  child.stdout.on('data', (d) => {
    out += d;
  });
  return new Promise((resolve) =>
    child.once('close', (code, signal) => resolve({ code, signal, out: out.trim() })),
  );
}

export async function sigpipe(): Promise<ScenarioResult> {
  const r = new Recorder(
    'sigpipe',
    'a write to a reset connection: SIGPIPE kills, unless it is ignored (then EPIPE)',
    'a robust TCP client and server, watched on the wire',
  );
  r.dependsOn(
    [],
    [
      'Linux: SIGPIPE is signal 13; its default action terminates the process; send(..., MSG_NOSIGNAL) or SIG_IGN turn it into the EPIPE error',
    ],
  );
  const c = new Cleanup();
  try {
    // a server that closes each connection at once (FIN) and never reads
    const server = net.createServer((s) => s.destroy());
    const port = await listenLocal(server);
    r.usePort(port);
    c.add(() => closeServer(server));
    if (process.platform !== 'linux') return r.result('needs Linux (libc.so.6 and signal 13)');
    r.step(
      'a server closes each connection at once; the client writes after the FIN, then again after the RST',
    );
    const dfl = await runChild(port, true);
    r.step(
      `a child with SIGPIPE at its default action: ${dfl.signal ? `killed by ${dfl.signal}` : `exit ${dfl.code}`}${dfl.out ? ` (${dfl.out})` : ', nothing printed'}`,
    );
    r.check(
      'with the default action, the second write kills the process (SIGPIPE)',
      dfl.signal === 'SIGPIPE',
    );
    const ign = await runChild(port, false);
    r.step(`a plain Node child (SIGPIPE ignored by libuv): ${ign.out || `exit ${ign.code}`}`);
    r.check(
      'with SIGPIPE ignored (Node), the write fails with EPIPE',
      ign.out === 'error EPIPE' && ign.code === 0,
    );
    return r.result();
  } finally {
    await c.run();
  }
}
