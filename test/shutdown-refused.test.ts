// A refused client that keeps its side open does not hold a server's shutdown: its socket is
// read and dropped for up to REFUSED_LINGER_MS after the refusal's FIN, unless the server is
// done first, in every mode.

import { once } from 'node:events';
import net from 'node:net';
import { describe, expect, it } from 'vitest';
import { REFUSED_LINGER_MS } from '../src/core/admission.js';
import { SERVER_MODES, spawnServer } from './helpers.js';

describe.concurrent('SIGTERM with a refused client still connected', () => {
  it.for(SERVER_MODES)(
    '%s: the server exits without waiting out the refused socket',
    async ([, args], ctx) => {
      const srv = await spawnServer(['--max-connections', '1', ...args], { ctx });
      const served = net.connect(srv.port, '127.0.0.1');
      served.on('error', () => {});
      ctx.onTestFinished(() => {
        served.destroy();
      });
      served.write('x');
      await once(served, 'data'); // admitted and echoed: the one slot is held
      // allowHalfOpen: this client does not answer the server's FIN with its own
      const refused = net.connect({ port: srv.port, host: '127.0.0.1', allowHalfOpen: true });
      refused.on('error', () => {});
      ctx.onTestFinished(() => {
        refused.destroy();
      });
      refused.resume();
      await once(refused, 'end'); // the refusal's FIN
      const finAt = performance.now();
      await srv.waitStderr(/refused [^\n]*--max-connections 1/);
      srv.child.kill('SIGTERM');
      const { code } = await srv.exit;
      expect(code).toBe(0);
      // a refused socket left to its linger would keep the process until REFUSED_LINGER_MS after
      // the refusal, later than this
      expect(performance.now() - finAt).toBeLessThan(REFUSED_LINGER_MS);
      expect(srv.stderr()).toMatch(/totals: 1 connection, 1 refused/);
    },
  );
});
