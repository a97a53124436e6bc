// A log that cannot be written (its reader left, a full disk) never stops serving nor keeps a
// process alive; with --log-format json every stderr line is JSON; metrics move as bytes flow;
// health checks are not errors; the metrics port drops half-sent requests.

import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import dgram from 'node:dgram';
import { once } from 'node:events';
import fs from 'node:fs';
import net from 'node:net';
import tls from 'node:tls';
import { describe, expect, it } from 'vitest';
import { afterTest, bin, jsonLines, matrix, until } from './helpers.js';

/**
 * Where the servers whose stderr may say nothing listen: an address of their own, so that `ss`
 * cannot mistake another socket of the process (the start-up check of the shared-read accept
 * path listens briefly on 127.0.0.1) for the server's.
 */
const HOST = '127.0.0.3';

/** The port `pid` listens on at HOST (TCP or UDP), as ss shows it: its stderr may say nothing. */
async function portOf(pid: number, udp = false): Promise<number> {
  let port = 0;
  await until(
    () => {
      const out = spawnSync('ss', [udp ? '-lunpH' : '-ltnpH'], { encoding: 'utf8' }).stdout;
      for (const line of out.split('\n')) {
        if (!line.includes(`pid=${pid},`)) continue;
        const m = line.split(/\s+/)[3]?.match(/^127\.0\.0\.3:(\d+)$/);
        if (m) port = Number(m[1]);
      }
      return port > 0;
    },
    15_000,
    `pid ${pid} listening`,
  );
  return port;
}

function spawnWith(name: string, args: string[], stderr: 'pipe' | number): ChildProcess {
  const child = spawn(process.execPath, [bin(name), ...args], { stdio: ['ignore', 'ignore', stderr] });
  afterTest(() => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  });
  return child;
}

/** SIGTERM, then the time until the process has ended (rejects after `boundMs`). */
async function termination(child: ChildProcess, boundMs = 8_000): Promise<number> {
  const t0 = performance.now();
  // 'close': the process has exited and its stdout/stderr are read to the end ('exit' can come
  // before its last lines, the totals among them)
  const exited = once(child, 'close');
  child.kill('SIGTERM');
  let timer: NodeJS.Timeout | undefined;
  const bound = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`still alive ${boundMs} ms after SIGTERM`)), boundMs);
  });
  try {
    await Promise.race([exited, bound]);
  } finally {
    clearTimeout(timer);
  }
  return performance.now() - t0;
}

/** One echo over a new connection (TLS when asked). */
async function echoOnce(port: number, useTls: boolean, payload: string, host = HOST): Promise<string> {
  const s = useTls ? tls.connect({ port, host, rejectUnauthorized: false }) : net.connect({ port, host });
  afterTest(() => {
    s.destroy();
  });
  await once(s, useTls ? 'secureConnect' : 'connect');
  s.write(payload);
  let got = '';
  s.setEncoding('utf8');
  for await (const chunk of s) {
    got += chunk;
    if (got.length >= payload.length) break;
  }
  s.destroy();
  return got;
}

async function udpEcho(port: number, payload: string): Promise<string> {
  const s = dgram.createSocket('udp4');
  afterTest(() => {
    try {
      s.close();
    } catch {}
  });
  s.send(payload, port, HOST);
  const [msg] = (await once(s, 'message')) as [Buffer];
  s.close();
  return msg.toString();
}

/** Ten echoes, one connection (or datagram) each: every one must come back. */
async function tenEchoes(port: number, kind: { udp?: boolean; tls?: boolean }, host = HOST): Promise<void> {
  for (let i = 0; i < 10; i++) {
    const payload = `hello ${i}\n`;
    const got = kind.udp
      ? await udpEcho(port, payload)
      : await echoOnce(port, kind.tls === true, payload, host);
    expect(got).toBe(payload);
  }
}

const MODES: [string, string[], { udp?: boolean; tls?: boolean }][] = [
  ['evented', [], {}],
  ['iterative', ['--mode', 'iterative'], {}],
  ['workers', ['--mode', 'workers', '--workers', '2'], {}],
  ['fork', ['--mode', 'fork'], {}],
  ['udp', ['--udp'], { udp: true }],
  ['tls', ['--tls'], { tls: true }],
];

describe('a log nobody can write', () => {
  // every mode under test:e2e; evented, fork (children share the stderr) and UDP always
  describe.each(matrix(MODES, ['evented', 'fork', 'udp']))('%s', (_name, args, kind) => {
    it('stderr whose reader left (EPIPE): echoes answered, SIGTERM ends it', async () => {
      const child = spawnWith(
        'echo-server',
        ['--host', HOST, '--port', '0', '-v', '--log-format', 'json', ...args],
        'pipe',
      );
      // read the first line, then leave as `| head -c 100` does
      await once(child.stderr!, 'data');
      child.stderr!.destroy();
      const port = await portOf(child.pid!, kind.udp);
      await tenEchoes(port, kind);
      expect(await termination(child)).toBeLessThan(8_000);
    });

    it('stderr on a full disk (/dev/full, ENOSPC): echoes answered, SIGTERM ends it', async () => {
      const fd = fs.openSync('/dev/full', 'w');
      const child = spawnWith(
        'echo-server',
        ['--host', HOST, '--port', '0', '-v', '--log-format', 'json', ...args],
        fd,
      );
      fs.closeSync(fd);
      const port = await portOf(child.pid!, kind.udp);
      await tenEchoes(port, kind);
      expect(await termination(child)).toBeLessThan(8_000);
    });
  });

  it.each(MODES)(
    '%s: --trace-file on a full disk: echoes answered, said once, SIGTERM ends it',
    async (_n, args, kind) => {
      const child = spawnWith(
        'echo-server',
        [
          '--host',
          HOST,
          '--port',
          '0',
          '--log-format',
          'json',
          '--trace',
          '--trace-file',
          '/dev/full',
          ...args,
        ],
        'pipe',
      );
      let err = '';
      child.stderr!.setEncoding('utf8').on('data', (d: string) => {
        err += d;
      });
      const port = await portOf(child.pid!, kind.udp);
      await tenEchoes(port, kind);
      expect(await termination(child)).toBeLessThan(8_000);
      // each process that writes the trace says once that it failed (fork: one per child)
      const said = err.match(/trace to \/dev\/full failed \(ENOSPC\)/g)?.length ?? 0;
      expect(said).toBeGreaterThanOrEqual(1);
      if (!args.includes('fork')) expect(said).toBeLessThanOrEqual(args.includes('workers') ? 2 : 1);
    },
  );

  it('stderr whose reader is stuck (a full pipe): echoes answered, SIGTERM ends it', async () => {
    const child = spawnWith(
      'echo-server',
      ['--host', HOST, '--port', '0', '-v', '--log-format', 'json'],
      'pipe',
    );
    await once(child.stderr!, 'data');
    const port = await portOf(child.pid!);
    child.stderr!.pause(); // nobody reads: the pipe fills, writes meet EAGAIN
    // enough connections, each logging lines, to fill a 64 KiB pipe and Node's buffer ahead of it
    for (let i = 0; i < 400; i++) {
      const got = await echoOnce(port, false, `x${i}\n`);
      expect(got).toBe(`x${i}\n`);
    }
    expect(await termination(child)).toBeLessThan(8_000);
  });

  it('echo-client -v whose output reader stops after 10 bytes ends, every run', async () => {
    const server = net.createServer((s) => s.pipe(s));
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    afterTest(() => {
      server.close();
    });
    const port = (server.address() as net.AddressInfo).port;
    const client = `${JSON.stringify(process.execPath)} ${JSON.stringify(bin('echo-client'))}`;
    for (let run = 0; run < 6; run++) {
      // the command line of the report, in its own process group so that all of it can be killed
      const sh = spawn('sh', ['-c', `${client} -v -m hello 127.0.0.1 ${port} 2>&1 | head -c 10`], {
        stdio: ['ignore', 'pipe', 'ignore'],
        detached: true,
      });
      afterTest(() => {
        try {
          process.kill(-sh.pid!, 'SIGKILL');
        } catch {}
      });
      let timer: NodeJS.Timeout | undefined;
      const [code] = (await Promise.race([
        once(sh, 'exit'),
        new Promise((_, reject) => {
          timer = setTimeout(() => reject(new Error(`run ${run}: echo-client still running`)), 8_000);
        }),
      ]).finally(() => clearTimeout(timer))) as [number];
      expect(code).toBe(0);
    }
  });
});

// this test waits seconds on the metrics server's request timeout: it runs alongside the three
// blocks that follow, whose tests run at once too (each its own server on port 0)
describe.concurrent('the metrics port', () => {
  it('closes a connection that sent half a request line within a few seconds', async () => {
    const child = spawnWith('echo-server', ['--port', '0', '--log-format', 'json', '--metrics', '0'], 'pipe');
    let err = '';
    child.stderr!.setEncoding('utf8').on('data', (d: string) => {
      err += d;
    });
    await until(() => /metrics on http:\/\/[^:]+:\d+/.test(err), 15_000, 'metrics line');
    const port = Number(err.match(/metrics on http:\/\/[^:]+:(\d+)/)![1]);
    const s = net.connect({ port, host: '127.0.0.1' });
    afterTest(() => {
      s.destroy();
    });
    await once(s, 'connect');
    s.write('GET /metr');
    s.resume();
    const t0 = performance.now();
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([
      once(s, 'close'),
      new Promise((_, reject) => {
        timer = setTimeout(() => reject(new Error('half a request still held after 10 s')), 10_000);
      }),
    ]).finally(() => clearTimeout(timer));
    expect(performance.now() - t0).toBeLessThan(10_000);
    expect(performance.now() - t0).toBeGreaterThan(1_000); // a slow client is given a moment
  });
});

/** Every line of `text` parses as a JSON object; returns them. */
function allJson(text: string): Record<string, unknown>[] {
  const lines = text.split('\n').filter((l) => l !== '');
  expect(lines.length).toBeGreaterThan(0);
  return lines.map((l) => {
    let o: unknown;
    try {
      o = JSON.parse(l);
    } catch {
      throw new Error(`not JSON: ${l}`);
    }
    expect(typeof o).toBe('object');
    return o as Record<string, unknown>;
  });
}

/** Run a CLI to its end with stdin `input`; its stderr and exit code. */
async function runCli(
  name: string,
  args: string[],
  input = '',
): Promise<{ code: number | null; err: string }> {
  const child = spawn(process.execPath, [bin(name), ...args], { stdio: ['pipe', 'ignore', 'pipe'] });
  afterTest(() => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  });
  let err = '';
  child.stderr!.setEncoding('utf8').on('data', (d: string) => {
    err += d;
  });
  child.stdin!.on('error', () => {});
  child.stdin!.end(input);
  const [code] = (await once(child, 'close')) as [number | null];
  return { code, err };
}

describe.concurrent('--log-format json: every stderr line is a JSON object', () => {
  it.each([
    ['echo-client, nothing listening (exit 1)', 'echo-client', ['-m', 'x', '127.0.0.1', 'CLOSED'], 1],
    ['echo-client, an unknown flag (exit 2)', 'echo-client', ['--bogus'], 2],
    ['echo-server, a bad port (exit 2)', 'echo-server', ['--port', '99999'], 2],
    ['echo-chat, nothing listening (exit 1)', 'echo-chat', ['127.0.0.1', 'CLOSED'], 1],
    ['echo-chat, a missing port (exit 2)', 'echo-chat', ['127.0.0.1'], 2],
  ])('a failing command: %s', async (_what, name, args, want) => {
    const closed = net.createServer();
    closed.listen(0, '127.0.0.1');
    await once(closed, 'listening');
    const port = String((closed.address() as net.AddressInfo).port);
    await new Promise((r) => closed.close(r));
    const argv = ['--log-format', 'json', ...(args as string[]).map((a) => (a === 'CLOSED' ? port : a))];
    const { code, err } = await runCli(name as string, argv);
    expect(code).toBe(want);
    const lines = allJson(err);
    expect(lines.at(-1)).toMatchObject({ level: 50, name, exitCode: want });
  });

  it('echo-server start and stop, echo-client -v, echo-chat piped', async () => {
    const srv = spawnWith(
      'echo-server',
      ['--port', '0', '-v', '--log-format', 'json', '--metrics', '0'],
      'pipe',
    );
    let err = '';
    srv.stderr!.setEncoding('utf8').on('data', (d: string) => {
      err += d;
    });
    await until(() => /listening on/.test(err), 15_000, 'listening line');
    const port = String(jsonLines(err).find((l) => /listening on/.test(l.msg))!.port);
    const client = await runCli('echo-client', [
      '--log-format',
      'json',
      '-v',
      '-m',
      'hello',
      '127.0.0.1',
      port,
    ]);
    expect(client.code).toBe(0);
    allJson(client.err);
    const chat = await runCli('echo-chat', ['--log-format', 'json', '-v', '127.0.0.1', port], 'hi\n');
    expect(chat.code).toBe(0);
    const chatLines = allJson(chat.err);
    expect(chatLines.some((l) => /connected to/.test(String(l.msg)))).toBe(true);
    await termination(srv);
    const srvLines = allJson(err);
    expect(srvLines.some((l) => /totals/.test(String(l.msg)))).toBe(true);
  });
});

/** What HAProxy's checks do: connect, maybe send a line and read it back, then close with RST. */
async function healthCheck(port: number, line?: string): Promise<void> {
  const s = net.connect({ port, host: '127.0.0.1' });
  afterTest(() => {
    s.destroy();
  });
  await once(s, 'connect');
  if (line !== undefined) {
    s.write(line);
    let got = '';
    s.setEncoding('utf8');
    while (got.length < line.length) got += ((await once(s, 'data')) as [string])[0];
    expect(got).toBe(line);
  }
  s.resetAndDestroy(); // SO_LINGER 0: RST, no FIN
}

describe.concurrent('health checks (connect, then RST) are not errors', () => {
  it.each(MODES.filter(([, , k]) => !k.udp && !k.tls))(
    '%s: no INFO line, no error counted, still a connection',
    async (_n, args) => {
      const srv = spawnWith('echo-server', ['--port', '0', '-v', '--log-format', 'json', ...args], 'pipe');
      let err = '';
      srv.stderr!.setEncoding('utf8').on('data', (d: string) => {
        err += d;
      });
      await until(() => /listening on/.test(err), 15_000, 'listening line');
      const port = jsonLines(err).find((l) => /listening on/.test(l.msg))!.port as number;
      // -v: each check's close line is there (the only connections), at debug level; the next
      // check starts once it is (iterative mode would otherwise queue it behind the last one)
      const closeLines = () =>
        jsonLines(err).filter((l) => typeof l.msg === 'string' && l.msg.startsWith('closed '));
      for (const [i, line] of [undefined, 'health\n', undefined].entries()) {
        await healthCheck(port, line);
        await until(() => closeLines().length === i + 1, 15_000, `the close line of check ${i + 1}`);
      }
      for (const l of closeLines()) expect(l.level, l.msg).toBe(20);
      await termination(srv);
      const totals = jsonLines(err).find((l) => /^totals/.test(l.msg))!;
      expect(totals.connections).toBe(3);
      expect(totals.errors ?? {}).toEqual({});
    },
  );
});

/** echo-server with --metrics 0: its echo port, its metrics port, and a scrape function. */
async function metricsServer(args: string[]) {
  const srv = spawnWith(
    'echo-server',
    ['--port', '0', '--log-format', 'json', '--metrics', '0', ...args],
    'pipe',
  );
  let err = '';
  srv.stderr!.setEncoding('utf8').on('data', (d: string) => {
    err += d;
  });
  await until(
    () => /listening on/.test(err) && /metrics on http/.test(err),
    15_000,
    'listening and metrics lines',
  );
  const port = jsonLines(err).find((l) => /listening on/.test(l.msg))!.port as number;
  const mport = Number(err.match(/metrics on http:\/\/[^:]+:(\d+)/)![1]);
  const scrape = async () => (await fetch(`http://127.0.0.1:${mport}/metrics`)).text();
  return { srv, port, mport, scrape, stderr: () => err };
}

/** A series' value by its exact name and labels text (`{}` for none is written as ''). */
function series(text: string, name: string): number {
  const m = text.match(new RegExp(`^${name}(?:\\{[^}]*\\})? (\\S+)$`, 'm'));
  return m ? Number(m[1]) : Number.NaN;
}

describe.concurrent('--metrics', () => {
  it('no series carries a label named instance; the instance name is the server label', async () => {
    const { scrape } = await metricsServer(['--instance-name', 'e1']);
    const text = await scrape();
    expect(text).not.toMatch(/[{,]instance="/);
    expect(text).toMatch(/^echo_connections_total\{server="e1"\} /m);
  });

  it('-q still prints the port chosen and the metrics URL', async () => {
    const { stderr } = await metricsServer(['-q']);
    const lines = jsonLines(stderr());
    expect(lines.find((l) => /listening on/.test(l.msg))?.port).toBeGreaterThan(0);
    expect(lines.some((l) => /metrics on http:\/\/127\.0\.0\.1:\d+\/metrics/.test(l.msg))).toBe(true);
  });

  it.each(MODES.filter(([, , k]) => !k.udp && !k.tls))(
    '%s: bytes count as they flow, not when the connection closes',
    async (_n, args) => {
      const { port, scrape } = await metricsServer(args);
      const s = net.connect({ port, host: '127.0.0.1' });
      afterTest(() => {
        s.destroy();
      });
      await once(s, 'connect');
      let back = 0;
      s.on('data', (d: Buffer) => {
        back += d.length;
      });
      s.write(Buffer.alloc(300_000, 1));
      await until(() => back === 300_000, 15_000, 'the first echo');
      // the connection is still open: its bytes are already counted
      let text = '';
      const deadline = Date.now() + 10_000;
      for (;;) {
        text = await scrape();
        if (series(text, 'echo_received_bytes_total') === 300_000) break;
        if (Date.now() > deadline) break;
        await new Promise((r) => setTimeout(r, 100)); // polling the scrape, bounded by the deadline
      }
      expect(series(text, 'echo_received_bytes_total')).toBe(300_000);
      expect(series(text, 'echo_sent_bytes_total')).toBe(300_000);
      expect(s.destroyed).toBe(false);
      s.end();
      await once(s, 'close');
    },
  );

  it.each(MODES.filter(([, , k]) => !k.udp))(
    '%s: histograms of connection duration, bytes per connection and TCP RTT at close',
    async (_n, args, kind) => {
      const { port, scrape } = await metricsServer(args);
      for (let i = 0; i < 3; i++)
        expect(await echoOnce(port, kind.tls === true, 'abcd\n', '127.0.0.1')).toBe('abcd\n');
      let text = '';
      const deadline = Date.now() + 10_000;
      for (;;) {
        text = await scrape();
        if (series(text, 'echo_connection_duration_seconds_count') === 3 || Date.now() > deadline) break;
        await new Promise((r) => setTimeout(r, 100)); // polling the scrape, bounded by the deadline
      }
      expect(series(text, 'echo_connection_duration_seconds_count')).toBe(3);
      expect(series(text, 'echo_connection_received_bytes_count')).toBe(3);
      expect(series(text, 'echo_connection_received_bytes_sum')).toBe(15);
      expect(text).toMatch(/^echo_connection_received_bytes_bucket\{[^}]*le="64"[^}]*\} 3$/m);
      expect(series(text, 'echo_tcp_rtt_seconds_count')).toBe(3);
      expect(series(text, 'echo_tcp_rtt_seconds_sum')).toBeGreaterThan(0);
    },
  );

  it('log lines lost to a stderr whose reader left are counted', async () => {
    const { srv, port, scrape } = await metricsServer(['-v']);
    srv.stderr!.destroy(); // the reader leaves: the next write meets EPIPE
    await tenEchoes(port, {}, '127.0.0.1'); // a metrics server: its port is in its log
    let text = '';
    const deadline = Date.now() + 10_000;
    for (;;) {
      text = await scrape();
      if (series(text, 'echo_log_dropped_lines_total') > 0 || Date.now() > deadline) break;
      await new Promise((r) => setTimeout(r, 100)); // polling the scrape, bounded by the deadline
    }
    expect(series(text, 'echo_log_dropped_lines_total')).toBeGreaterThan(0);
    expect(await termination(srv)).toBeLessThan(8_000);
  });
});
