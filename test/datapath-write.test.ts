// LightSocket.write() (core/internals.ts) reuses one write request while the kernel takes each
// write at once, and gives a write that waits a request of its own: every byte must still come
// back in order when writes go from immediate to waiting and back, mid-stream.

import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import type net from 'node:net';
import { describe, expect, it } from 'vitest';
import type { LightSocket } from '../src/core/internals.js';
import { lightAccepted, readN } from './helpers.js';

/** A LightSocket accepted by a fresh loopback server (its reads dropped), with the client connected to it. */
function lightPair() {
  const own = Buffer.alloc(64 * 1024);
  return lightAccepted({ buffer: () => own, callback() {} });
}

const reqOf = (light: LightSocket) => (light as unknown as { req?: object }).req;

describe('LightSocket writes with a reused request', () => {
  it('immediate writes share one request; a write that waits keeps its own; every byte comes back', async () => {
    const { light, client } = await lightPair();
    client.pause(); // the kernel's buffers fill: writes start to wait
    const chunks: Buffer[] = [];
    // phase 1: small writes the kernel takes at once, on one request
    for (let i = 0; i < 8; i++) {
      const c = randomBytes(100 + i);
      chunks.push(c);
      expect(light.write(c)).toBe(true);
    }
    const first = reqOf(light);
    expect(first).toBeDefined();
    expect(light.writableLength).toBe(0);
    // phase 2: until a write waits, then more while it waits (each with a request of its own)
    let waited = 0;
    for (let i = 0; waited < 5 && i < 10_000; i++) {
      const c = randomBytes(64 * 1024 + (i % 7));
      chunks.push(c);
      light.write(c);
      if (light.writableLength > 0) {
        waited++;
        expect(reqOf(light)).toBeUndefined(); // the waiting write took its request along
      } else expect(reqOf(light)).toBe(first);
    }
    expect(waited).toBe(5);
    const drained = once(light as unknown as net.Socket, 'drain');
    const total = chunks.reduce((k, c) => k + c.length, 0);
    const firstPart = readN(client, total);
    client.resume();
    await drained;
    expect(light.writableLength).toBe(0);
    // phase 3: immediate writes again, after the waiting ones completed
    const tail = [randomBytes(1000), randomBytes(3000)];
    expect((await firstPart).equals(Buffer.concat(chunks))).toBe(true);
    const rest = readN(client, 4000);
    for (const c of tail) light.write(c);
    expect((await rest).equals(Buffer.concat(tail))).toBe(true);
    expect(light.bytesWritten).toBe(total + 4000);
  });
});
