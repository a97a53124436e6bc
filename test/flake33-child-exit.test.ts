// A namespace child's last message and its exit can reach a busy parent in either order (Node
// does not order a child's 'exit' against the messages still in its IPC channel): a wait for
// that message resolves when it comes before the channel closes, and rejects only once the
// channel closed without it.
import { EventEmitter } from 'node:events';
import { describe, expect, it } from 'vitest';
import { childMessages, type IpcChild } from '../src/lab/netns.js';

function fakeChild(): EventEmitter & { connected: boolean } {
  return Object.assign(new EventEmitter(), { connected: true });
}

describe('childMessages: the exit and the last message in either order', () => {
  it("'exit' before the 'error' message still in the channel: the wait gets the message", async () => {
    const proc = fakeChild();
    const next = childMessages(proc as unknown as IpcChild, () => '');
    const waiting = next('error', 5000);
    proc.emit('exit', 0, null);
    proc.emit('message', { type: 'error', code: 'ERR_HEARTBEAT_TIMEOUT' });
    proc.connected = false;
    proc.emit('disconnect');
    await expect(waiting).resolves.toMatchObject({ type: 'error', code: 'ERR_HEARTBEAT_TIMEOUT' });
  });

  it('the child ends and its channel closes without the message: the wait rejects, naming it', async () => {
    const proc = fakeChild();
    const next = childMessages(proc as unknown as IpcChild, () => 'what it said on stderr');
    const waiting = next('error', 5000);
    proc.emit('exit', 3, null);
    proc.connected = false;
    proc.emit('disconnect');
    await expect(waiting).rejects.toThrow(/child exited \(3\) before 'error': what it said on stderr/);
  });

  it('a child with no channel left rejects at its exit', async () => {
    const proc = fakeChild();
    proc.connected = false;
    const next = childMessages(proc as unknown as IpcChild, () => '');
    const waiting = next('result', 5000);
    proc.emit('exit', 1, null);
    await expect(waiting).rejects.toThrow(/child exited \(1\) before 'result'/);
  });

  it('a message that came first is kept for the wait that asks later', async () => {
    const proc = fakeChild();
    const next = childMessages(proc as unknown as IpcChild, () => '');
    proc.emit('message', { type: 'connected', local: 1234 });
    await expect(next('connected', 5000)).resolves.toMatchObject({ local: 1234 });
  });
});
