// What a misbehaving peer, terminal or input must not be able to do: stall the server through
// its log, hold a slot forever with a drip, loop a UDP echo with itself, or make any command
// print a stack trace.
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { createRequire } from 'node:module';
import { CommanderError } from 'commander';
import fc from 'fast-check';
import { describe, expect, it, onTestFinished } from 'vitest';
import { resolveBenchOptions } from '../src/cli/bench-cli.js';
import { buildChatProgram, resolveChatConfig } from '../src/cli/echo-chat.js';
import { buildClientProgram, resolveClientConfig } from '../src/cli/echo-client.js';
import { buildServerProgram, resolveServerConfig } from '../src/cli/echo-server.js';
import { UsageError } from '../src/core/parse.js';
import { startUdpEchoServer } from '../src/index.js';
import {
  afterTest,
  bin,
  connect,
  hasCommand,
  jsonLines,
  SERVER_MODES as MODES,
  readN,
  spawnServer,
} from './helpers.js';

describe('a log terminal nobody reads does not stop the server', () => {
  it.skipIf(!hasCommand('script'))(
    '1,000 connections logged to an unread pty: every echo is prompt',
    async () => {
      // -v logs two lines per connection: far more than a pty and a pipe hold (~69 KB + 64 KB)
      const s = spawn(
        'script',
        ['-qfec', `${process.execPath} ${bin('echo-server')} --port 0 -v --log-format pretty`, '/dev/null'],
        { stdio: ['pipe', 'pipe', 'ignore'] },
      );
      onTestFinished(() => {
        s.kill('SIGKILL');
      });
      let out = '';
      let onData!: (d: Buffer) => void;
      const listening = new Promise<RegExpExecArray>((resolve, reject) => {
        onData = (d: Buffer) => {
          out += d.toString();
          const m = /listening on [\d.]+:(\d+)/.exec(out);
          if (m) resolve(m);
        };
        s.once('close', () => reject(new Error(`the server ended before listening:\n${out}`)));
      });
      s.stdout.on('data', onData);
      const port = Number((await listening)[1]);
      s.stdout.off('data', onData);
      s.stdout.pause(); // nobody reads the terminal any more
      for (let i = 0; i < 1000; i++) {
        const c = await connect(port);
        c.end('x');
        const t0 = Date.now();
        expect((await readN(c, 1)).toString()).toBe('x');
        expect(Date.now() - t0, `echo ${i}`).toBeLessThan(2000);
        c.destroy();
      }
    },
    60_000,
  );
});

// each test waits out a server timer (a 1 s window, a 500 ms lifetime): all modes at once
describe.concurrent.each(MODES)('--mode %s: a slow drip cannot hold a slot', (_mode, args) => {
  it('--min-rate 100 (per 1 s window) closes a client sending 5 bytes a second, echoing what it sent', async () => {
    const srv = await spawnServer([...args, '--min-rate', '100', '--min-rate-window', '1s']);
    const c = await connect(srv.port);
    const got: Buffer[] = [];
    c.on('data', (d: Buffer) => got.push(d));
    const closed = once(c, 'end');
    let sent = 0;
    const drip = setInterval(() => {
      if (!c.writableEnded) {
        c.write('x');
        sent++;
      }
    }, 200);
    afterTest(() => clearInterval(drip));
    const t0 = Date.now();
    await closed;
    clearInterval(drip);
    expect(Date.now() - t0).toBeLessThan(5000);
    // the window closed after about five drips: some came back, only what was sent
    const back = Buffer.concat(got);
    expect(back.length).toBeGreaterThan(0);
    expect(back.toString()).toBe('x'.repeat(back.length));
    expect(back.length).toBeLessThanOrEqual(sent);
    c.end();
    await srv.waitStderr(/too slow \(--min-rate\)/);
    srv.child.kill('SIGTERM');
    expect((await srv.exit).code).toBe(0);
  });

  it('--max-lifetime 500ms ends even a busy connection, with a FIN after its echo', async () => {
    const srv = await spawnServer([...args, '--max-lifetime', '500ms']);
    // before the connect: the lifetime starts at the server's accept, which a loaded machine may
    // run well before this process sees its connect
    const t0 = Date.now();
    const c = await connect(srv.port);
    const closed = once(c, 'end');
    const pump = setInterval(() => c.writable && c.write('busy'), 20);
    afterTest(() => clearInterval(pump));
    c.resume();
    await closed;
    clearInterval(pump);
    expect(Date.now() - t0).toBeGreaterThanOrEqual(450);
    c.end();
    await srv.waitStderr(/max lifetime/);
    srv.child.kill('SIGTERM');
    expect((await srv.exit).code).toBe(0);
    const rec = jsonLines(srv.stderr()).find((l) => l.reason === 'max lifetime');
    expect(rec!.bytesOut).toBe(rec!.bytesIn);
  });
});

/** Send one UDP datagram whose source port is `srcPort`, through a raw socket (root). */
function forgeUdp(srcPort: number, dstPort: number, payload: Buffer): boolean {
  const koffi = createRequire(import.meta.url)('koffi');
  const lib = koffi.load('libc.so.6');
  const socket = lib.func('int socket(int, int, int)');
  const sendto = lib.func('long sendto(int, const void *, size_t, int, const void *, uint32_t)');
  const close = lib.func('int close(int)');
  const fd = socket(2, 3, 17); // AF_INET, SOCK_RAW, IPPROTO_UDP: we write the UDP header, the kernel the IP one
  if (fd < 0) return false;
  const udp = Buffer.alloc(8 + payload.length);
  udp.writeUInt16BE(srcPort, 0);
  udp.writeUInt16BE(dstPort, 2);
  udp.writeUInt16BE(udp.length, 4);
  udp.writeUInt16BE(0, 6); // no checksum (allowed over IPv4)
  payload.copy(udp, 8);
  const sa = Buffer.alloc(16);
  sa.writeUInt16LE(2, 0);
  sa.writeUInt16BE(dstPort, 2);
  Buffer.from([127, 0, 0, 1]).copy(sa, 4);
  const n = sendto(fd, udp, udp.length, 0, sa, 16);
  close(fd);
  return n === udp.length;
}

const isRoot = process.getuid?.() === 0;

describe('UDP never echoes to itself', () => {
  it.skipIf(!isRoot)(
    'a datagram forged with the server’s own address and port gets no reply (raw socket)',
    async () => {
      const srv = await startUdpEchoServer({ port: 0, rateLimit: 0 });
      onTestFinished(() => srv.close().then(() => {}));
      const port = srv.address.port;
      expect(forgeUdp(port, port, Buffer.from('loop?'))).toBe(true);
      // a real client after it: datagrams are handled in order, so once its echo is back the
      // forged one was handled, and a reply to it would have come back as another datagram in
      const dgram = await import('node:dgram');
      const c = dgram.createSocket('udp4');
      onTestFinished(() => {
        c.close();
      });
      for (let i = 1; i <= 2; i++) {
        c.send(`real ${i}`, port, '127.0.0.1');
        const [m] = await once(c, 'message');
        expect(m.toString()).toBe(`real ${i}`);
      }
      const t = srv.stats();
      expect(t.dropped.self).toBe(1);
      expect(t.datagramsIn).toBe(3); // the forged one and two real ones: no echo of itself came in
      expect(t.datagramsOut).toBe(2);
    },
  );
});

describe('no stack trace from any flag value', () => {
  // odd numbers, units, unicode, empty strings, IPv6 zones, names that do not resolve
  const values = fc.oneof(
    fc.constantFrom(
      '',
      '-1',
      '0',
      '1e99',
      'NaN',
      'Infinity',
      '0x10',
      '1.5',
      '99999999999999999999',
      '10ms',
      '1h',
      '2g',
      '64k',
      '∞',
      'ünïcødé',
      'fe80::1%eth0',
      '[::1]',
      '::',
      'no.such.host.invalid',
      '127.0.0.1:7',
      '10.0.0.0/33',
      ' ',
      '--',
    ),
    fc.string(),
    fc.integer().map(String),
  );
  const serverFlags = [
    '--host',
    '--port',
    '--workers',
    '--max-children',
    '--max-connections',
    '--max-connections-per-ip',
    '--idle-timeout',
    '--min-rate',
    '--min-rate-window',
    '--max-lifetime',
    '--grace',
    '--rate-limit',
    '--rate-burst',
    '--backlog',
    '--keepalive',
    '--keepalive-interval',
    '--keepalive-count',
    '--user-timeout',
    '--send-buffer',
    '--recv-buffer',
    '--linger',
    '--allow',
    '--deny',
    '--mode',
    '--log-format',
  ];
  const clientFlags = [
    '--port',
    '--message',
    '--count',
    '--interval',
    '--connect-timeout',
    '--timeout',
    '--retry',
    '--local-port',
    '--local-address',
    '--resend',
    '--datagram-size',
    '--keepalive',
    '--send-buffer',
    '--linger',
    '--user-timeout',
    '--log-format',
  ];
  const chatFlags = [
    '--host',
    '--port',
    '--name',
    '--connect-timeout',
    '--retry',
    '--allow',
    '--backlog',
    '--linger',
  ];
  const benchFlags = [
    '--connections',
    '--duration',
    '--requests',
    '--size',
    '--pipeline',
    '--rate',
    '--mode',
    '--warmup',
  ];

  /** Parse and resolve in-process: either a config or a usage error, nothing else. */
  const tryIt = (
    build: () => import('commander').Command,
    resolve: (p: import('commander').Command) => void,
  ) => {
    const p = build();
    p.exitOverride().configureOutput({ writeErr: () => {}, writeOut: () => {} });
    for (const c of p.commands) c.exitOverride().configureOutput({ writeErr: () => {}, writeOut: () => {} });
    return (argv: string[]) => {
      try {
        p.parse(argv, { from: 'user' });
        resolve(p);
      } catch (err) {
        if (err instanceof UsageError || err instanceof CommanderError) return;
        throw err;
      }
    };
  };
  const flagsAnd = (flags: string[], extra: string[][] = [[]]) =>
    fc.tuple(
      fc.array(fc.tuple(fc.constantFrom(...flags), values), { maxLength: 4 }),
      fc.constantFrom(...extra),
      fc.array(values, { maxLength: 2 }),
    );

  it('echo-server', () => {
    fc.assert(
      fc.property(flagsAnd(serverFlags, [[], ['--udp']]), ([pairs, extra]) => {
        tryIt(buildServerProgram, (p) => resolveServerConfig(p.opts()))([...pairs.flat(), ...extra]);
      }),
      { numRuns: 400 },
    );
  });

  it('echo-client (and bench)', () => {
    fc.assert(
      fc.property(flagsAnd(clientFlags, [[], ['--udp']]), ([pairs, extra, args]) => {
        tryIt(
          () => buildClientProgram().action(() => {}),
          (p) => resolveClientConfig(p.processedArgs[0], p.processedArgs[1], p.opts()),
        )([...args, ...pairs.flat(), ...extra]);
      }),
      { numRuns: 400 },
    );
    fc.assert(
      fc.property(flagsAnd(benchFlags, [[], ['--udp']]), ([pairs, extra, args]) => {
        const p = buildClientProgram();
        // parse only: the real action would run the bench
        const bench = p.commands.find((c) => c.name() === 'bench')!.action(() => {});
        tryIt(
          () => bench,
          (b) => resolveBenchOptions(b.opts(), b.processedArgs[0], b.processedArgs[1]),
        )([...args, ...pairs.flat(), ...extra]);
      }),
      { numRuns: 300 },
    );
  });

  it('echo-chat', () => {
    fc.assert(
      fc.property(
        flagsAnd(chatFlags, [[], ['--listen'], ['--listen', '--keep-open']]),
        ([pairs, extra, args]) => {
          tryIt(buildChatProgram, (p) => resolveChatConfig(p.processedArgs[0], p.processedArgs[1], p.opts()))(
            [...args, ...pairs.flat(), ...extra],
          );
        },
      ),
      { numRuns: 300 },
    );
  });

  it('a handful through the real commands: one line, exit 2 (bad input) or 1 (the system said no), no stack', async () => {
    for (const [cmd, args, want] of [
      ['echo-server', ['--port', '∞'], 2],
      ['echo-client', ['--local-address', 'a b', '-m', 'x'], 2],
      ['echo-client', ['bench', '--size', '1e99'], 2],
      ['echo-chat', ['--keep-open', '127.0.0.1', '1'], 2],
      // valid input the system refuses: an IPv6 zone that does not exist, a name that does not resolve
      ['echo-client', ['--local-address', 'fe80::1%nosuchif0', '-m', 'x'], 1],
      ['echo-chat', ['no.such.host.invalid', '7'], 1],
    ] as [string, string[], number][]) {
      const p = spawn(process.execPath, [bin(cmd), ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
      let err = '';
      p.stderr.setEncoding('utf8').on('data', (d: string) => {
        err += d;
      });
      const [code] = await once(p, 'close');
      expect(code, `${cmd} ${args.join(' ')}: ${err}`).toBe(want);
      expect(err.trim().split('\n')).toHaveLength(1);
      expect(err).not.toMatch(/\n\s+at /);
    }
  });
});
