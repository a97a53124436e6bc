// echo-chat --listen --keep-open refuses a peer beyond its queue (a FIN, then its bytes are read
// and dropped for up to REFUSED_LINGER_MS, waiting for the peer's FIN). When the command ends,
// such a refused socket is closed with it: it does not keep the process alive until its
// linger is over.

import { once } from 'node:events';
import net from 'node:net';
import { describe, expect, it, onTestFinished } from 'vitest';
import { REFUSED_LINGER_MS } from '../src/core/admission.js';
import { connect, spawnCli } from './helpers.js';

describe('echo-chat --listen: a refused peer still connected at exit', () => {
  it('SIGTERM during a conversation ends the command without waiting out the refused socket', async () => {
    const a = spawnCli('echo-chat', ['--listen', '--keep-open', '--port', '0'], { stdin: 'pipe' });
    const port = Number((await a.waitStderr(/listening on 127\.0\.0\.1:(\d+)/))[1]);
    const talking = await connect(port);
    talking.on('error', () => {});
    talking.resume();
    talking.write('hi\n');
    await a.waitStdout(/hi\n/);
    const waiting = await connect(port); // queued for the next conversation (the queue holds 1)
    waiting.on('error', () => {});
    waiting.resume();
    // the linger of the refused socket starts after this instant: its connect begins here
    const t0 = performance.now();
    // allowHalfOpen: this peer does not answer the refusal's FIN with its own
    const refused = net.connect({ port, host: '127.0.0.1', allowHalfOpen: true });
    refused.on('error', () => {});
    onTestFinished(() => {
      for (const s of [talking, waiting, refused]) s.destroy();
    });
    refused.resume();
    await once(refused, 'end'); // the refusal's FIN
    await a.waitStderr(/refused 127\.0\.0\.1: a conversation is going on/);
    a.child.kill('SIGTERM');
    const { code } = await a.exit;
    expect(code).toBe(143);
    // left to its linger, the refused socket would keep the process until at least
    // REFUSED_LINGER_MS after t0 (its linger starts after its connect began)
    expect(performance.now() - t0).toBeLessThan(REFUSED_LINGER_MS);
    expect(a.stderr()).not.toMatch(/\n\s+at /);
  });
});
