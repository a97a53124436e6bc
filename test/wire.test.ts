// Seeing the wire: data traces (--trace text and hex) on server, client and chat.
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it, onTestFinished } from 'vitest';
import { unescapeTrace } from '../src/core/trace.js';
import { startEchoServer } from '../src/index.js';
import {
  type CliName,
  connect,
  readN,
  refusal,
  runEchoClient,
  spawnCli,
  spawnServer,
  until,
} from './helpers.js';

const dir = mkdtempSync(path.join(tmpdir(), 'echo-wire-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

// NUL, 0xff, an escape sequence, a backslash, CR LF, and a byte of every value
const PAYLOAD = Buffer.concat([
  Buffer.from('hi\x00\xff\x1b[31mred\x1b]0;title\x07\\x\r\n', 'latin1'),
  Buffer.from(Array.from({ length: 256 }, (_, i) => i)),
]);

const client = runEchoClient;

/** The records of a trace: direction, offset, length and the bytes, decoded from text or hex. */
function parseTrace(text: string): { dir: string; from: number; data: Buffer }[] {
  const records: { dir: string; from: number; data: Buffer }[] = [];
  const heads = [
    ...text.matchAll(/^([<>]) \d{4}\/\d\d\/\d\d [\d:.]+ {2}length=(\d+) from=(\d+) to=-?\d+ {2}\S+ \S+\n/gm),
  ];
  heads.forEach((h, i) => {
    const body = text.slice(h.index! + h[0].length, i + 1 < heads.length ? heads[i + 1]!.index : text.length);
    const hex = /^[0-9a-f]{8}: /.test(body);
    const data = hex
      ? Buffer.from(
          body
            .split('\n')
            .filter(Boolean)
            .map((l) => l.slice(10, 50).replace(/ /g, ''))
            .join(''),
          'hex',
        )
      : unescapeTrace(body);
    expect(data.length).toBe(Number(h[2]));
    records.push({ dir: h[1]!, from: Number(h[3]), data });
  });
  return records;
}

const joined = (rs: { dir: string; data: Buffer }[], dir: string) =>
  Buffer.concat(rs.filter((r) => r.dir === dir).map((r) => r.data));

describe('--trace', () => {
  it.each(['text', 'hex'])(
    'server --trace %s: every byte in and out, exact, in the trace file',
    async (format) => {
      const file = path.join(dir, `server-${format}.trace`);
      const srv = await spawnServer(['--trace', format, '--trace-file', file]);
      const r = await client(['127.0.0.1', String(srv.port)], PAYLOAD);
      expect(r.code).toBe(0);
      expect(r.out.equals(PAYLOAD)).toBe(true); // the echo itself is untouched
      srv.child.kill('SIGTERM');
      await srv.exit;
      const recs = parseTrace(readFileSync(file, 'latin1'));
      expect(joined(recs, '<').equals(PAYLOAD)).toBe(true);
      expect(joined(recs, '>').equals(PAYLOAD)).toBe(true);
      expect(srv.stderr()).not.toMatch(/length=/); // to the file, not stderr
    },
  );

  it('client --trace goes to stderr; stdout carries only the echo', async () => {
    const srv = await spawnServer([]);
    const r = await client(['--trace', '127.0.0.1', String(srv.port)], PAYLOAD);
    expect(r.code).toBe(0);
    expect(r.out.equals(PAYLOAD)).toBe(true);
    const recs = parseTrace(
      r.err
        .split('\n')
        .filter((l) => !l.startsWith('{"level"'))
        .join('\n'),
    );
    expect(joined(recs, '>').equals(PAYLOAD)).toBe(true);
    expect(joined(recs, '<').equals(PAYLOAD)).toBe(true);
    // a terminal reading this stderr is safe: no raw ESC or BEL
    expect(r.err.includes('\x1b') || r.err.includes('\x07')).toBe(false);
  });

  it('echo-chat --trace hex and bad trace flags', async () => {
    const a = spawnCli('echo-chat', ['--listen', '--port', '0', '--trace', 'hex'], { stdin: 'pipe' });
    const port = (await a.waitStderr(/listening on 127\.0\.0\.1:(\d+)/))[1]!;
    const b = spawnCli('echo-chat', ['127.0.0.1', port], { stdin: 'pipe' });
    b.child.stdin!.end('over \x00 chat\n');
    await a.waitStdout(/over/);
    a.child.stdin!.end();
    await a.exit;
    await until(() => /^< .*length=12 /m.test(a.stderr()), 5000, 'the trace record');
    expect(a.stderr()).toMatch(/00000000: 6f76 6572 2000 2063 6861 740a/);
    for (const [cmd, args, re] of [
      ['echo-server', ['--trace=pcap'], /--trace: "pcap" is text or hex|--trace .*text or hex/],
      ['echo-server', ['--trace-file', 'x'], /--trace-file .*needs --trace/],
      ['echo-client', ['--udp', '--trace', '-m', 'x'], /--trace: cannot be used with --udp/],
    ] as [CliName, string[], RegExp][]) {
      const p = await refusal(cmd, args);
      expect(p.code).toBe(2);
      expect(p.stderr).toMatch(re);
    }
  });
});

describe.runIf(process.platform === 'linux')('TCP_INFO', () => {
  it('in each close line with --verbose, and in the library’s connections()', async () => {
    const srv = await spawnServer(['-v']);
    const r = await client(['127.0.0.1', String(srv.port)], Buffer.alloc(256 * 1024, 1));
    expect(r.code).toBe(0);
    const line = await srv.waitStderr(
      /"msg":"closed [^"]*; TCP_INFO rtt [\d.]+\/[\d.]+ ms, rto \d+ ms, cwnd \d+[^"]*"/,
    );
    const rec = JSON.parse(
      srv
        .stderr()
        .split('\n')
        .find((l) => l.includes(line[0]))!,
    );
    expect(rec.tcp.bytesReceived).toBeGreaterThanOrEqual(256 * 1024);
    expect(rec.tcp.rtoUs).toBeGreaterThan(0);

    const lib = await startEchoServer({ port: 0 });
    onTestFinished(() => void lib.close({ graceMs: 0 }));
    const s = await connect(lib.address.port);
    s.write('x');
    await readN(s, 1);
    const [c] = lib.connections();
    expect(c!.tcp).toMatchObject({ state: 1 /* ESTABLISHED */ });
    expect(c!.tcp!.bytesReceived).toBe(1);
  });
});

describe('--metrics: Prometheus text at /metrics', () => {
  /** The value of a series, matched by name and labels, whatever else is on it (the server label). */
  const value = (text: string, series: string) => {
    const [, name, want = ''] = /^([a-z_]+)(?:\{(.*)\})?$/.exec(series)!;
    for (const line of text.split('\n')) {
      const m = /^([a-z_]+)(?:\{(.*)\})? (\S+)$/.exec(line);
      if (!m || m[1] !== name) continue;
      const labels = m[2] ?? '';
      if (
        want
          .split(',')
          .filter(Boolean)
          .every((l) => labels.split(',').includes(l))
      )
        return Number(m[3]);
    }
    return undefined;
  };
  const sum = (text: string, name: string) =>
    text
      .split('\n')
      .filter((l) => l.startsWith(`${name}{`) && l.includes('worker='))
      .reduce((s, l) => s + Number(l.split(' ').at(-1)), 0);

  it.each([
    ['evented', []],
    ['workers', ['--mode', 'workers', '--workers', '2']],
  ] as [string, string[]][])(
    '%s: the counters add up to what a scripted workload did',
    async (mode, args) => {
      const srv = await spawnServer([...args, '--deny', '127.0.0.2', '--metrics', '0']);
      const url = `http://${(await srv.waitStderr(/metrics on http:\/\/(127\.0\.0\.1:\d+)\/metrics/))[1]}/metrics`;
      // one connection held open while scraping
      const held = await connect(srv.port);
      held.write('x');
      await readN(held, 1);
      const during = await (await fetch(url)).text();
      expect(value(during, 'echo_connections_open')).toBe(1);
      // four clients of 1000 bytes each, one refused by --deny
      for (let i = 0; i < 4; i++)
        expect((await client(['127.0.0.1', String(srv.port)], Buffer.alloc(1000, i))).code).toBe(0);
      const denied = await connect(srv.port, '127.0.0.1', {
        localAddress: '127.0.0.2',
      } as import('node:net').NetConnectOpts);
      denied.on('end', () => denied.end()); // refused: its FIN, then ours
      await new Promise((r) => denied.once('close', r).resume());
      held.end();
      await new Promise((r) => held.once('close', r));
      let text = '';
      // the last 'closed' reports reach the primary asynchronously in workers mode
      await until(
        async () => {
          text = await (await fetch(url)).text();
          return value(text, 'echo_connections_total') === 5 && value(text, 'echo_connections_open') === 0;
        },
        5000,
        'all 5 connections counted and closed',
      ).catch(() => {}); // the assertions below say what differs
      expect(value(text, 'echo_connections_total')).toBe(5);
      expect(value(text, 'echo_connections_open')).toBe(0);
      expect(value(text, 'echo_received_bytes_total')).toBe(4001);
      expect(value(text, 'echo_sent_bytes_total')).toBe(4001);
      expect(value(text, 'echo_refused_total{reason="access"}')).toBe(1);
      expect(text).toMatch(/^echo_process_cpu_seconds_total\{server="[^"]+"\} /m);
      if (mode === 'workers') {
        expect(sum(text, 'echo_worker_connections_total')).toBe(5);
        expect(sum(text, 'echo_worker_received_bytes_total')).toBe(4001);
        expect(text.match(/^echo_worker_connections_total\{[^}]*worker="\d+"/gm)!.length).toBe(2);
        expect(text).toMatch(/server="[^"]+"/);
      }
      expect((await fetch(url.replace('/metrics', '/other'))).status).toBe(404);
    },
  );

  it('--udp: datagrams in and out, drops by reason', async () => {
    const srv = await spawnServer(['--udp', '--metrics', '0', '--fault', 'drop=1,every=3']);
    const url = `http://${(await srv.waitStderr(/metrics on http:\/\/(127\.0\.0\.1:\d+)\/metrics/))[1]}/metrics`;
    for (let i = 0; i < 3; i++)
      await client([
        '--udp',
        '-m',
        `d${i}`,
        '--resend',
        '0',
        '--timeout',
        '300ms',
        '127.0.0.1',
        String(srv.port),
      ]);
    const text = await (await fetch(url)).text();
    expect(value(text, 'echo_udp_datagrams_total{direction="in"}')).toBe(3);
    expect(value(text, 'echo_udp_datagrams_total{direction="out"}')).toBe(2);
    expect(value(text, 'echo_refused_total{reason="fault"}')).toBe(1);
  });
});
