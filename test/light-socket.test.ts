// LightSocket (core/internals.ts) on its own: what stays true once its handle is a net.Socket's.
import { once } from 'node:events';
import net from 'node:net';
import { describe, expect, it } from 'vitest';
import { lightAccepted } from './helpers.js';

describe('LightSocket after handOver()', () => {
  it('destroy() on the light socket leaves the connection, its count and its close to the net.Socket', async () => {
    const own = Buffer.alloc(64 * 1024);
    const onread = {
      buffer: () => own,
      callback(this: net.Socket, n: number, buf: Buffer) {
        this.write(Buffer.from(buf.subarray(0, n)));
      },
    };
    const { server, light, client } = await lightAccepted(onread);
    let lightClosed = false;
    light.on('close', () => {
      lightClosed = true;
    });
    const handed = await new Promise<net.Socket | undefined>((resolve) =>
      light.handOver(
        (handle) =>
          new net.Socket({ handle, allowHalfOpen: true, onread } as unknown as net.SocketConstructorOpts),
        resolve,
      ),
    );
    expect(handed).toBeInstanceOf(net.Socket);
    light.destroy();
    // the echo still runs through the net.Socket
    client.write('still here');
    const [back] = await once(client, 'data');
    expect(String(back)).toBe('still here');
    const n = await new Promise<number>((r) => server.getConnections((_e, k) => r(k)));
    expect(n).toBe(1);
    expect(lightClosed).toBe(false);
    handed!.destroy();
    await once(handed!, 'close');
    expect(lightClosed).toBe(false);
    expect(await new Promise<number>((r) => server.getConnections((_e, k) => r(k)))).toBe(0);
  });
});
