// nc's spellings (-l PORT, a positional port, -k, -4/-6, -p in bench, -w SECONDS), one meaning per
// short letter across the commands (-m is echo-client's --message), echo-lab list's columns and
// counts in words. Parsed in-process through the commands' own builders and resolvers, and
// through the real commands in every server mode.

import path from 'node:path';
import type { Command } from 'commander';
import { describe, expect, it } from 'vitest';
import { describeTally, routesFromHaproxyLog, tally } from '../deploy/cluster-tally.js';
import { type BenchFlags, formatBench, resolveBenchOptions } from '../src/cli/bench-cli.js';
import { buildChatProgram, type ChatFlags, resolveChatConfig } from '../src/cli/echo-chat.js';
import { buildClientProgram, type ClientFlags, resolveClientConfig } from '../src/cli/echo-client.js';
import { buildServerProgram, resolveServerConfig, type ServerFlags } from '../src/cli/echo-server.js';
import { UsageError } from '../src/core/parse.js';
import {
  echoServer,
  hasCommand,
  ROOT,
  runCommand,
  runEchoClient,
  SERVER_MODES,
  spawnCli,
} from './helpers.js';

const quiet = (p: Command) => {
  for (const c of [p, ...p.commands])
    c.exitOverride().configureOutput({ writeErr: () => {}, writeOut: () => {} });
  return p;
};

const server = (argv: string[]) => {
  const p = quiet(buildServerProgram());
  p.parse(argv, { from: 'user' });
  return resolveServerConfig(p.opts<ServerFlags>(), p.processedArgs as string[]);
};
const client = (argv: string[]) => {
  const p = quiet(buildClientProgram().action(() => {}));
  p.parse(argv, { from: 'user' });
  const [h, port] = p.processedArgs as [string | undefined, string | undefined];
  return resolveClientConfig(h, port, p.opts<ClientFlags>());
};
const bench = (argv: string[]) => {
  const p = quiet(buildClientProgram());
  const b = p.commands.find((c) => c.name() === 'bench')!.action(() => {});
  p.parse(['bench', ...argv], { from: 'user' });
  const [h, port] = b.processedArgs as [string | undefined, string | undefined];
  return resolveBenchOptions(b.opts<BenchFlags>(), h, port);
};
const chat = (argv: string[]) => {
  const p = quiet(buildChatProgram());
  p.parse(argv, { from: 'user' });
  const [h, port] = p.processedArgs as [string | undefined, string | undefined];
  return resolveChatConfig(h, port, p.opts<ChatFlags>());
};

/** The usage error `fn` throws (a refusal, not a crash). */
const refusal = (fn: () => unknown): string => {
  try {
    fn();
  } catch (err) {
    if (err instanceof UsageError) return err.message;
    throw err;
  }
  throw new Error('accepted');
};

describe('echo-server: nc -l spellings', () => {
  it.each([
    [['-l', '7007'], '127.0.0.1', 7007],
    [['7007'], '127.0.0.1', 7007],
    [['-l', '-p', '7007'], '127.0.0.1', 7007],
    [['-lk', '7007'], '127.0.0.1', 7007],
    [['-l', '-k', '127.0.0.2', '7007'], '127.0.0.2', 7007],
    [['-4', '-l', '7007'], '127.0.0.1', 7007],
    [['-6', '-l', '7007'], '::1', 7007],
    [['-6', '--host', '::', '7007'], '::', 7007],
    [['-6'], '::1', 7007],
    [['-4', '--udp', '0'], '127.0.0.1', 0],
    [['-6', '--udp', '0'], '::1', 0],
  ])('%j listens on %s port %i', (argv, host, port) => {
    const cfg = server(argv);
    expect(cfg.host).toBe(host);
    expect(cfg.port).toBe(port);
  });

  it.each([
    [['-4', '--host', '::1'], '-4: cannot be used with --host ::1 (an IPv6 address)'],
    [['-6', '-l', '127.0.0.1', '7007'], '-6: cannot be used with HOST 127.0.0.1 (an IPv4 address)'],
    [
      ['-6', '--host', 'localhost'],
      '-6: cannot be used with --host localhost (a name): give an IPv6 address',
    ],
    [['-4', '-6'], '-4: cannot be used with -6'],
    [['-6', '--unix', '/tmp/x.sock'], '-6: cannot be used with --unix'],
    [['-l', '-p', '7007', '7008'], '--port: cannot be used with a PORT argument'],
    [['--host', '127.0.0.2', '127.0.0.3', '7007'], '--host: cannot be used with a HOST argument'],
    [['-l', 'localhost'], 'PORT: missing after localhost'],
    [['-w', '5'], '-w: is echo-client'],
  ])('%j is refused: %s', (argv, msg) => {
    expect(refusal(() => server(argv))).toContain(msg);
  });

  it('-w names what to type instead', () => {
    expect(refusal(() => server(['-w', '5']))).toMatch(/type --idle-timeout 5s$/);
  });
});

describe('-m means --message, in every command', () => {
  it('echo-server -m MODE: exit 2 naming --mode MODE', () => {
    expect(refusal(() => server(['-m', 'workers', '--workers', '2']))).toBe(
      "-m: is echo-client's --message; for the server's mode type --mode workers",
    );
    expect(server(['--mode', 'workers', '--workers', '2']).mode).toBe('workers');
  });

  it('echo-client bench -m MODE: exit 2 naming --mode MODE', () => {
    expect(refusal(() => bench(['-m', 'stream']))).toBe(
      "-m: is echo-client's --message; for the bench's mode type --mode stream",
    );
  });

  it('echo-client -m is still --message', () => {
    expect(client(['-m', 'hi']).message).toBe('hi');
  });

  it('the help shows no -m next to the server mode', async () => {
    const help = quiet(buildServerProgram()).helpInformation();
    expect(help).toMatch(/--mode <mode>/);
    expect(help).not.toMatch(/-m,/);
  });

  it('no short letter means two things across the commands', () => {
    const meaning = new Map<string, Set<string>>();
    const cp = buildClientProgram();
    const programs = [
      buildServerProgram(),
      cp,
      cp.commands.find((c) => c.name() === 'bench')!,
      buildChatProgram(),
    ];
    for (const p of programs)
      for (const o of p.options) {
        if (!o.short || o.hidden) continue;
        // -4/-6 mean the address family everywhere; a long name tells the meaning otherwise
        const what = o.long ?? o.short;
        if (!meaning.has(o.short)) meaning.set(o.short, new Set());
        meaning.get(o.short)!.add(what);
      }
    const clashes = [...meaning].filter(([, s]) => s.size > 1).map(([k, s]) => `${k}: ${[...s].join(' / ')}`);
    expect(clashes).toEqual([]);
  });
});

describe('echo-client: -w SECONDS as nc, -4/-6, nc -l refused with what to type', () => {
  it('-w 2: a bare number is seconds; it bounds the reply and the connect', () => {
    const c = client(['-w', '2', '-m', 'x']);
    expect(c.timeoutMs).toBe(2000);
    expect(c.connectTimeoutMs).toBe(2000);
  });

  it('-w longer than --connect-timeout leaves the connect bound as it was', () => {
    const c = client(['-w', '30', '--connect-timeout', '3s', '-m', 'x']);
    expect(c.timeoutMs).toBe(30_000);
    expect(c.connectTimeoutMs).toBe(3000);
  });

  it.each([
    [['-w', '2', '--timeout', '1s'], '-w: cannot be used with --timeout'],
    [['-w', 'soon'], '-w soon: must be a duration'],
    [['-6', '127.0.0.1', '7007'], '-6: cannot be used with HOST 127.0.0.1 (an IPv4 address)'],
    [['-4', '[::1]:7007'], '-4: cannot be used with HOST ::1 (an IPv6 address)'],
    [['-l', '7007'], 'echo-client connects; to listen type echo-server -l 7007'],
    [['-k'], 'echo-server always does'],
  ])('%j is refused: %s', (argv, msg) => {
    expect(refusal(() => client(argv))).toContain(msg);
  });

  it('-6 alone goes to [::1]:7007, -4 alone to 127.0.0.1:7007', () => {
    expect(client(['-6', '-m', 'x'])).toMatchObject({ host: '::1', port: 7007, family: 6 });
    expect(client(['-4', '-m', 'x'])).toMatchObject({ host: '127.0.0.1', port: 7007, family: 4 });
  });
});

describe('echo-client bench: -p PORT, -4/-6', () => {
  it('-p PORT, -6', () => {
    expect(bench(['-p', '7010'])).toMatchObject({ host: '127.0.0.1', port: 7010 });
    expect(bench(['-6', '-p', '7010'])).toMatchObject({ host: '::1', port: 7010, family: 6 });
    expect(bench(['-4', 'localhost', '7010'])).toMatchObject({ host: 'localhost', family: 4 });
  });

  it.each([
    [['-p', '1', '127.0.0.1', '2'], '--port: cannot be used with a PORT argument'],
    [['-4', '::1', '7007'], '-4: cannot be used with HOST ::1'],
    [['-6', '--target', '127.0.0.1:7007'], '-6: cannot be used with --target 127.0.0.1'],
    [['-4', '-6'], '-4: cannot be used with -6'],
    [['-6', '--unix', '/tmp/x.sock'], '-6'],
  ])('%j is refused: %s', (argv, msg) => {
    expect(refusal(() => bench(argv))).toContain(msg);
  });
});

describe('echo-chat: nc -l PORT, -4/-6 against the address, -w', () => {
  it.each([
    [['-l', '7008'], '127.0.0.1', 7008],
    [['-l', '127.0.0.2', '7008'], '127.0.0.2', 7008],
    [['-lk', '-p', '7008'], '127.0.0.1', 7008],
    [['-l', '-6', '7008'], '::1', 7008],
  ])('%j listens on %s port %i', (argv, host, port) => {
    expect(chat(argv).listen).toMatchObject({ host, port });
  });

  it.each([
    [['-l', '-4', '--host', '::1'], '-4: cannot be used with --host ::1'],
    [['-l', '-p', '1', '7008'], '--port: cannot be used with a PORT argument'],
    [['-6', '127.0.0.1', '7008'], '-6: cannot be used with HOST 127.0.0.1'],
    [['-w', '5', '127.0.0.1', '7008'], 'type --connect-timeout 5s'],
  ])('%j is refused: %s', (argv, msg) => {
    expect(refusal(() => chat(argv))).toContain(msg);
  });
});

// each runs the commands against its own server on port 0, mostly waiting on their timers
// (-w, bench -d): they run at once
describe.concurrent('the real commands', () => {
  const listening = /listening on (?:\[([^\]]+)\]|([\d.]+)):(\d+)/;

  it.each(SERVER_MODES)(
    'echo-server -6 -l -k 0 (%s): on [::1], echo-client -6 -w 5 -p PORT gets the echo',
    async (_m, extra) => {
      const srv = spawnCli('echo-server', ['-6', '-l', '-k', '0', '--log-format', 'json', ...extra]);
      const m = await srv.waitStderr(listening);
      expect(m[1]).toBe('::1');
      const c = spawnCli('echo-client', ['-6', '-w', '5', '-p', m[3]!, '-m', 'six']);
      expect((await c.exit).code, c.stderr()).toBe(0);
      expect(c.stdout()).toBe('six\n');
      srv.child.kill('SIGTERM');
      expect((await srv.exit).code).toBe(0);
    },
  );

  it('echo-server --udp -4 0 / -6 0: each family, echo-client --udp -4/-6 -p PORT', async () => {
    for (const fam of ['-4', '-6']) {
      const srv = spawnCli('echo-server', ['--udp', fam, '0', '--log-format', 'json']);
      const m = await srv.waitStderr(listening);
      expect(m[1] ?? m[2]).toBe(fam === '-6' ? '::1' : '127.0.0.1');
      const c = spawnCli('echo-client', ['--udp', fam, '-w', '2', '-p', m[3]!, '-m', 'dgram']);
      expect((await c.exit).code, c.stderr()).toBe(0);
      expect(c.stdout()).toBe('dgram\n');
      srv.child.kill('SIGTERM');
      await srv.exit;
    }
  });

  it('echo-client bench -6 -p PORT (TCP and UDP) measures against [::1]', async () => {
    for (const udp of [[], ['--udp']]) {
      const srv = spawnCli('echo-server', [...udp, '-6', '0', '--log-format', 'json']);
      const port = (await srv.waitStderr(listening))[3]!;
      const b = spawnCli('echo-client', [
        'bench',
        ...udp,
        '-6',
        '-p',
        port,
        '-c',
        '2',
        '-d',
        '300ms',
        '--warmup',
        '0',
        '--json',
      ]);
      expect((await b.exit).code, b.stderr()).toBe(0);
      expect(JSON.parse(b.stdout()).count).toBeGreaterThan(0);
    }
  });

  it('echo-chat -l -6 0 listens on [::1]; echo-chat -6 reaches it', async () => {
    const l = spawnCli('echo-chat', ['-l', '-6', '0'], { stdin: 'pipe' });
    const port = (await l.waitStderr(listening))[3]!;
    const c = spawnCli('echo-chat', ['-6', '::1', port], { stdin: 'pipe' });
    await l.waitStderr(/peer \[?::1\]?:\d+ connected/);
    c.child.stdin!.end('hello from six\n');
    await l.waitStdout(/hello from six/);
    l.child.stdin!.end();
    expect((await c.exit).code, c.stderr()).toBe(0);
    expect((await l.exit).code, l.stderr()).toBe(0);
  });

  it('echo-server -m workers: exit 2, one line naming --mode workers', async () => {
    const p = spawnCli('echo-server', ['-m', 'workers']);
    expect((await p.exit).code).toBe(2);
    expect(p.stderr()).toBe(
      "echo-server: -m: is echo-client's --message; for the server's mode type --mode workers\n",
    );
  });

  it('echo-client -w 1 against a server that never answers: gives up after about a second, exit 1', async () => {
    const srv = spawnCli('echo-server', ['0', '--fault', 'blackhole', '--log-format', 'json']);
    const port = (await srv.waitStderr(listening))[3]!;
    const t0 = Date.now();
    const c = spawnCli('echo-client', ['-w', '1', port, '-m', 'anyone?']);
    expect((await c.exit).code).toBe(1);
    const took = Date.now() - t0;
    expect(took).toBeGreaterThanOrEqual(1000);
    expect(took).toBeLessThan(8000);
    expect(c.stderr()).toMatch(/1000 ms|1 s/);
  });
});

describe('echo-lab list and counts in words', () => {
  it('echo-lab list: every summary starts in one column, two spaces after the longest name', async () => {
    const p = spawnCli('echo-lab', ['list']);
    expect((await p.exit).code).toBe(0);
    const lines = p.stdout().trimEnd().split('\n');
    expect(lines.length).toBeGreaterThan(5);
    const names = lines.map((l) => l.split(' ')[0]!);
    const width = Math.max(...names.map((n) => n.length)) + 2;
    for (const [i, l] of lines.entries()) {
      expect(l.slice(0, width).trimEnd(), l).toBe(names[i]);
      expect(l[width], l).not.toBe(' ');
    }
  });

  it('echo-lab --help: the scenario table is aligned the same way', async () => {
    const p = spawnCli('echo-lab', ['--help']);
    expect((await p.exit).code).toBe(0);
    const rows = p.stdout().split('Scenarios:\n')[1]!.split('\n\n')[0]!.split('\n');
    const starts = new Set(rows.map((r) => /^ {2}\S+ +/.exec(r)![0].length));
    expect(starts.size).toBe(1);
  });

  it('formatBench: "1 connection"', () => {
    const r = {
      mode: 'pingpong',
      connections: 1,
      duration_s: 1,
      count: 1,
      rate_per_s: 1,
      mb_per_s: 0,
      latency_us: { p50: 1, p90: 1, p99: 1, p999: 1, max: 1, mean: 1 },
      errors: {},
      mismatches: 1,
    };
    const out = formatBench(r, '127.0.0.1:7007');
    expect(out).toMatch(/\(pingpong, 1 connection\)/);
    expect(out).toMatch(/1 MISMATCH\b/);
  });

  it('echo-client --count: "1 byte from"; piped: "1 byte sent"', async () => {
    const srv = await echoServer();
    const c = spawnCli('echo-client', ['-m', 'x', '--count', '2', String(srv.address.port)]);
    expect((await c.exit).code, c.stderr()).toBe(0);
    expect(c.stdout()).toMatch(/^1 byte from 127\.0\.0\.1:\d+: seq=1 /);
    const piped = await runEchoClient([String(srv.address.port)], 'x');
    expect(piped.code, piped.err).toBe(0);
    expect(piped.err).toMatch(/1 byte sent, all came back identical/);
    const u = spawnCli('echo-server', ['--udp', '0', '--log-format', 'json']);
    const uport = (await u.waitStderr(/listening on [\d.]+:(\d+)/))[1]!;
    const ud = spawnCli('echo-client', ['--udp', '-m', 'x', '--count', '2', uport]);
    expect((await ud.exit).code, ud.stderr()).toBe(0);
    expect(ud.stdout()).toMatch(/^1 byte from /);
  });

  it('echo-server --mode fork --max-children 1, --mode workers --workers 1: no "1 children", "1 workers"', async () => {
    const f = spawnCli('echo-server', ['0', '--mode', 'fork', '--max-children', '1']);
    await f.waitStderr(/listening on/);
    expect(f.stderr()).toMatch(/at most 1 child\)/);
    const w = spawnCli('echo-server', ['0', '--mode', 'workers', '--workers', '1']);
    await w.waitStderr(/1 worker\b|1 workers\b/);
    expect(w.stderr()).not.toMatch(/1 workers/);
  });
});

describe('npm run cluster-demo tells what happened', () => {
  const line = (port: number, to: string, bytes: number) =>
    `<6>127.0.0.9:${port} [03/Dec/2026:14:28:13.472] echo_in echo_servers/${to} 1/0/684 ${bytes} -- 30/30/29/9/0 0/0`;

  it('counts each client where the balancer sent it; a client with every byte back is never "cut"', () => {
    const log = [
      line(40001, 'e1', 655360),
      line(40002, 'e2', 229376),
      line(40003, 'e3', 655360),
      '[WARNING]  (16040) : Server echo_servers/e2 is DOWN, reason: Layer4 connection problem',
      line(40004, 'e2', 655360),
      '<6>127.0.0.10:40005 [03/Dec/2026:14:28:13.472] echo_in echo_servers/e1 1/0/684 1 -- 1/1/0/0/0 0/0',
    ].join('\n');
    const routes = routesFromHaproxyLog(log, '127.0.0.9');
    expect([...routes]).toEqual([
      [40001, 'e1'],
      [40002, 'e2'],
      [40003, 'e3'],
      [40004, 'e2'],
    ]);
    const size = 655360;
    const results = [
      { ok: true, got: size, port: 40001, size },
      { ok: false, got: 229376, port: 40002, size },
      { ok: true, got: size, port: 40003, size },
      { ok: true, got: size, port: 40004, size },
      { ok: true, got: size, port: 40009, size },
    ];
    const t = tally(results, routes, ['e1', 'e2', 'e3'], 'e2');
    expect([...t.perInstance]).toEqual([
      ['e1', 1],
      ['e2', 2],
      ['e3', 1],
    ]);
    expect(t.unrouted.map((r) => r.port)).toEqual([40009]);
    expect(describeTally(t, 'e2')).toEqual([
      'connections per instance: e1 1, e2 2 (killed), e3 1',
      'clients on e1 and e3: 2, all bytes back: 2 of 2; bytes lost: 0',
      'clients on e2: 2, 1 cut mid-stream after 229376 bytes (their instance died); 1 had every byte back before it died',
    ]);
  });

  it.skipIf(!hasCommand('haproxy', '-v'))(
    'the real demo: 10 clients per instance, and only clients that lost bytes are listed as cut',
    { timeout: 60_000 },
    async () => {
      const r = await runCommand(process.execPath, [
        '--import',
        'tsx',
        path.join(ROOT, 'deploy', 'cluster-demo.ts'),
      ]);
      const out = r.out.toString();
      expect(r.code, `${out}\n${r.err}`).toBe(0);
      expect(out).toMatch(/^connections per instance: e1 10, e2 10 \(killed\), e3 10$/m);
      expect(out).toMatch(/^clients on e1 and e3: 20, all bytes back: 20 of 20; bytes lost: 0$/m);
      const cut = /^clients on e2: 10, (\d+) cut mid-stream after ([\d, ]+) bytes/m.exec(out);
      expect(cut, out).not.toBeNull();
      for (const n of cut![2]!.split(', ').map(Number)) expect(n).toBeLessThan(40 * 16384);
    },
  );
});
