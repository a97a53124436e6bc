// LightSocket (core/internals.ts) on its own: what stays true once its handle is a net.Socket's.
import { once } from 'node:events';
import net from 'node:net';
import { describe, expect, it, onTestFinished } from 'vitest';
import { interceptAccept, LightSocket, lightPathWorks } from '../src/core/internals.js';

describe('LightSocket after handOver()', () => {
  it('destroy() on the light socket leaves the connection, its count and its close to the net.Socket', async () => {
    expect((await lightPathWorks()).ok).toBe(true);
    const server = net.createServer({ allowHalfOpen: true });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    onTestFinished(() => {
      server.close();
    });
    const own = Buffer.alloc(64 * 1024);
    const onread = {
      buffer: () => own,
      callback(this: net.Socket, n: number, buf: Buffer) {
        this.write(Buffer.from(buf.subarray(0, n)));
      },
    };
    const accepted = new Promise<LightSocket>((resolve) => {
      interceptAccept(
        server,
        { allowHalfOpen: true, pauseOnCreate: false, light: true, onread: () => onread },
        (s) => resolve(s as unknown as LightSocket),
      );
    });
    const client = net.connect((server.address() as net.AddressInfo).port, '127.0.0.1');
    onTestFinished(() => {
      client.destroy();
    });
    const light = await accepted;
    expect(light).toBeInstanceOf(LightSocket);
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
