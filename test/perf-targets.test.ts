import { describe, expect, it } from 'vitest';
import type { ServerFigures } from '../bench/figures.js';
import { type Report, targets } from '../bench/report.js';
import type { LgResult } from '../bench/tools.js';

const lg = (rate: number, mbps?: number): LgResult => ({ rate, rate_MBps: mbps }) as LgResult;
const srv = (conn: number, extra: Partial<ServerFigures> = {}): ServerFigures => ({
  ours: {},
  lg: { lgConn: lg(conn) },
  ...extra,
});

function report(): Report {
  return {
    tcp: {
      baseline: srv(1000),
      evented: srv(1050, {
        lg: { lgConn: lg(1050), lgPp: lg(90), lgBulk: lg(0, 70) },
        mem: { held: 10_000, bytesPerConn: 5000, marginal: 2000 },
      }),
      'evented -q': srv(1050),
      'workers ×2': srv(900),
      'C epoll': srv(2000, { lg: { lgConn: lg(2000), lgPp: lg(100), lgBulk: lg(0, 100) } }),
    },
    udp: {
      'echo-server --udp': { ours: {}, lg: { lgPp: lg(95) } },
      'C udp_echo': { ours: {}, lg: { lgPp: lg(100) } },
    },
    transports: {},
    hasC: true,
    seconds: 3,
    reps: 5,
  };
}

const rowOf = (lines: string[], what: string) => lines.find((l) => l.startsWith(`| ${what}`)) ?? '';

describe('the targets table of bench/results.md', () => {
  it('says met or not met from the figures of the run, against the baseline each goal names', () => {
    const t = targets(report());
    expect(rowOf(t, 'connect/echo/close, 50 in flight, default logging')).toMatch(/1\.05×.*\| met \|$/);
    expect(rowOf(t, 'connect/echo/close, 50 in flight, -q')).toMatch(/1\.05×.*not met/);
    expect(rowOf(t, 'connect/echo/close, workers ×2 (hand-over)')).toMatch(/0\.90×.*\| met \|$/);
    expect(rowOf(t, 'connect/echo/close, workers ×2 --exclusive')).toMatch(/not measured/);
    expect(rowOf(t, 'ping-pong')).toMatch(/0\.90×.*\| met \|$/);
    expect(rowOf(t, 'bulk')).toMatch(/0\.70×.*not met/);
    expect(rowOf(t, 'UDP')).toMatch(/0\.95×.*\| met \|$/);
    // from the server's start (5000 B each), not the slope past the halfway point (2000 B)
    expect(rowOf(t, 'RSS per idle connection, 10000 held')).toMatch(/5000 B.*not met/);
  });

  it('holds echo-proxy, --ws and the admin page to their baselines of the same run', () => {
    const r = report();
    r.proxyFigures = {
      'echo-proxy': { ours: {}, lg: { lgPp: lg(120), lgBulk: lg(0, 50) } },
      socat: { ours: {}, lg: { lgPp: lg(100), lgBulk: lg(0, 60) } },
      haproxy: { ours: {}, lg: { lgPp: lg(160), lgBulk: lg(0, 55) } },
    };
    r.ws = {
      'ws baseline': {
        ours: { pp: { rate_per_s: 100 }, conn: { rate_per_s: 100 } } as ServerFigures['ours'],
        lg: {},
      },
      'evented --ws': {
        ours: { pp: { rate_per_s: 99 }, conn: { rate_per_s: 90 } } as ServerFigures['ours'],
        lg: {},
      },
    };
    r.admin = {
      'admin page closed': { ours: {}, lg: { lgPp: lg(100), lgConn: lg(100) } },
      'admin page open': { ours: {}, lg: { lgPp: lg(97), lgConn: lg(80) } },
    };
    const t = targets(r);
    const rows = (what: string) => t.filter((l) => l.startsWith(`| ${what}`));
    const [ppSocat, ppHa] = rows('echo-proxy ping-pong');
    expect(ppSocat).toMatch(/≥ 1\.0× socat \| 1\.20×.*\| met \|$/);
    expect(ppHa).toMatch(/≥ 0\.8× HAProxy \| 0\.75×.*not met/);
    const [bulkSocat, bulkHa] = rows('echo-proxy bulk');
    expect(bulkSocat).toMatch(/0\.83×.*not met/);
    expect(bulkHa).toMatch(/0\.91×.*\| met \|$/);
    expect(rows('--ws ping-pong')[0]).toMatch(/0\.99×.*\| met \|$/);
    expect(rows('--ws connect')[0]).toMatch(/0\.90×.*not met/);
    expect(rows('admin page open vs closed: ping-pong')[0]).toMatch(/0\.97×.*\| met \|$/);
    expect(rows('admin page open vs closed: connect')[0]).toMatch(/0\.80×.*not met/);
  });

  it('says "not measured" for a path this run did not measure', () => {
    const t = targets(report());
    expect(t.filter((l) => l.startsWith('| echo-proxy')).every((l) => l.endsWith('not measured |'))).toBe(
      true,
    );
    expect(t.filter((l) => l.startsWith('| admin page')).length).toBe(2);
  });
});
