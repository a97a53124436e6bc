import { spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import net from 'node:net';
import { describe, expect, it, onTestFinished } from 'vitest';
import { boundPort, closeFd } from '../src/core/libc.js';
import { rawListenFd } from '../src/core/listen.js';
import {
  bin,
  closedPort,
  echoServer,
  jsonLines,
  plainServer,
  refusal,
  spawnCli,
  spawnServer,
  streamUntilServerCloses,
} from './helpers.js';

const hasScript = spawnSync('script', ['--version']).status === 0;

/** A listener nobody accepts from, with backlog 1: the kernel completes 2 connections, then drops SYNs. */
async function fullBacklog(): Promise<number> {
  // made with libc and never given to Node, so nothing ever calls accept() on it
  const fd = rawListenFd({ host: '127.0.0.1', port: 0, backlog: 1, reuseAddr: true, reusePort: false });
  onTestFinished(() => closeFd(fd));
  const port = boundPort(fd);
  for (let i = 0; i < 2; i++) {
    const s = net.connect({ port, host: '127.0.0.1' });
    onTestFinished(() => {
      s.destroy();
    });
    await once(s, 'connect');
  }
  return port;
}

describe('echo-server CLI', () => {
  it('prints the listening line and echoes', async () => {
    const srv = await spawnServer();
    expect(srv.stderr()).toMatch(/listening on 127\.0\.0\.1:\d+ \(tcp, evented\)/);
    const c = spawnCli('echo-client', ['127.0.0.1', String(srv.port), '--message', 'hello']);
    expect((await c.exit).code).toBe(0);
    expect(c.stdout()).toBe('hello\n'); // as echo(1): the echo on its own line
    srv.child.kill('SIGTERM');
    expect((await srv.exit).code).toBe(0);
    const lines = jsonLines(srv.stderr());
    expect(lines.find((l) => l.msg?.startsWith('closed '))).toMatchObject({
      bytesIn: 5,
      bytesOut: 5,
      reason: 'client closed',
    });
    expect(lines.at(-1)).toMatchObject({ connections: 1, bytesIn: 5, bytesOut: 5 });
  });

  it('SIGTERM with a client mid-echo loses no echoed bytes', async () => {
    const srv = await spawnServer();
    const r = await streamUntilServerCloses(srv.port, {
      payloadBytes: 32 * 1024 * 1024,
      threshold: 256 * 1024,
      onEchoing: () => srv.child.kill('SIGTERM'),
    });
    expect((await srv.exit).code).toBe(0);
    expect(r.length).toBeGreaterThanOrEqual(256 * 1024);
    expect(r.exact).toBe(true);
    const closed = jsonLines(srv.stderr()).find((l) => l.msg?.startsWith('closed '));
    expect(closed).toMatchObject({ reason: 'server shutdown' });
    // every byte the server read came back: nothing it accepted was lost
    expect(closed!.bytesIn).toBe(r.length);
    expect(closed!.bytesOut).toBe(r.length);
  });

  it.each([
    [['--port', '70000'], /--port 70000: must be 0-65535/],
    [['--port', 'abc'], /--port abc: must be a number/],
    [['--host', 'a b'], /--host "a b": not an IP address/],
    [['--mode', 'threads'], /--mode.*threads.*Allowed choices/],
    [['--bogus'], /unknown option '--bogus'/],
    [['--backlog', 'x'], /--backlog x:/],
    [['--send-buffer', '-1'], /--send-buffer -1:/],
    [['--keepalive-count', '0'], /--keepalive-count 0: must be 1-127/],
  ])('exits 2 naming the flag: %s', async (args, re) => {
    const p = await refusal('echo-server', args as string[]);
    expect(p.code).toBe(2);
    expect(p.stderr).toMatch(re);
    expect(p.stderr.trim().split('\n')).toHaveLength(1);
  });
});

describe('echo-client CLI', () => {
  it('streams piped stdin, half-closes, verifies every byte', async () => {
    const srv = await echoServer();
    const payload = randomBytes(3 * 1024 * 1024 + 7);
    const c = spawn(
      process.execPath,
      [bin('echo-client'), '127.0.0.1', String(srv.address.port), '--log-format', 'json'],
      {
        stdio: ['pipe', 'pipe', 'pipe'],
      },
    );
    onTestFinished(() => {
      c.kill('SIGKILL');
    });
    const out: Buffer[] = [];
    c.stdout.on('data', (d: Buffer) => out.push(d));
    c.stdin.end(payload);
    const [code] = await once(c, 'close');
    expect(code).toBe(0);
    expect(Buffer.concat(out).equals(payload)).toBe(true);
  });

  it('exits 1 when the echo differs (a server that is not an echo server)', async () => {
    const { port } = await plainServer((s) => {
      s.on('data', (d: Buffer) => s.write(Buffer.from(d.toString().toUpperCase())));
      s.on('end', () => s.end());
    });
    const c = spawnCli('echo-client', ['127.0.0.1', String(port), '--message', 'abc']);
    expect((await c.exit).code).toBe(1);
    expect(c.stderr()).toMatch(/echo differs from what was sent at offset 0 of 3 \(cmp: byte 1\)/);
  });

  it('ECONNREFUSED: exit 1 with the explained line', async () => {
    const port = await closedPort();
    const c = spawnCli('echo-client', ['127.0.0.1', String(port), '--message', 'x']);
    expect((await c.exit).code).toBe(1);
    expect(c.stderr()).toBe(
      `echo-client: connect ECONNREFUSED 127.0.0.1:${port} — nothing is listening on that port (its kernel answered the SYN with RST). Start echo-server (or another echo server) there, or check the host and port.\n`,
    );
  });

  it('--retry retries a refused connect with backoff, then gives up', async () => {
    const port = await closedPort();
    const c = spawnCli('echo-client', [
      '127.0.0.1',
      String(port),
      '-m',
      'x',
      '--retry',
      '2',
      '--log-format',
      'json',
    ]);
    expect((await c.exit).code).toBe(1);
    expect(c.stderr().match(/retry \d\/2/g)).toEqual(['retry 1/2', 'retry 2/2']);
  });

  it('connect timeout on a full backlog: ETIMEDOUT, exit 1, explained', async () => {
    const port = await fullBacklog();
    const t0 = Date.now();
    const c = spawnCli('echo-client', ['127.0.0.1', String(port), '-m', 'x', '--connect-timeout', '500ms']);
    expect((await c.exit).code).toBe(1);
    expect(Date.now() - t0).toBeGreaterThanOrEqual(450);
    expect(c.stderr()).toMatch(
      /^echo-client: connect ETIMEDOUT 127\.0\.0\.1:\d+ — no answer in time: the SYN or data was never acknowledged/,
    );
  });

  it.each([
    [['--prot', '1'], /unknown option '--prot'/],
    [['--port', '0'], /PORT 0: must be 1-65535/],
    [['127.0.0.1', '7007', '--port', '7'], /--port: cannot be used with a PORT argument/],
    [['127.0.0.1', '70000'], /PORT 70000: must be 0-65535/],
    [['127.0.0.1', 'abc'], /PORT abc:/],
    [['-m', 'x', '--count', '-1'], /--count -1:/],
    [['-m', 'x', '--connect-timeout', 'soon'], /--connect-timeout soon:/],
  ])('exits 2 naming the flag: %s', async (args, re) => {
    const p = await refusal('echo-client', args as string[]);
    expect(p.code).toBe(2);
    expect(p.stderr).toMatch(re);
  });

  it.skipIf(!hasScript)('interactive on a terminal: prompt, "from server:", Q quits', async () => {
    const srv = await echoServer();
    const child = spawn(
      'script',
      ['-qfec', `${process.execPath} ${bin('echo-client')} 127.0.0.1 ${srv.address.port}`, '/dev/null'],
      {
        stdio: ['pipe', 'pipe', 'pipe'],
      },
    );
    onTestFinished(() => {
      child.kill('SIGKILL');
    });
    let out = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => {
      out += d;
    });
    const waitFor = (re: RegExp) =>
      new Promise<void>((resolve) => {
        const check = () => {
          if (re.test(out)) {
            child.stdout.off('data', check);
            resolve();
          }
        };
        child.stdout.on('data', check);
        check();
      });
    await waitFor(/Input message \(Q to quit\): /);
    child.stdin.write('hello there\n');
    await waitFor(/from server: hello there/);
    child.stdin.write('Q\n');
    const [code] = await once(child, 'close');
    expect(code).toBe(0);
    expect(out.match(/Input message \(Q to quit\): /g)!.length).toBeGreaterThanOrEqual(2);
    expect(srv.stats().bytesIn).toBe('hello there\n'.length);
  });
});
if (!hasScript) console.warn('skipped the pseudo-terminal test: `script` (util-linux) is not installed');
