import { describe, expect, it } from 'vitest';
import type { ServerFigures } from '../bench/figures.js';
import { extraTargets, type Report, targets } from '../bench/report.js';
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

  it('takes the rows other benches add', () => {
    extraTargets.push(() => ['| echo-proxy (no toxic) vs socat | ≥ 1.0× | 1.20× | met |']);
    try {
      expect(rowOf(targets(report()), 'echo-proxy')).toContain('met');
    } finally {
      extraTargets.pop();
    }
  });
});
