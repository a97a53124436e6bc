// Every flag with out-of-range, non-numeric, empty and hostile values is refused before any
// socket is opened: exit 2 and one line naming the flag. Checked in-process through the
// commands' own program builders and validators (the code the commands run before they open
// anything); a handful go through the real commands for the exit code and the single line.
import { describe, expect, it } from 'vitest';
import { refusal, spawnCli } from './helpers.js';

const server = (argv: string[]) => refusal('echo-server', ['--port', '0', ...argv]);
const client = (argv: string[]) => refusal('echo-client', argv);
const chat = (argv: string[]) => refusal('echo-chat', argv);

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

const clientCases: [string[], RegExp][] = [
  [['127.0.0.1', '0'], /PORT 0: must be 1-65535/],
  [['no such host!', '7'], /HOST "no such host!"/],
  [['-m', 'x', '--count', '0'], /--count 0/],
  [['-m', 'x', '--count', '2', '--interval', 'x'], /--interval x/],
  [['-m', 'x', '--timeout', '0'], /--timeout 0/],
  [['-m', 'x', '--retry', '-2'], /--retry -2/],
  [['-m', 'x', '--local-port', '70000'], /--local-port 70000/],
  [['--count', '3'], /--count 3: needs --message/],
  [['bench', '-c', '0'], /--connections 0/],
  [['bench', '-d', '2h'], /--duration 2h/],
  [['bench', '--size', '-1'], /--size -1/],
  [['bench', '--udp', '--mode', 'stream'], /--udp: cannot be used with --mode stream/],
  [['--frobnicate'], /unknown option '--frobnicate'/],
];

const chatCases: [string[], RegExp][] = [
  [['--listen', '--port', 'x'], /--port x/],
  [['--listen', '--allow', '300.1.1.1'], /--allow 300\.1\.1\.1/],
  [['127.0.0.1'], /PORT: missing: give HOST PORT or HOST:PORT/],
  [['--keep-open', '127.0.0.1', '7'], /--keep-open: needs --listen/],
];

describe('bad input is refused before anything is opened: exit 2, one line naming the flag', () => {
  it.each(serverCases)('echo-server %j', async (args, re) => {
    const r = await server(args);
    expect(r.code).toBe(2);
    expect(r.lines).toHaveLength(1);
    expect(r.lines[0]).toMatch(/^echo-server: /);
    expect(r.lines[0]).toMatch(re);
  });

  it.each(clientCases)('echo-client %j', async (args, re) => {
    const r = await client(args);
    expect(r.code).toBe(2);
    expect(r.lines).toHaveLength(1);
    expect(r.lines[0]).toMatch(re);
  });

  it.each(chatCases)('echo-chat %j', async (args, re) => {
    const r = await chat(args);
    expect(r.code).toBe(2);
    expect(r.lines).toHaveLength(1);
    expect(r.lines[0]).toMatch(re);
  });

  it('flags that are fine are not refused: the in-process check tells the two apart', async () => {
    expect(await server(['--mode', 'workers', '--workers', '2'])).toMatchObject({ code: 0, lines: [] });
    expect(await client(['-m', 'x', '--count', '2', '127.0.0.1', '7'])).toMatchObject({ code: 0, lines: [] });
    expect(await client(['bench', '-c', '3'])).toMatchObject({ code: 0, lines: [] });
    expect(await chat(['--listen', '--port', '0'])).toMatchObject({ code: 0, lines: [] });
  });

  it.concurrent.for([
    ['echo-server', ['--port', '65536']],
    ['echo-server', ['--frobnicate']],
    ['echo-client', ['-m', 'x', '--count', '0']],
    ['echo-client', ['bench', '-c', '0']],
    ['echo-chat', ['--listen', '--port', 'x']],
  ] as [string, string[]][])('the real command: %s %j exits 2 with one line', async ([cmd, args], ctx) => {
    const p = spawnCli(cmd, args, { ctx });
    expect((await p.exit).code).toBe(2);
    expect(p.stderr().trim().split('\n')).toHaveLength(1);
    expect(p.stderr()).toMatch(new RegExp(`^${cmd}: `));
  });
});
