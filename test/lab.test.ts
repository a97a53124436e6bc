// The echo-lab scenarios, run exactly as `echo-lab NAME` runs them: demo and test cannot drift.

import { execFileSync } from 'node:child_process';
import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { formatResult } from '../src/cli/echo-lab.js';
import { explainError, runScenario, SCENARIOS } from '../src/index.js';
import { captureUnavailable } from '../src/lab/capture.js';
import { findScenario, traced } from '../src/lab/index.js';
import { formatLadder, type Ladder } from '../src/lab/ladder.js';
import { netnsUnavailable } from '../src/lab/netns.js';
import { closeServer, listenLocal, othersOnPort } from '../src/lab/util.js';
import { FULL_MATRIX, ROOT, spawnCli, until } from './helpers.js';

const expectedErrors: Record<string, string[]> = {
  eaddrinuse: ['EADDRINUSE'],
  'time-wait': ['EADDRINUSE'],
  'client-port': ['EADDRINUSE'],
  econnrefused: ['ECONNREFUSED'],
  epipe: ['EPIPE'],
  econnreset: ['ECONNRESET'],
  'connect-timeout': ['ETIMEDOUT'],
  'half-close': [],
  sockopts: [],
  backlog: [],
  keepalive: ['ETIMEDOUT'],
  'user-timeout': ['ETIMEDOUT'],
  unreachable: ['EHOSTUNREACH', 'ENETUNREACH'],
  'host-unreachable': ['EHOSTUNREACH', 'EHOSTUNREACH', 'EHOSTUNREACH', 'EACCES'],
  sigpipe: [],
  'close-wait': [],
  'close-unread': ['ECONNRESET'],
  'udp-errors': ['ECONNREFUSED'],
  zombies: [],
  'close-outage': ['ETIMEDOUT'],
  'time-wait-why': [],
  'process-exit': ['EADDRINUSE'],
  'reuseaddr-rules': [],
  'syn-retries': ['ETIMEDOUT'],
  'nonblocking-connect': [],
  eintr: ['EINTR'],
  'fork-holds-port': [],
  'chat-fork': [],
  heartbeat: ['ERR_HEARTBEAT_TIMEOUT'],
  'stale-unix-socket': ['EADDRINUSE', 'ECONNREFUSED'],
};

const noNetns = process.platform === 'linux' ? netnsUnavailable() : 'Linux only';
if (noNetns) console.warn(`skipping the network-namespace scenarios: ${noNetns}`);
const linux = process.platform === 'linux';

/**
 * Scenarios that wait 6 s and more on the kernel's own timers (SYN retransmissions, TIME_WAIT):
 * `npm run test:e2e` (ECHO_TEST_FULL=1) runs them; `npm test` runs every other one.
 */
const KERNEL_TIMER_SCENARIOS = ['syn-retries', 'time-wait-why'];
const notHere = (s: { name: string; netns?: boolean }) =>
  (s.netns === true && !!noNetns) || (!FULL_MATRIX && KERNEL_TIMER_SCENARIOS.includes(s.name));

/** Each scenario runs once; the tests that look at its result share that run. */
const runs = new Map<string, ReturnType<typeof runScenario>>();
const run = (name: string) => {
  if (!runs.has(name)) runs.set(name, runScenario(name));
  return runs.get(name)!;
};

describe.runIf(linux)('echo-lab scenarios', () => {
  // the namespace scenarios take seconds each (they wait for the kernel's timers): run them concurrently
  describe.concurrent('reproduce what the tutorials show', () => {
    for (const s of SCENARIOS) {
      it.skipIf(notHere(s))(s.name, async () => {
        const r = await run(s.name);
        expect(r.skipped).toBeUndefined();
        expect(r.checks.filter((c) => !c.ok)).toEqual([]);
        expect(r.ok).toBe(true);
        expect(r.errors.map((e) => e.code)).toEqual(expectedErrors[s.name]);
        // every error is explained from the shared table
        for (const e of r.errors) expect(e.line).toMatch(new RegExp(`${e.code}( \\S+)? — .+\\.`));
      });
    }
  });

  it('the TCP states the tutorials show are observed', async () => {
    const hc = await run('half-close');
    const states = hc.states.flatMap((s) => s.entries.map((e) => e.state));
    expect(states).toEqual(
      expect.arrayContaining(['FIN_WAIT2', 'CLOSE_WAIT', 'TIME_WAIT', ...(noNetns ? [] : ['LAST_ACK'])]),
    );
    const tw = await run('time-wait');
    expect(tw.states[0]!.entries.map((e) => e.state)).toContain('TIME_WAIT');
  });

  it('echo-lab prints steps, the explained errno and the states; --json is the same result', async () => {
    const p = spawnCli('echo-lab', ['time-wait']);
    expect((await p.exit).code).toBe(0);
    const out = p.stdout();
    expect(out).toMatch(/^echo-lab time-wait: /);
    expect(out).toMatch(
      /EADDRINUSE: bind EADDRINUSE 127\.0\.0\.1:\d+ — another socket holds that address and port/,
    );
    expect(out).toMatch(/tcp {2}127\.0\.0\.1:\d+ +127\.0\.0\.1:\d+ +TIME_WAIT/);
    expect(out).toMatch(/reproduced as expected/);
    const j = spawnCli('echo-lab', ['econnrefused', '--json']);
    expect((await j.exit).code).toBe(0);
    const r = JSON.parse(j.stdout());
    expect(r).toMatchObject({ name: 'econnrefused', ok: true, errors: [{ code: 'ECONNREFUSED' }] });
  });

  it('what was explained wrong is right now, pinned on the printed lines', async () => {
    const text = (name: string) => run(name).then((r) => formatResult(r));
    // 1. a listener's tx_queue is not its backlog
    const backlog = await text('backlog');
    expect(backlog).not.toMatch(/of max/);
    expect(backlog).toMatch(/accept queue holds 3 \(ss -ltn: Recv-Q 3, Send-Q 2 = the backlog we set\)/);
    // 2. the fixed-port reconnect is about timestamps, not tcp_tw_reuse
    const cp = await text('client-port');
    expect(cp).toMatch(/with TCP timestamps on \(tcp_timestamps = \d\) Linux lets a new SYN/);
    expect(cp).toMatch(/tcp_tw_reuse does not decide this/);
    expect(explainError(Object.assign(new Error('x'), { code: 'EADDRNOTAVAIL' })).line).toMatch(
      /same pair of ports is still in TIME_WAIT and TCP timestamps are off/,
    );
    // 3. the epipe caption matches its rows
    const ep = await run('epipe');
    const st = ep.states.find((x) => x.label.includes('FIN_WAIT2'))!;
    const connStates = st.entries.map((e) => e.state).filter((x) => x !== 'LISTEN');
    expect(connStates.sort()).toEqual(['CLOSE_WAIT', 'FIN_WAIT2']);
    // 4. EADDRINUSE names every socket that holds a port, and the old socket's SO_REUSEADDR
    const inUse = explainError(Object.assign(new Error('x'), { code: 'EADDRINUSE' })).line;
    expect(inUse).toMatch(/FIN_WAIT2, CLOSE_WAIT, or one a child process kept/);
    expect(inUse).toMatch(/both the old and the new socket set SO_REUSEADDR/);
    // 5. a crash sends FIN, not RST
    const reset = explainError(Object.assign(new Error('x'), { code: 'ECONNRESET' })).line;
    expect(reset).not.toMatch(/or crashed/);
    expect(reset).toMatch(/a process that crashes sends FIN, not RST/);
    // 6. the README's ETIMEDOUT sentence is followed by an ETIMEDOUT example
    const readme = readFileSync(path.join(ROOT, 'README.md'), 'utf8');
    const at = readme.indexOf('explained `ETIMEDOUT`:');
    expect(at).toBeGreaterThan(0);
    expect(readme.slice(at, at + 300)).toMatch(/```text\necho-client: connect ETIMEDOUT/);
    // 7. a full TCP send buffer is EAGAIN, never ENOBUFS: no "raise --send-buffer" hint
    const nobufs = explainError(Object.assign(new Error('x'), { code: 'ENOBUFS' })).line;
    expect(nobufs).not.toMatch(/--send-buffer/);
    expect(nobufs).toMatch(/a full TCP send buffer never gives this, it gives EAGAIN/);
  });

  it('every scenario says which kernel settings it reads, with this machine’s values', async () => {
    const cw = await run('close-wait');
    expect(cw.kernel.find((k) => k.name === 'tcp_fin_timeout')?.value).toBe(
      readFileSync('/proc/sys/net/ipv4/tcp_fin_timeout', 'utf8').trim(),
    );
    expect(formatResult(await run('half-close'))).toMatch(/TIME_WAIT lasts a fixed 60 s on Linux/);
    expect(formatResult(await run('half-close'))).toMatch(/CLOSE_WAIT never expires/);
  });

  // every scenario also runs alone above; the whole command runs under test:e2e
  it.runIf(FULL_MATRIX)(
    'echo-lab all --json prints one JSON array; the text form ends with a summary line',
    async () => {
      // the two runs at once: each scenario mostly waits on the kernel's timers, and each run's
      // sockets and namespaces are its own
      const j = spawnCli('echo-lab', ['all', '--json']);
      const t = spawnCli('echo-lab', ['all']);
      expect(await j.exit, j.stderr()).toEqual({ code: 0, signal: null });
      const all = JSON.parse(j.stdout()); // one document, not one per line
      expect(all.map((r: { name: string }) => r.name)).toEqual(SCENARIOS.map((s) => s.name));
      expect(await t.exit, t.stdout().slice(-2000)).toEqual({ code: 0, signal: null });
      expect(t.stdout()).toMatch(
        new RegExp(`\\n${SCENARIOS.length} scenarios: \\d+ reproduced, 0 not, \\d+ skipped[^\\n]*\\n$`),
      );
    },
    90_000,
  );

  it.skipIf(!!noNetns)(
    'Ctrl-C during a namespace scenario removes its namespaces and children, exits 130',
    async () => {
      const lab = spawnCli('echo-lab', ['keepalive']);
      // its namespaces are named after its pid (mod 100000)
      const mine = (list: string) =>
        list.split('\n').filter((l) => new RegExp(`^ek[CS]-${lab.child.pid! % 100000}\\d`).test(l));
      const netns = () => execFileSync('ip', ['netns', 'list'], { encoding: 'utf8', stdio: 'pipe' });
      await until(() => mine(netns()).length === 2, 15_000, 'the two namespaces');
      lab.child.kill('SIGINT');
      expect((await lab.exit).code).toBe(130);
      expect(mine(netns())).toEqual([]);
      expect(lab.stderr()).not.toMatch(/\n\s+at /);
    },
  );

  it.runIf(linux)(
    "a scenario's listener gets a port no other socket uses (its state tables show only its own)",
    async () => {
      // a port left with a TIME_WAIT remain: its server closed first, then went away
      const old = net.createServer((s) => s.destroy());
      const port = await listenLocal(old);
      const c = net.connect(port, '127.0.0.1');
      c.resume();
      await once(c, 'close');
      await closeServer(old);
      await until(() => othersOnPort(port).some((e) => e.state === 'TIME_WAIT'), 5000, 'TIME_WAIT');
      // what listenLocal checks; the kernel may hand out such a port to bind(0) with SO_REUSEADDR
      const fresh = net.createServer();
      const got = await listenLocal(fresh);
      expect(othersOnPort(got)).toEqual([]);
      await closeServer(fresh);
    },
  );

  it('echo-lab list names every scenario; an unknown one exits 2', async () => {
    const p = spawnCli('echo-lab', ['list']);
    expect((await p.exit).code).toBe(0);
    for (const s of SCENARIOS) expect(p.stdout()).toContain(s.name);
    const bad = spawnCli('echo-lab', ['nope']);
    expect((await bad.exit).code).toBe(2);
    expect(bad.stderr()).toMatch(/^echo-lab: SCENARIO nope: unknown/);
  });
});

// --- the packet ladder: segments parsed from a capture on lo, not predicted ---------------------
const noCapture = linux ? captureUnavailable() : 'Linux only';
if (noCapture) console.warn(`skipping the packet-ladder tests: ${noCapture}`);

describe.skipIf(!!noCapture)('echo-lab --trace: the scenario’s own segments', () => {
  const ladderOf = async (name: string) => {
    const r = await traced(findScenario(name)!);
    expect(r.ok).toBe(true);
    if (!r.trace || !('ladders' in r.trace)) throw new Error(`no ladder: ${JSON.stringify(r.trace)}`);
    return r.trace.ladders;
  };
  const rows = (l: Ladder) => l.rows.map((x) => `${x.toServer ? '>' : '<'} ${x.label.split(' ')[0]}`);

  it('time-wait: handshake, the data, FIN from the server first, TIME_WAIT on its side', async () => {
    const [l, ...more] = await ladderOf('time-wait');
    expect(more).toHaveLength(0);
    expect(rows(l!).slice(0, 3)).toEqual(['> SYN', '< SYN,ACK', '> ACK']);
    expect(l!.rows.some((x) => x.toServer && / len=6 /.test(x.label))).toBe(true); // the message
    expect(l!.rows.some((x) => !x.toServer && / len=6 /.test(x.label))).toBe(true); // its echo
    const fins = l!.rows.filter((x) => x.label.startsWith('FIN'));
    expect(fins.map((x) => x.toServer)).toEqual([false, true]); // the server closes first
    expect(l!.rows.map((x) => x.serverState).filter(Boolean)).toContain('TIME_WAIT');
    expect(l!.rows.at(-1)!.clientState).toBe('CLOSED');
    for (const line of formatLadder(l!)) expect(line.length).toBeLessThanOrEqual(80);
  });

  it('econnrefused: a SYN answered by RST', async () => {
    const [l] = await ladderOf('econnrefused');
    expect(rows(l!)).toEqual(['> SYN', '< RST,ACK']);
  });

  it('epipe: the RST comes right after the first write to a closed peer', async () => {
    const [l] = await ladderOf('epipe');
    const r = rows(l!);
    const write = r.indexOf('> PSH,ACK');
    expect(write).toBeGreaterThan(0);
    expect(r[write + 1]).toBe('< RST');
  });

  it('--svg writes the ladder as an SVG document', async () => {
    const file = path.join(os.tmpdir(), `ladder-${process.pid}.svg`);
    const p = spawnCli('echo-lab', ['econnrefused', '--trace', '--svg', file]);
    expect((await p.exit).code).toBe(0);
    // nothing listens: the server side enters no state (SYN_RECV was drawn here before)
    expect(p.stdout()).toMatch(/-- SYN seq=0 win=\d+ -+>\n/);
    const svg = readFileSync(file, 'utf8');
    expect(svg.startsWith('<?xml')).toBe(true);
    // well-formed: every element closed, in order
    const stack: string[] = [];
    for (const m of svg.matchAll(/<(\/?)([a-zA-Z]+)[^>]*?(\/?)>/g)) {
      if (m[3] === '/') continue;
      if (m[1] === '/') expect(stack.pop()).toBe(m[2]);
      else stack.push(m[2]!);
    }
    expect(stack).toEqual([]);
    expect(svg).toMatch(/RST,ACK/);
  });
});
