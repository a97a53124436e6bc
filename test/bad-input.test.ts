// Every flag with out-of-range, non-numeric, empty and hostile values is refused before any
// socket is opened: exit 2 and one line naming the flag. Checked in-process through the
// commands' own program builders and validators (the code the commands run before they open
// anything); a handful go through the real commands for the exit code and the single line.
import type { Command } from 'commander';
import { CommanderError } from 'commander';
import { describe, expect, it } from 'vitest';
import { resolveBenchOptions } from '../src/cli/bench-cli.js';
import { reportFatal } from '../src/cli/common.js';
import { buildChatProgram, resolveChatConfig } from '../src/cli/echo-chat.js';
import { buildClientProgram, resolveClientConfig } from '../src/cli/echo-client.js';
import { buildServerProgram, resolveServerConfig } from '../src/cli/echo-server.js';
import { UsageError } from '../src/core/parse.js';
import { spawnCli } from './helpers.js';

/** What the command would print and exit with for `argv`, without running it. */
function refusal(name: string, program: Command, validate: (p: Command) => void, argv: string[]) {
  let printed = '';
  const quiet = { writeErr: (s: string) => (printed += s), writeOut: () => {} };
  for (const c of [program, ...program.commands]) c.configureOutput(quiet);
  try {
    program.parse(argv, { from: 'user' });
    const sub = program.commands.find((c) => c.name() === argv[0]);
    validate(sub ?? program);
  } catch (err) {
    if (!(err instanceof UsageError || err instanceof CommanderError)) throw err; // a crash, not a refusal
    if (err instanceof UsageError) printed = `${name}: ${err.message}\n`;
    const write = process.stderr.write;
    process.stderr.write = () => true; // reportFatal prints UsageErrors itself: keep the test quiet
    try {
      return { code: reportFatal(name, err), lines: printed.trim().split('\n') };
    } finally {
      process.stderr.write = write;
    }
  }
  return { code: 0, lines: [] };
}

const server = (argv: string[]) =>
  refusal('echo-server', buildServerProgram(), (p) => resolveServerConfig(p.opts()), [
    '--port',
    '0',
    ...argv,
  ]);
const client = (argv: string[]) => {
  const p = buildClientProgram().action(() => {}); // parse only: no connection
  p.commands.find((c) => c.name() === 'bench')!.action(() => {});
  return refusal(
    'echo-client',
    p,
    (c) => {
      if (c.name() === 'bench') resolveBenchOptions(c.opts(), c.processedArgs[0], c.processedArgs[1]);
      else resolveClientConfig(c.processedArgs[0], c.processedArgs[1], c.opts());
    },
    argv,
  );
};
const chat = (argv: string[]) =>
  refusal(
    'echo-chat',
    buildChatProgram(),
    (p) => resolveChatConfig(p.processedArgs[0], p.processedArgs[1], p.opts()),
    argv,
  );

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
  it.each(serverCases)('echo-server %j', (args, re) => {
    const r = server(args);
    expect(r.code).toBe(2);
    expect(r.lines).toHaveLength(1);
    expect(r.lines[0]).toMatch(/^echo-server: /);
    expect(r.lines[0]).toMatch(re);
  });

  it.each(clientCases)('echo-client %j', (args, re) => {
    const r = client(args);
    expect(r.code).toBe(2);
    expect(r.lines).toHaveLength(1);
    expect(r.lines[0]).toMatch(re);
  });

  it.each(chatCases)('echo-chat %j', (args, re) => {
    const r = chat(args);
    expect(r.code).toBe(2);
    expect(r.lines).toHaveLength(1);
    expect(r.lines[0]).toMatch(re);
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
