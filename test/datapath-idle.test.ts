// A light connection's idle timer (LightSocket.setTimeout) counts from its last activity, noted
// once per read, the echo's write inside the read callback counting as the same activity; a
// write outside a read callback is activity too. Activity of either kind keeps the connection past several
// timeouts; once idle, 'timeout' comes.

import { once } from 'node:events';
import type net from 'node:net';
import { describe, expect, it } from 'vitest';
import { lightEcho, readN } from './helpers.js';

const IDLE_MS = 1000;
const PACE_MS = 100;
const ROUNDS = 12; // 1.2 s of activity at least: past the timeout

const pause = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('light connection idle timer', () => {
  it('an echo every 100 ms keeps a 1 s idle timeout away; then idle, it fires', async () => {
    const { light, client } = await lightEcho();
    let timeouts = 0;
    light.on('timeout', () => timeouts++);
    light.setTimeout(IDLE_MS);
    for (let i = 0; i < ROUNDS; i++) {
      client.write(`m${i % 10}`);
      expect((await readN(client, 2)).toString()).toBe(`m${i % 10}`);
      await pause(PACE_MS); // traffic pacing, not synchronisation
    }
    expect(timeouts).toBe(0);
    const t0 = Date.now();
    await once(light as unknown as net.Socket, 'timeout');
    expect(Date.now() - t0).toBeGreaterThanOrEqual(IDLE_MS - PACE_MS - 50);
  });

  it('writes outside a read callback keep it away too', async () => {
    const { light, client } = await lightEcho();
    let timeouts = 0;
    light.on('timeout', () => timeouts++);
    light.setTimeout(IDLE_MS);
    for (let i = 0; i < ROUNDS; i++) {
      light.write(Buffer.from('w'));
      expect((await readN(client, 1)).toString()).toBe('w');
      await pause(PACE_MS);
    }
    expect(timeouts).toBe(0);
    await once(light as unknown as net.Socket, 'timeout');
  });
});
