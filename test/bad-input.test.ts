// Every flag with out-of-range, non-numeric, empty and hostile values: exit 2, one line that
// names the flag, and nothing left listening on the port we asked for.
import net from 'node:net';
import { describe, expect, it } from 'vitest';
import { closedPort, spawnCli } from './helpers.js';

const refused = (port: number) =>
  new Promise<boolean>((resolve) => {
    const s = net.connect({ port, host: '127.0.0.1' });
    s.once('connect', () => {
      s.destroy();
      resolve(false);
    });
    s.once('error', (e: NodeJS.ErrnoException) => resolve(e.code === 'ECONNREFUSED'));
  });

const serverCases: [string[], RegExp][] = [
  [['--port', '-1'], /--port -1/],
  [['--port', '65536'], /--port 65536: must be 0-65535/],
  [['--port', ''], /--port/],
  [['--host', 'a b'], /--host "a b"/],
  [['--host', ''], /--host/],
  [['--host', '$(reboot)'], /--host "\$\(reboot\)"/],
  [['--send-buffer', '1e99'], /--send-buffer 1e99/],
  [['--send-buffer', '2g'], /--send-buffer 2g: must be between/],
  [['--recv-buffer', '-5'], /--recv-buffer -5/],
  [['--workers', '0', '--mode', 'workers'], /--workers 0: must be 1-256/],
  [['--workers', '2'], /--workers 2: needs --mode workers/],
  [['--max-children', 'many', '--mode', 'fork'], /--max-children many/],
  [['--max-connections', '0'], /--max-connections 0/],
  [['--max-connections-per-ip', 'x'], /--max-connections-per-ip x/],
  [['--idle-timeout', 'forever'], /--idle-timeout forever/],
  [['--keepalive', '0s'], /--keepalive 0s/],
  [['--keepalive-interval', '-1s'], /--keepalive-interval -1s/],
  [['--keepalive-count', '128'], /--keepalive-count 128: must be 1-127/],
  [['--user-timeout', 'soon'], /--user-timeout soon/],
  [['--linger', '-1'], /--linger -1/],
  [['--backlog', '1.5'], /--backlog 1.5/],
  [['--allow', '10.0.0.0/33'], /--allow 10\.0\.0\.0\/33: prefix length/],
  [['--deny', 'evil.example'], /--deny evil\.example/],
  [['--grace', '1y'], /--grace 1y/],
  [['--rate-limit', '-3'], /--rate-limit -3/],
  [['--mode', 'threads'], /--mode/],
  [['--log-format', 'xml'], /--log-format/],
  [['--udp', '--mode', 'fork'], /--udp: cannot be used with --mode fork/],
  [['--exclusive'], /--exclusive: needs --mode workers/],
  [['--frobnicate'], /unknown option '--frobnicate'/],
];

describe('bad input exits 2 with one clear line and nothing listening', () => {
  it.concurrent.for(serverCases)('echo-server %j', async ([args, re], ctx) => {
    const port = await closedPort();
    const p = spawnCli('echo-server', ['--port', String(port), ...args], { ctx });
    const { code } = await p.exit;
    expect(code).toBe(2);
    const lines = p.stderr().trim().split('\n');
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(/^echo-server: /);
    expect(lines[0]).toMatch(re);
    expect(await refused(port)).toBe(true);
  });

  const clientCases: [string[], RegExp][] = [
    [['127.0.0.1', '0'], /PORT 0: must be 1-65535/],
    [['no such host!', '7'], /HOST "no such host!"/],
    [['-m', 'x', '--count', '0'], /--count 0/],
    [['-m', 'x', '--interval', 'x'], /--interval x/],
    [['-m', 'x', '--timeout', '0'], /--timeout 0/],
    [['-m', 'x', '--retry', '-2'], /--retry -2/],
    [['-m', 'x', '--local-port', '70000'], /--local-port 70000/],
    [['--count', '3'], /--count 3: needs --message/],
    [['bench', '-c', '0'], /--connections 0/],
    [['bench', '-d', '2h'], /--duration 2h/],
    [['bench', '--size', '-1'], /--size -1/],
    [['bench', '--udp', '--mode', 'stream'], /--udp: cannot be used with --mode stream/],
  ];
  it.concurrent.for(clientCases)('echo-client %j', async ([args, re], ctx) => {
    const p = spawnCli('echo-client', args, { ctx });
    expect((await p.exit).code).toBe(2);
    const lines = p.stderr().trim().split('\n');
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(re);
  });

  it.concurrent.for([
    [['--listen', '--port', 'x'], /--port x/],
    [['--listen', '--allow', '300.1.1.1'], /--allow 300\.1\.1\.1/],
    [['127.0.0.1'], /PORT: missing: give HOST PORT or HOST:PORT/],
  ] as [string[], RegExp][])('echo-chat %j', async ([args, re], ctx) => {
    const p = spawnCli('echo-chat', args, { ctx });
    expect((await p.exit).code).toBe(2);
    expect(p.stderr().trim().split('\n')).toHaveLength(1);
    expect(p.stderr()).toMatch(re);
  });
});
