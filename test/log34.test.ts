// The per-connection close line is built without pino's general path (logLine) and the lossy
// sink copies lines into batch buffers as they come: what is written stays byte for byte what
// pino wrote (fields, their order, escaping), and the sink keeps its order, byte bound and drop
// counting.

import { once } from 'node:events';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import pino from 'pino';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { jsonLogger, type LogLevel, logLine } from '../src/core/log.js';
import { droppedLogLines, LossySink } from '../src/core/sink.js';
import { startEchoServer } from '../src/index.js';
import { afterTest, spawnServer, until } from './helpers.js';

type Level = Exclude<LogLevel, 'silent'>;
const NOW = 1796360742340;

afterEach(() => {
  vi.restoreAllMocks();
});

/** A JSON logger from jsonLogger whose lines are kept, with the time frozen. */
function captured(level: Level = 'debug') {
  vi.spyOn(Date, 'now').mockReturnValue(NOW);
  const lines: string[] = [];
  const logger = jsonLogger({ level, name: 'echo-server', instance: 'vm:1234' }, (s) => lines.push(s));
  return { logger, lines };
}

/**
 * The line logLine writes and the one pino's own method writes for the same call, and whether
 * logLine left it to pino.
 */
function both(logger: pino.Logger, lines: string[], level: Level, obj: object, msg: string) {
  lines.length = 0;
  const method = vi.spyOn(logger, level);
  logLine(logger, level, obj, msg);
  const viaPino = method.mock.calls.length > 0;
  method.mockRestore();
  const fast = lines.splice(0);
  logger[level](obj, msg);
  return { fast: fast.join(''), pino: lines.splice(0).join(''), viaPino };
}

const ordinary = {
  peer: '127.0.0.1:40000',
  bytesIn: 64,
  bytesOut: 64,
  discarded: 0,
  ms: 1,
  reason: 'client closed',
};
const closeMsg = (r: typeof ordinary, extra = '') =>
  `closed ${r.peer}: in ${r.bytesIn} B, out ${r.bytesOut} B, ${r.ms} ms, ${r.reason}${extra}`;

describe('logLine: byte for byte what pino writes', () => {
  const cases: [string, Level, object, string][] = [
    ['an ordinary close', 'info', ordinary, closeMsg(ordinary)],
    [
      'an error close (warn, the error field, a message over 100 characters with an em dash)',
      'warn',
      { ...ordinary, reason: 'error ERR_SSL_WRONG_VERSION_NUMBER', error: 'ERR_SSL_WRONG_VERSION_NUMBER' },
      closeMsg(
        { ...ordinary, reason: 'error ERR_SSL_WRONG_VERSION_NUMBER' },
        ' — the peer does not speak TLS. Connect with echo-client --tls, or drop --tls here',
      ),
    ],
    [
      'a reset',
      'info',
      { ...ordinary, bytesOut: 0, reason: 'reset by peer', error: 'ECONNRESET' },
      closeMsg({ ...ordinary, bytesOut: 0, reason: 'reset by peer' }),
    ],
    [
      'a reset that lost nothing (debug)',
      'debug',
      { ...ordinary, reason: 'reset by peer, nothing lost' },
      closeMsg({ ...ordinary, reason: 'reset by peer, nothing lost' }),
    ],
    [
      'a peer named by a PROXY header',
      'info',
      { ...ordinary, peer: '203.0.113.7:5555 via 127.0.0.1:40000' },
      closeMsg({ ...ordinary, peer: '203.0.113.7:5555 via 127.0.0.1:40000' }),
    ],
    ['a label and worker fields', 'info', { ...ordinary, worker: 4321 }, closeMsg(ordinary, ' (lab "a")')],
    [
      'messages, TCP_INFO and rttUs',
      'info',
      {
        ...ordinary,
        tcp: { rttUs: 31, rttVarUs: 15, retrans: 0, cwnd: 10 },
        rttUs: 31,
        messages: { messagesIn: 2, messagesOut: 2 },
      },
      'closed 127.0.0.1:40000: in 64 B, out 64 B, messages in 2, out 2, 1 ms, client closed; TCP_INFO rtt 31 µs',
    ],
    [
      'strings to escape: quotes, backslashes, control characters, non-ASCII, a lone surrogate',
      'info',
      {
        a: 'say "hi" \\ there',
        b: 'tab\there\nline',
        c: 'é ✓ 🙂',
        d: 'lone \ud800 surrogate',
        e: 'x'.repeat(100),
        f: `${'y'.repeat(100)}"`,
        g: '',
      },
      'quote " backslash \\ newline \n end',
    ],
    [
      'numbers that are not finite, null, booleans, undefined and functions',
      'error',
      {
        nan: Number.NaN,
        inf: Number.POSITIVE_INFINITY,
        neg: -0,
        z: null,
        t: true,
        f: false,
        u: undefined,
        fn: () => 1,
      },
      'odd values',
    ],
  ];
  for (const [what, level, obj, msg] of cases) {
    it(`${what}: written without pino's general path, the same bytes`, () => {
      const { logger, lines } = captured();
      const r = both(logger, lines, level, obj, msg);
      expect(r.viaPino).toBe(false);
      expect(r.fast).toBe(r.pino);
      expect(r.fast.endsWith('}\n')).toBe(true);
    });
  }

  it('the close line keeps its fields in their order', () => {
    const { logger, lines } = captured();
    logLine(logger, 'info', { ...ordinary, worker: 7 }, closeMsg(ordinary));
    expect(lines[0]).toBe(
      `{"level":30,"time":${NOW},"pid":${process.pid},"name":"echo-server","instance":"vm:1234","peer":"127.0.0.1:40000","bytesIn":64,"bytesOut":64,"discarded":0,"ms":1,"reason":"client closed","worker":7,"msg":"closed 127.0.0.1:40000: in 64 B, out 64 B, 1 ms, client closed"}\n`,
    );
  });

  it('children: their bindings and level are kept; own serializers, redaction or a prefix go to pino', () => {
    const { logger, lines } = captured('info');
    const plain = [
      logger.child({ worker: 12 }),
      logger.child({}, { level: 'debug' }),
      logger.child({ a: 1 }).child({ b: 'two' }),
    ];
    for (const c of plain) {
      const r = both(c, lines, 'debug', ordinary, closeMsg(ordinary));
      expect(r.viaPino).toBe(false);
      expect(r.fast).toBe(r.pino);
      const i = both(c, lines, 'info', ordinary, closeMsg(ordinary));
      expect(i.viaPino).toBe(false);
      expect(i.fast).toBe(i.pino);
    }
    const special = [
      logger.child({}, { serializers: { peer: (p: string) => p.toUpperCase() } }),
      logger.child({}, { redact: ['peer'] }),
      logger.child({}, { msgPrefix: '[w] ' }),
      logger.child({}, { formatters: { log: (o: object) => ({ ...o, extra: 1 }) } }),
    ];
    for (const c of special) {
      const r = both(c, lines, 'info', ordinary, closeMsg(ordinary));
      expect(r.viaPino).toBe(true);
      expect(r.fast).toBe(r.pino);
    }
  });

  it('what a logger decides after its first line: its level, its bindings, a later child', () => {
    const { logger, lines } = captured('info');
    const c = logger.child({ w: 1 });
    expect(both(c, lines, 'info', ordinary, 'first').viaPino).toBe(false);
    c.setBindings({ w: 2 });
    const r = both(c, lines, 'info', ordinary, 'rebound');
    expect(r.fast).toBe(r.pino);
    expect(r.fast).toContain('"w":2');
    logger.level = 'warn';
    logLine(logger, 'info', ordinary, 'not written');
    expect(lines).toEqual([]);
    logger.level = 'debug';
    const later = logger.child({}, { serializers: { peer: () => 'hidden' } });
    const s = both(later, lines, 'info', ordinary, 'serialized');
    expect(s.viaPino).toBe(true);
    expect(s.fast).toContain('"peer":"hidden"');
  });

  it('a level the logger does not write: nothing, as from pino', () => {
    const { logger, lines } = captured('warn');
    logLine(logger, 'info', ordinary, closeMsg(ordinary));
    logLine(logger.child({ w: 1 }), 'debug', ordinary, closeMsg(ordinary));
    expect(lines).toEqual([]);
    logLine(logger, 'warn', ordinary, closeMsg(ordinary));
    expect(lines).toHaveLength(1);
  });

  it('fields pino treats specially, and values of other types, go to pino', () => {
    const { logger, lines } = captured();
    const others: object[] = [
      { err: new Error('boom') },
      { list: [1, 2] },
      { when: new Date(NOW) },
      { big: 1n },
      { method: 'GET', headers: {}, socket: {} },
    ];
    for (const o of others) {
      const r = both(logger, lines, 'info', o, 'special');
      expect(r.viaPino).toBe(true);
      expect(r.fast).toBe(r.pino);
    }
  });

  it('any other logger is called as before', () => {
    const calls: unknown[][] = [];
    const other = {
      debug: (...a: unknown[]) => calls.push(['debug', ...a]),
      info: (...a: unknown[]) => calls.push(['info', ...a]),
      warn: (...a: unknown[]) => calls.push(['warn', ...a]),
      error: (...a: unknown[]) => calls.push(['error', ...a]),
    };
    logLine(other, 'warn', ordinary, 'm');
    expect(calls).toEqual([['warn', ordinary, 'm']]);
  });
});

/** What pino writes for a parsed line's fields, its bindings and its time: the line's own bytes. */
function asPinoWrites(line: Record<string, unknown>): string {
  const { level, time, pid, name, instance, msg, ...fields } = line;
  let out = '';
  const p = pino(
    {
      level: 'debug',
      base: { pid, ...(name !== undefined ? { name } : {}), ...(instance !== undefined ? { instance } : {}) },
      timestamp: () => `,"time":${time}`,
    },
    { write: (s: string) => (out += s) },
  );
  p[pino.levels.labels[level as number] as Level](fields, msg as string);
  return out;
}

const CLOSE_FIELDS = ['peer', 'bytesIn', 'bytesOut', 'discarded', 'ms', 'reason'];

/** The raw stderr lines that are close lines. */
const closeLines = (stderr: string) => stderr.split('\n').filter((l) => l.includes('"msg":"closed '));

/** One echo over a new connection, then `finish` ends it (FIN by default). */
async function echoOnce(port: number, payload = 'hello\n', finish?: (s: net.Socket) => void, head = '') {
  const s = net.connect({ port, host: '127.0.0.1' });
  afterTest(() => {
    s.destroy();
  });
  await once(s, 'connect');
  s.write(head + payload);
  let got = '';
  s.setEncoding('utf8');
  s.on('data', (d: string) => {
    got += d;
  });
  await until(() => got.length >= payload.length, 10_000, 'the echo');
  const closed = once(s, 'close');
  if (finish) finish(s);
  else s.end();
  await closed;
}

describe('the close line from echo-server (JSON logs)', () => {
  for (const [path_, env] of [
    ['the default accept path', {}],
    ['the public accept path', { ECHO_SHARED_READ: '0' }],
  ] as const) {
    it(`${path_}: an ordinary close, its fields in order, the bytes pino writes`, async () => {
      const srv = await spawnServer([], { env });
      await echoOnce(srv.port);
      await srv.waitStderr(/"msg":"closed /);
      const [raw] = closeLines(srv.stderr());
      const line = JSON.parse(raw!);
      expect(Object.keys(line)).toEqual(['level', 'time', 'pid', 'name', 'instance', ...CLOSE_FIELDS, 'msg']);
      expect(line).toMatchObject({
        level: 30,
        bytesIn: 6,
        bytesOut: 6,
        discarded: 0,
        reason: 'client closed',
      });
      expect(line.msg).toBe(`closed ${line.peer}: in 6 B, out 6 B, ${line.ms} ms, client closed`);
      expect(`${raw}\n`).toBe(asPinoWrites(line));
    });
  }

  it('--instance-name and a reset that lost nothing (a debug line, with -v)', async () => {
    const srv = await spawnServer(['--instance-name', 'edge"7\\x', '-v']);
    await echoOnce(srv.port, 'x\n', (s) => s.resetAndDestroy());
    await srv.waitStderr(/"msg":"closed [^"]*reset by peer, nothing lost/);
    const raw = closeLines(srv.stderr()).find((l) => l.includes('nothing lost'))!;
    const line = JSON.parse(raw);
    expect(Object.keys(line)).toEqual(['level', 'time', 'pid', 'name', 'instance', ...CLOSE_FIELDS, 'msg']);
    expect(line).toMatchObject({ level: 20, instance: 'edge"7\\x', reason: 'reset by peer, nothing lost' });
    expect(`${raw}\n`).toBe(asPinoWrites(line));
  });

  it('a peer named by a PROXY header', async () => {
    const srv = await spawnServer(['--proxy-protocol']);
    await echoOnce(srv.port, 'via proxy\n', undefined, 'PROXY TCP4 203.0.113.7 127.0.0.1 5555 7007\r\n');
    await srv.waitStderr(/"msg":"closed /);
    const [raw] = closeLines(srv.stderr());
    const line = JSON.parse(raw!);
    expect(line.peer).toMatch(/^203\.0\.113\.7:5555 via 127\.0\.0\.1:\d+$/);
    expect(Object.keys(line)).toEqual(['level', 'time', 'pid', 'name', 'instance', ...CLOSE_FIELDS, 'msg']);
    expect(`${raw}\n`).toBe(asPinoWrites(line));
  });

  it('an error close: a warn line with the error field and what it means', async () => {
    const srv = await spawnServer(['--tls']);
    const s = net.connect({ port: srv.port, host: '127.0.0.1' });
    afterTest(() => {
      s.destroy();
    });
    s.on('error', () => {});
    await once(s, 'connect');
    // a TLS handshake record header, then bytes that are no ClientHello
    s.write(Buffer.concat([Buffer.from([0x16, 0x03, 0x01, 0x00, 0x20]), Buffer.alloc(32, 0x41)]));
    await srv.waitStderr(/"msg":"closed [^"]*error /);
    const raw = closeLines(srv.stderr()).find((l) => l.includes('error '))!;
    const line = JSON.parse(raw);
    expect(line.level).toBe(40);
    expect(Object.keys(line)).toEqual([
      'level',
      'time',
      'pid',
      'name',
      'instance',
      ...CLOSE_FIELDS,
      'error',
      'msg',
    ]);
    expect(line.reason).toBe(`error ${line.error}`);
    expect(`${raw}\n`).toBe(asPinoWrites(line));
  });
});

describe('the close line from the library: label and extra fields', () => {
  it('written through logLine, as pino would: the label in the message, the fields last', async () => {
    const lines: string[] = [];
    const logger = jsonLogger({ level: 'info', name: 'lab' }, (s) => lines.push(s));
    const server = await startEchoServer({
      port: 0,
      host: '127.0.0.1',
      logger,
      label: 'node "b"',
      logFields: { worker: 99 },
    });
    afterTest(() => server.close({ graceMs: 0 }));
    await echoOnce(server.address.port);
    await until(() => lines.some((l) => l.includes('"msg":"closed ')), 10_000, 'the close line');
    const raw = lines.find((l) => l.includes('"msg":"closed '))!;
    const line = JSON.parse(raw);
    expect(Object.keys(line)).toEqual(['level', 'time', 'pid', 'name', ...CLOSE_FIELDS, 'worker', 'msg']);
    expect(line.worker).toBe(99);
    expect(line.msg).toBe(`closed ${line.peer}: in 6 B, out 6 B, ${line.ms} ms, client closed (node "b")`);
    expect(raw).toBe(asPinoWrites(line));
  });
});

describe('LossySink: lines copied into batch buffers', () => {
  const tmp = () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'log34-'));
    afterTest(() => fs.rmSync(dir, { recursive: true, force: true }));
    return path.join(dir, 'out.log');
  };

  it('keeps the order and the bytes: non-ASCII, lines longer than a buffer, many buffers in flight', async () => {
    const file = tmp();
    const sink = new LossySink({ file, maxLength: 8 * 1024 * 1024 });
    afterTest(() => sink.close());
    const lines: string[] = [];
    for (let i = 0; i < 3000; i++) {
      const n = i % 7;
      lines.push(
        n === 0
          ? `é ✓ 🙂 ${i}\n`
          : n === 1
            ? `lone \ud800 ${i}\n`
            : n === 2 && i % 500 === 2
              ? `${'L'.repeat(100_000 + i)}\n`
              : `{"line":${i},"text":"${'a'.repeat(i % 300)}"}\n`,
      );
    }
    lines.push('');
    for (const l of lines) sink.push(l);
    const want = Buffer.from(lines.join(''));
    await until(() => fs.statSync(file).size >= want.length, 20_000, 'every line written');
    expect(fs.readFileSync(file).equals(want)).toBe(true);
  });

  it('holds at most maxLength bytes, counted exactly (multi-byte lines too), and counts what it drops', () => {
    const file = tmp();
    const dropped0 = droppedLogLines();
    // nothing is written until close: every line waits
    const sink = new LossySink({ file, minLength: 1 << 20, maxLength: 1000, flushMs: 600_000 });
    for (let i = 0; i < 9; i++) sink.push(`${String(i).padStart(99, '-')}\n`); // 900 B
    sink.push(`${'é'.repeat(49)}\n\n`); // 100 B in 51 units: fits exactly
    sink.push('x'); // 1001 B: dropped
    sink.push(`${'é'.repeat(10)}`); // dropped
    expect(droppedLogLines() - dropped0).toBe(2);
    sink.close();
    const out = fs.readFileSync(file, 'utf8');
    expect(Buffer.byteLength(out)).toBe(1000);
    expect(out.endsWith(`${'é'.repeat(49)}\n\n`)).toBe(true);
  });

  it('a failed destination counts the lines waiting as lost', () => {
    const dropped0 = droppedLogLines();
    const sink = new LossySink({ file: path.join(os.tmpdir(), 'log34-no-such-dir', 'x', 'out.log') });
    sink.push('a\n');
    sink.push('b\n');
    expect(sink.lostError).toBeDefined();
    expect(sink.droppedLost).toBe(2);
    expect(droppedLogLines() - dropped0).toBe(2);
    sink.close();
  });
});
