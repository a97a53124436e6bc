// The tutorials' claims that echo-lab corrects, read from the run: socket options read back
// by the scenario beside what this test reads itself from the kernel.

import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { runScenario } from '../src/index.js';
import { captureUnavailable } from '../src/lab/capture.js';
import { findScenario, traced } from '../src/lab/index.js';

const linux = process.platform === 'linux';

describe.runIf(linux)('echo-lab claims, from the run', () => {
  it("sockopts: a fresh socket's SO_SNDBUF is tcp_wmem's default; the connected one was autotuned", async () => {
    const r = await runScenario('sockopts');
    const wmem = readFileSync('/proc/sys/net/ipv4/tcp_wmem', 'utf8').trim().split(/\s+/).map(Number);
    const fresh = r.steps.find((s) => s.text.startsWith('SO_SNDBUF of a fresh TCP socket'));
    const connected = r.steps.find((s) => s.text.startsWith('SO_SNDBUF of the connected socket'));
    expect(fresh?.text).toContain(`: ${wmem[1]} `);
    const grown = Number(/: (\d+):/.exec(connected?.text ?? '')?.[1]);
    expect(grown).toBeGreaterThan(wmem[1]!);
    expect(grown).toBeLessThanOrEqual(wmem[2]!);
    expect(r.checks.filter((c) => !c.ok)).toEqual([]);
  });
});

describe.runIf(linux)('echo-lab claims: UDP', () => {
  it('udp-errors: implicit bind at sendto; ECONNREFUSED only on the connected socket', async () => {
    const r = await runScenario('udp-errors');
    expect(r.checks.filter((c) => !c.ok)).toEqual([]);
    expect(r.checks.length).toBe(3);
    expect(r.errors.map((e) => e.code)).toEqual(['ECONNREFUSED']);
    // the implicit port is a real ephemeral port of this machine's range
    const [lo, hi] = readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8')
      .trim()
      .split(/\s+/)
      .map(Number);
    const port = r.ports?.[0] ?? 0;
    expect(port).toBeGreaterThanOrEqual(lo!);
    expect(port).toBeLessThanOrEqual(hi!);
  });
});

describe.runIf(linux)('echo-lab claims: processes', () => {
  it('zombies: a parent that never waits leaves zombies in /proc; wait() and Node leave none', async () => {
    const r = await runScenario('zombies');
    expect(r.checks.filter((c) => !c.ok)).toEqual([]);
    expect(r.checks.length).toBe(4);
    // the process table as /proc showed it: two children in state Z under the neglectful parent
    expect(r.steps[0]!.text.match(/ Z \(sleep\) <defunct>/g)).toHaveLength(2);
  });
});

const noCapture = linux ? captureUnavailable() : 'Linux only';
describe.skipIf(!!noCapture)('echo-lab claims, on the wire', () => {
  it('close-unread: close() with unread data sends RST; queued data goes out, then FIN', async () => {
    const r = await traced(findScenario('close-unread')!);
    expect(r.checks.filter((c) => !c.ok)).toEqual([]);
    if (!r.trace || !('ladders' in r.trace)) throw new Error('no ladder');
    const [unread, queued, ...more] = r.trace.ladders;
    expect(more).toHaveLength(0);
    // the first connection ends with the server's RST, and no FIN at all
    const ends = unread!.rows.filter((x) => x.flags.includes('RST') || x.flags.includes('FIN'));
    expect(ends.map((x) => [x.toServer, x.flags.includes('RST')])).toEqual([[false, true]]);
    // the second: the server's FIN comes after 256 KiB of data (relative seq), no RST
    const fin = queued!.rows.find((x) => !x.toServer && x.flags.includes('FIN'))!;
    expect(fin.seq + fin.len).toBe(256 * 1024 + 1);
    // and no RST before it (what the client does at cleanup afterwards is not the claim)
    const finRow = queued!.rows.indexOf(fin);
    expect(queued!.rows.slice(0, finRow).some((x) => x.flags.includes('RST'))).toBe(false);
  });
});
