import { afterEach, describe, expect, it } from 'vitest';
import { type ClosedReport, closedReported, reportClosed } from '../src/server/ipc.js';

// reportClosed() writes through process.send: wrapped here to record the reports; anything
// else (the test runner's own messages, when it runs in a forked process) goes through
const proc = process as unknown as { send?: (...args: unknown[]) => boolean; connected?: boolean };
const saved = { send: proc.send, connected: Object.getOwnPropertyDescriptor(process, 'connected') };

function capture(): unknown[] {
  const sent: unknown[] = [];
  proc.send = (...args: unknown[]) => {
    const msg = args[0] as { type?: string } | undefined;
    if (msg?.type !== 'closed' && msg?.type !== 'closed-batch') return saved.send!.apply(process, args);
    sent.push(msg);
    setImmediate(args[3] as () => void);
    return true;
  };
  if (!process.connected)
    Object.defineProperty(process, 'connected', { value: true, configurable: true, writable: true });
  return sent;
}

afterEach(() => {
  proc.send = saved.send;
  if (saved.connected) Object.defineProperty(process, 'connected', saved.connected);
  else delete proc.connected;
});

const report = (id: number): ClosedReport => ({ type: 'closed', id, bytesIn: id, bytesOut: id, ms: 0 });

describe('closed reports from a child process', () => {
  it('the reports of one event-loop turn travel in one message, in order, and each resolves once written', async () => {
    const sent = capture();
    const done = [1, 2, 3].map((id) => reportClosed(report(id)));
    expect(sent).toEqual([]); // nothing written within the turn
    await Promise.all(done);
    expect(sent).toEqual([{ type: 'closed-batch', list: [report(1), report(2), report(3)] }]);
  });

  it('a report alone is a plain closed message; a later turn is a message of its own', async () => {
    const sent = capture();
    await reportClosed(report(7));
    await reportClosed(report(8));
    await closedReported();
    expect(sent).toEqual([report(7), report(8)]);
  });
});
