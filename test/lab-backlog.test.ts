// The backlog scenario's retransmission timer follows the SYN the wire shows found room, even
// when accept() begins after the first retransmission was already dropped (a stalled server,
// or a loaded machine that delays the scenario's own timer).
import { describe, expect, it } from 'vitest';
import { captureUnavailable } from '../src/lab/capture.js';
import { backlog } from '../src/lab/scenarios/backlog.js';
import { liveSynSchedule } from '../src/lab/timers.js';

const noWire = process.platform === 'linux' ? captureUnavailable() : 'Linux only';

describe.skipIf(!!noWire)('backlog: the timer is the retransmission that found room', () => {
  it('accept() after the first retransmission: the second gets in, and the timer is the second one', async () => {
    const sends = liveSynSchedule()!.sends;
    const r = await backlog({ acceptAfterMs: sends[1]! + 200 });
    expect(r.checks.filter((c) => !c.ok)).toEqual([]);
    expect(r.timers).toHaveLength(1);
    expect(r.timers![0]!.predictedMs).toBe(sends[2]);
    expect(Math.abs(r.timers![0]!.measuredMs! - sends[2]!)).toBeLessThan(sends[2]! * 0.1);
  }, 15_000);
});
