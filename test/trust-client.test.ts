// echo-client against peers that misbehave: escapes on a terminal whatever stdin is, a
// flood of bytes never sent, a banner that never comes, a stalled write, a long transfer's
// progress, targets that cannot mean what they say, a TLS server met with plain bytes.
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { connectTcp } from '../src/core/connect.js';
import { explainError } from '../src/core/errors.js';
import { parseFault } from '../src/core/faults.js';
import { parseTarget, UsageError } from '../src/core/parse.js';
import { escapeForTerminal } from '../src/core/terminal.js';
import { startUdpEchoServer } from '../src/index.js';
import {
  afterTest,
  bin,
  echoServer,
  hasCommand,
  matrix,
  onPty,
  plainServer,
  runEchoClient,
  SERVER_MODES,
  spawnCli,
  spawnServer,
} from './helpers.js';

const hasScript = hasCommand('script');
if (!hasScript) console.warn('skipped the pty tests: `script` (util-linux) is not installed');

const ESC = '\x1b';
const BEL = '\x07';
/** What a hostile peer would like a terminal to act on. */
const HOSTILE = Buffer.from(
  `a${ESC}]52;c;aGk=${BEL}b${ESC}[2J${ESC}]0;pwned${BEL}${ESC}[?1049h\u009bX\u202eevil\u2066x\u2069\n`,
);

function tempFile(name: string, data: Buffer): string {
  const dir = mkdtempSync(path.join(tmpdir(), 'trust-client-'));
  afterTest(() => rmSync(dir, { recursive: true, force: true }));
  const file = path.join(dir, name);
  writeFileSync(file, data);
  return file;
}

const sh = (args: string[]) => args.map((a) => `'${a.replace(/'/g, "'\\''")}'`).join(' ');

/**
 * A shell command on a pseudo-terminal (util-linux `script`): its redirections decide which of
 * stdin, stdout and stderr stay on the terminal. Resolves with the terminal's bytes and the code.
 */
function onTerminal(command: string): Promise<{ screen: Buffer; code: number | null }> {
  const child = spawn('script', ['-qfec', command, '/dev/null'], { stdio: ['ignore', 'pipe', 'pipe'] });
  afterTest(() => {
    if (child.exitCode === null) child.kill('SIGKILL');
  });
  const out: Buffer[] = [];
  child.stdout!.on('data', (d: Buffer) => out.push(d));
  return new Promise((resolve) =>
    child.once('close', (code) => resolve({ screen: Buffer.concat(out), code })),
  );
}

const client = (...args: string[]) => sh([process.execPath, bin('echo-client'), ...args]);

/** `p` settles within `ms`, or the test fails saying what did not end. */
function within<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let t: NodeJS.Timeout;
  return Promise.race([
    p.finally(() => clearTimeout(t)),
    new Promise<never>((_, reject) => {
      t = setTimeout(() => reject(new Error(`${what} did not end within ${ms} ms`)), ms);
    }),
  ]);
}

function expectNothingRaw(screen: Buffer) {
  const text = screen.toString('latin1');
  expect(text).not.toContain(ESC);
  expect(text).not.toContain(BEL);
  expect(screen.includes(Buffer.from('\u009b'))).toBe(false);
  expect(screen.includes(Buffer.from('\u202e'))).toBe(false);
  expect(screen.includes(Buffer.from('\u2066'))).toBe(false);
}

describe('peer bytes on a terminal', () => {
  it('escapeForTerminal shows the bidi controls (Trojan Source) instead of obeying them', () => {
    for (const c of [0x202a, 0x202b, 0x202c, 0x202d, 0x202e, 0x2066, 0x2067, 0x2068, 0x2069]) {
      const out = escapeForTerminal(`x${String.fromCharCode(c)}y`);
      expect(out).toBe(`x<U+${c.toString(16).toUpperCase()}>y`);
    }
    expect(escapeForTerminal('שלום é 日本')).toBe('שלום é 日本');
  });

  it.skipIf(!hasScript)(
    'piped stdin, stdout on a terminal: every control is shown, none acted on',
    async () => {
      const srv = await echoServer();
      const input = tempFile('hostile', HOSTILE);
      const { screen, code } = await onTerminal(
        `${client('127.0.0.1', String(srv.address.port), '-q')} < ${sh([input])}`,
      );
      expect(code).toBe(0);
      expectNothingRaw(screen);
      const text = screen.toString('utf8');
      expect(text).toContain('^[]52;c;aGk=^G');
      expect(text).toContain('^[[2J');
      expect(text).toContain('M-^[X');
      expect(text).toContain('<U+202E>evil');
    },
  );

  it.skipIf(!hasScript)('the same for --udp piped', async () => {
    const srv = await startUdpEchoServer({ port: 0 });
    afterTest(async () => {
      await srv.close();
    });
    const input = tempFile('hostile', HOSTILE);
    const { screen, code } = await onTerminal(
      `${client('--udp', '-q', '127.0.0.1', String(srv.address.port))} < ${sh([input])}`,
    );
    expect(code).toBe(0);
    expectNothingRaw(screen);
    expect(screen.toString('utf8')).toContain('^[]52;c;aGk=^G');
  });

  it('piped stdout that is not a terminal stays byte for byte', async () => {
    const srv = await echoServer();
    const r = await runEchoClient(['-q', '127.0.0.1', String(srv.address.port)], HOSTILE);
    expect(r.code).toBe(0);
    expect(r.out.equals(HOSTILE)).toBe(true);
  });
});

/**
 * An echo server that, once `after` bytes have come in and gone back, sends `cap` bytes more,
 * unasked. `cut` says whether the client stopped it before it was done.
 */
async function flooder(after: number, cap: number) {
  const block = Buffer.alloc(1024 * 1024, 0x41);
  let written = 0;
  let resolveEnd: (cut: boolean) => void;
  const cut = new Promise<boolean>((r) => {
    resolveEnd = r;
  });
  const { port } = await plainServer((s) => {
    let read = 0;
    s.on('error', () => {});
    s.once('close', () => resolveEnd(written < cap));
    const pump = () => {
      while (written < cap && !s.destroyed) {
        written += block.length;
        if (!s.write(block)) return void s.once('drain', pump);
      }
      if (written >= cap) s.end();
    };
    s.on('data', (d: Buffer) => {
      const flooding = read >= after;
      read += d.length;
      if (flooding) return;
      s.write(d);
      if (read >= after) pump();
    });
    if (after === 0) pump();
  });
  return { port, cut };
}

describe('more bytes back than were sent', () => {
  const CAP = 512 * 1024 * 1024;

  it('piped: stops reading at once, exit 1, says how many came back beyond what was sent', async () => {
    const input = randomBytes(64 * 1024);
    const f = await flooder(input.length, CAP);
    const r = await within(runEchoClient(['127.0.0.1', String(f.port)], input), 20_000, 'echo-client');
    expect(r.code).toBe(1);
    expect(r.err).toMatch(/\d+ bytes came back beyond the 65536 sent/);
    expect(r.err).not.toMatch(/of \d+ bytes sent had come back/);
    expect(await f.cut).toBe(true);
  });

  it('piped: bytes that differ stop the reading at once as well', async () => {
    const f = await flooder(0, CAP);
    const r = await within(
      runEchoClient(['127.0.0.1', String(f.port)], randomBytes(64 * 1024)),
      20_000,
      'echo-client',
    );
    expect(r.code).toBe(1);
    expect(r.err).toMatch(/echo differs from what was sent at offset 0|came back beyond the 0 sent/);
    expect(await f.cut).toBe(true);
  });

  it('-m: the flood after the echo is cut off too', async () => {
    const f = await flooder(2, CAP);
    const r = await within(runEchoClient(['-m', 'hi', '127.0.0.1', String(f.port)]), 20_000, 'echo-client');
    expect(r.code).toBe(1);
    expect(r.err).toMatch(/bytes came back beyond the \d+ sent/);
    expect(await f.cut).toBe(true);
  });
});

// the tests of the next three blocks wait out a client's or a server's timer: all run at once
describe.concurrent('--banner from a server that sends none', () => {
  const silent = () => plainServer((s) => s.resume());

  it('-m: the banner timeout ends the command', async () => {
    const { port } = await silent();
    const c = spawnCli('echo-client', ['--banner', '--connect-timeout', '500ms', '-m', 'hi', String(port)]);
    const { code } = await within(c.exit, 10_000, 'echo-client --banner -m');
    expect(code).toBe(1);
    expect(c.stderr()).toMatch(/no banner line within 500 ms/);
  });

  it('piped: the same', async () => {
    const { port } = await silent();
    const r = await within(
      runEchoClient(['--banner', '--connect-timeout', '500ms', String(port)], 'hello\n'),
      10_000,
      'piped echo-client --banner',
    );
    expect(r.code).toBe(1);
    expect(r.err).toMatch(/no banner line within 500 ms/);
  });
});

describe.concurrent('--timeout bounds a stalled write as well as a silent read', () => {
  // every mode under test:e2e
  for (const [mode, args] of matrix(SERVER_MODES, ['evented', 'workers'])) {
    it(`piped, 3 MiB into stall-after=1m (${mode}): exit 1 with the bytes each way`, async () => {
      const srv = await spawnServer([...args, '--fault', 'stall-after=1m']);
      const t0 = Date.now();
      const r = await within(
        runEchoClient(['--timeout', '1s', '127.0.0.1', String(srv.port)], randomBytes(3 * 1024 * 1024)),
        20_000,
        'piped echo-client --timeout',
      );
      expect(r.code).toBe(1);
      expect(Date.now() - t0).toBeGreaterThanOrEqual(1000);
      expect(r.err).toMatch(/no byte moved either way for 1000 ms: \d+ bytes sent, 1048576 came back/);
    });
  }

  it('-m with a message larger than the stall: the wait ends, bytes each way said', async () => {
    const srv = await echoServer({ faults: [parseFault('stall-after=1k')] });
    const msg = 'x'.repeat(100_000);
    const r = await within(
      runEchoClient(['-m', msg, '--timeout', '1s', '127.0.0.1', String(srv.address.port)]),
      20_000,
      'echo-client -m --timeout',
    );
    expect(r.code).toBe(1);
    expect(r.err).toMatch(/1024 of 100000 bytes came back within 1000 ms/);
  });

  it('--count: the second round trip stalls and ends', async () => {
    const srv = await echoServer({ faults: [parseFault('stall-after=3')] });
    const r = await within(
      runEchoClient([
        '-m',
        'ab',
        '--count',
        '3',
        '--timeout',
        '500ms',
        '127.0.0.1',
        String(srv.address.port),
      ]),
      20_000,
      'echo-client --count --timeout',
    );
    expect(r.code).toBe(1);
    expect(r.out.toString()).toMatch(/seq=1/);
    expect(r.err).toMatch(/1 of 2 bytes came back within 500 ms/);
  });

  it.skipIf(!hasScript)('interactive: a typed line whose echo stalls ends the session', async () => {
    const srv = await echoServer({ faults: [parseFault('stall-after=0')] });
    const t = onPty('echo-client', ['--timeout', '500ms', '127.0.0.1', String(srv.address.port)]);
    await t.waitFor(/Input message/);
    t.type('hello\r');
    await t.waitFor(/0 of 6 bytes came back within 500 ms/);
    expect(await within(t.exit, 10_000, 'interactive echo-client')).not.toBe(null);
  });

  it('-m: a server that echoes but never closes does not hold the command', async () => {
    const { port } = await plainServer((s) => s.on('data', (d) => s.write(d)));
    const r = await within(
      runEchoClient(['-m', 'hi', '--timeout', '500ms', '127.0.0.1', String(port)]),
      10_000,
      'echo-client -m',
    );
    expect(r.code).toBe(0);
    expect(r.out.toString()).toBe('hi\n');
  });

  it('piped: the same, once every byte is back', async () => {
    const { port } = await plainServer((s) => s.on('data', (d) => s.write(d)));
    const r = await within(
      runEchoClient(['--timeout', '500ms', '127.0.0.1', String(port)], 'hello\n'),
      10_000,
      'piped echo-client',
    );
    expect(r.code).toBe(0);
    expect(r.out.toString()).toBe('hello\n');
  });
});

describe.concurrent('progress of a long piped transfer', () => {
  it.skipIf(!hasScript)(
    'stderr on a terminal: bytes each way and a rate, then the line is cleared',
    async () => {
      const srv = await echoServer({ faults: [parseFault('bandwidth=64k')] });
      const input = tempFile('in', randomBytes(96 * 1024));
      const { screen, code } = await onTerminal(
        `${client('127.0.0.1', String(srv.address.port))} < ${sh([input])} > /dev/null`,
      );
      expect(code).toBe(0);
      const text = screen.toString('utf8');
      const line = String.raw`\d[\d.]* [KM]?i?B sent, \d[\d.]* [KM]?i?B back, \d[\d.]* [KM]?i?B/s`;
      expect(text).toMatch(new RegExp(`\r${ESC}\\[2K${line}`));
      expect(text).toMatch(/98304 bytes sent, all came back identical/);
    },
  );

  it.skipIf(!hasScript)('--udp piped: the same line', async () => {
    const srv = await startUdpEchoServer({ port: 0, faults: [parseFault('latency=100ms')] });
    afterTest(async () => {
      await srv.close();
    });
    const input = tempFile('lines', Buffer.from('a line of text\n'.repeat(12)));
    const { screen, code } = await onTerminal(
      `${client('--udp', '127.0.0.1', String(srv.address.port))} < ${sh([input])} > /dev/null`,
    );
    expect(code).toBe(0);
    expect(screen.toString('utf8')).toMatch(new RegExp(`\r${ESC}\\[2K\\d+ B sent, \\d+ B back, `));
  });

  it.skipIf(!hasScript)('-q: no progress', async () => {
    const srv = await echoServer({ faults: [parseFault('bandwidth=64k')] });
    const input = tempFile('in', randomBytes(48 * 1024));
    const { screen, code } = await onTerminal(
      `${client('-q', '127.0.0.1', String(srv.address.port))} < ${sh([input])} > /dev/null`,
    );
    expect(code).toBe(0);
    expect(screen.toString('utf8')).not.toMatch(/sent,/);
  });

  it('stderr not a terminal: no progress line', async () => {
    const srv = await echoServer({ faults: [parseFault('bandwidth=64k')] });
    const r = await runEchoClient(['127.0.0.1', String(srv.address.port)], randomBytes(48 * 1024));
    expect(r.code).toBe(0);
    expect(r.err).not.toContain('\r');
    expect(r.err).not.toContain(ESC);
    expect(r.err).not.toMatch(/B\/s/);
  });
});

describe('targets', () => {
  it('a bare IPv6 literal with a port is refused, naming the bracketed form', async () => {
    expect(() => parseTarget('::1:7103', undefined, { host: '127.0.0.1', port: '7007' })).toThrow(
      /\[::1\]:7103/,
    );
    expect(() => parseTarget('2001:db8::1:80', undefined, { host: '127.0.0.1', port: '7007' })).toThrow(
      UsageError,
    );
    const r = await runEchoClient(['-m', 'hi', '::1:7103']);
    expect(r.code).toBe(2);
    expect(r.err).toMatch(/\[::1\]:7103/);
  });

  it('IPv6 literals that are not ambiguous still parse', () => {
    const d = { host: '127.0.0.1', port: '7007' };
    expect(parseTarget('::1', undefined, d)).toEqual({ host: '::1', port: 7007 });
    expect(parseTarget('fe80::1', undefined, d)).toEqual({ host: 'fe80::1', port: 7007 });
    expect(parseTarget('::ffff:127.0.0.1', undefined, d)).toEqual({ host: '::ffff:127.0.0.1', port: 7007 });
    expect(parseTarget('1:2:3:4:5:6:7:8', undefined, d)).toEqual({ host: '1:2:3:4:5:6:7:8', port: 7007 });
    expect(parseTarget('[::1]:7103', undefined, d)).toEqual({ host: '::1', port: 7103 });
    expect(parseTarget('::1:7103', '9', d)).toEqual({ host: '::1:7103', port: 9 });
  });

  it('ENOTFOUND names the host it could not resolve', async () => {
    // the error dns.lookup gives for an unknown name, without asking a DNS server
    const lookup = ((hostname: string, _o: unknown, cb: (err: Error) => void) => {
      const err = Object.assign(new Error(`getaddrinfo ENOTFOUND ${hostname}`), {
        errno: -3008,
        code: 'ENOTFOUND',
        syscall: 'getaddrinfo',
        hostname,
      });
      process.nextTick(cb, err);
    }) as never;
    const err = await connectTcp({ host: 'no-such-host.invalid', port: 7, lookup }).then(
      () => undefined,
      (e: unknown) => e,
    );
    const line = explainError(err, { role: 'client' }).line;
    expect(line).toMatch(/^cannot resolve no-such-host\.invalid: getaddrinfo ENOTFOUND — /);
  });
});

describe('a TLS server met with plain bytes', () => {
  it('it closes at once (FIN): the explanation says add --tls, -m and piped', async () => {
    const { port } = await plainServer((s) => s.once('data', () => s.end()));
    const m = await runEchoClient(['-m', 'hi', '127.0.0.1', String(port)]);
    expect(m.code).toBe(1);
    expect(m.err).toMatch(/add --tls/i);
    const p = await runEchoClient(['127.0.0.1', String(port)], 'hello\n');
    expect(p.code).toBe(1);
    expect(p.err).toMatch(/add --tls/i);
  });

  it('it closes at once with our bytes unread (RST): the explanation says add --tls', async () => {
    const { port } = await plainServer((s) => s.once('data', () => s.resetAndDestroy()));
    const p = await runEchoClient(['127.0.0.1', String(port)], randomBytes(4 * 1024 * 1024));
    expect(p.code).toBe(1);
    expect(p.err).toMatch(/add --tls/i);
  });
});
