// echo-server --ws against a WebSocket client nobody here wrote: Python's `websockets`
// (Debian's python3-websockets under /usr/bin/python3): a fragmented message comes back whole,
// a ping is answered with a pong carrying its payload, and the close handshake echoes the code
// and reason. Skipped with the reason where the module is absent.
import { spawnSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { runCommand, spawnServer } from './helpers.js';

const PY = '/usr/bin/python3';
const hasWebsockets = spawnSync(PY, ['-c', 'import websockets'], { stdio: 'ignore' }).status === 0;

const SCRIPT = String.raw`
import asyncio, json, ssl, sys
import websockets

async def main(url):
    ctx = None
    if url.startswith("wss:"):
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    out = {}
    async with websockets.connect(url, ssl=ctx, max_size=None, compression=None) as ws:
        await ws.send(["frag", "mented ", "ü"])
        out["text"] = await ws.recv()
        await ws.send([b"\x00\x01", b"\xff"])
        out["binary"] = list(await ws.recv())
        waiter = await ws.ping(b"pp-42")
        await asyncio.wait_for(waiter, 10)
        out["pong"] = True
        await ws.close(4001, "bye from python")
        rcvd = ws.close_rcvd
        out["close"] = [rcvd.code, rcvd.reason] if rcvd else None
    print(json.dumps(out))

asyncio.run(main(sys.argv[1]))
`;

describe.skipIf(!hasWebsockets)('echo-server --ws with Python websockets', () => {
  for (const [name, args, scheme] of [
    ['evented, ws://', [], 'ws'],
    ['workers, wss://', ['--mode', 'workers', '--workers', '2', '--tls'], 'wss'],
  ] as const) {
    it(`${name}: fragmented message whole, ping/pong, close handshake`, async () => {
      const srv = await spawnServer(['--ws', '/py', ...args]);
      const r = await runCommand(PY, ['-c', SCRIPT, `${scheme}://127.0.0.1:${srv.port}/py`]);
      expect(r.err).toBe('');
      expect(r.code).toBe(0);
      expect(JSON.parse(r.out.toString())).toEqual({
        text: 'fragmented ü',
        binary: [0, 1, 255],
        pong: true,
        close: [4001, 'bye from python'],
      });
      await srv.waitStderr(/websocket close 4001 \(application code\) \\?"bye from python/, 20_000);
    });
  }
});

if (!hasWebsockets) console.warn(`ws-python tests skipped: ${PY} has no websockets module`);
