// The messages between echo-server and the processes it starts (workers and fork children),
// typed on both sides. Sending never throws: a channel can close at any moment (a child that
// just exited, a parent that was killed), and that is not an error worth a crash.

import type { ChildProcess } from 'node:child_process';
import type { AddressInfo, Socket } from 'node:net';
import type { Fault, FaultDraw } from '../core/faults.js';
import type { TcpInfo } from '../core/libc.js';
import type { MessageCounts } from '../core/records.js';
import type { OptionReport } from '../core/sockopts.js';
import type { ServerConfig } from './config.js';

/** What a child process is for. */
export type ChildRole =
  /** long-lived worker: serves every connection the parent hands it */
  | 'serve'
  /** fork mode: serves the one connection it is handed, then exits */
  | 'serve-once'
  /** workers --exclusive: listens on its own socket (SO_REUSEPORT) */
  | 'listen';

export type ToChild =
  /**
   * The validated config, the parent's first message (the answer to 'hello'). It travels
   * over the channel only: with --tls it holds the private key, which must never be in a
   * child's environment or argv (/proc/PID/environ and cmdline are readable).
   */
  | { type: 'config'; config: ServerConfig }
  /**
   * a connection to serve; the socket travels with the message; `head`: base64 of bytes the
   * parent read already; `draw`: how its faults were chosen, to choose again on 'faults'
   */
  | { type: 'conn'; id: number; peer: string; head?: string; faults?: Fault[]; draw?: FaultDraw }
  /**
   * --fault changed at run time: open connections take the new list by their draw (workers
   * --exclusive choose faults themselves); `v`: the parent's FaultSet version
   */
  | { type: 'faults'; faults: Fault[]; v?: number }
  /**
   * stop: drain every connection, cut what is left at `deadline` (epoch ms), exit; `fdSeq`:
   * batches sent over the descriptor channel, to be taken (and drained) before exiting
   */
  | { type: 'shutdown'; deadline: number; fdSeq?: number }
  /** grace is over: cut every connection now and exit */
  | { type: 'force' };

export type FromChild =
  /** the child's first message: it listens for messages now and waits for its 'config' */
  | { type: 'hello' }
  /**
   * ready for connections ('serve', 'serve-once'); `fds`: its descriptor limit and those open
   * now; `handover`: it reads the descriptor channel (handover.ts)
   */
  | { type: 'ready'; fds?: { limit: number; open: number }; handover?: boolean }
  /** listening ('listen') */
  | { type: 'listening'; address: AddressInfo; options: OptionReport[] }
  | { type: 'listen-failed'; code: string; line: string }
  /** a connection ended (`id` of the hand-over; none for a connection the child accepted itself) */
  | {
      type: 'closed';
      id?: number;
      /** a 'listen' child's connection: its peer, as its 'live' messages listed it */
      peer?: string;
      bytesIn: number;
      bytesOut: number;
      error?: string;
      ms?: number;
      rttUs?: number;
      messages?: MessageCounts;
    }
  /**
   * bytes so far of the connections still open, sent each second while they change, with
   * TCP_INFO read as they did (--metrics)
   */
  | { type: 'progress'; conns: [id: number, bytesIn: number, bytesOut: number, tcp?: TcpInfo][] }
  /**
   * the connections a 'listen' child serves now (the first `LIVE_LISTED`; `count` in all),
   * sent each second while they change (--metrics)
   */
  | {
      type: 'live';
      count: number;
      conns: {
        peer: string;
        since?: number;
        bytesIn: number;
        bytesOut: number;
        buffered: number;
        reading: boolean;
        tcp?: TcpInfo;
      }[];
    }
  /** several `closed` reports in one message: those of connections that closed in the same event-loop turn */
  | { type: 'closed-batch'; list: ClosedReport[] }
  /** refusals by reason, sent once before a 'listen' child exits */
  | { type: 'refusals'; refusedBy: Record<string, number> };

/** A `closed` report, as sent alone or in a `closed-batch`. */
export type ClosedReport = Extract<FromChild, { type: 'closed' }>;

let batch: ClosedReport[] | undefined;
let flushed: Promise<void> | undefined;

/**
 * Tell the parent a connection closed. The reports of one event-loop turn travel in one
 * message (one alone as a plain `closed`): a worker closing many short connections writes one
 * IPC message per turn instead of one per connection. Resolves once written.
 */
export function reportClosed(r: ClosedReport): Promise<void> {
  if (batch) {
    batch.push(r);
    return flushed!;
  }
  batch = [r];
  flushed = new Promise<void>((resolve) => {
    setImmediate(() => {
      const list = batch!;
      batch = undefined;
      flushed = undefined;
      void sendToParent(list.length === 1 ? list[0]! : { type: 'closed-batch', list }).then(resolve);
    });
  });
  return flushed;
}

/** Resolves once every report made so far has been written. */
export function closedReported(): Promise<void> {
  return flushed ?? Promise.resolve();
}

/** Parent → child; false when the channel is gone. Errors go to `done`, never thrown. */
export function sendToChild(
  proc: ChildProcess,
  msg: ToChild,
  handle?: Socket,
  done: (err: Error | null) => void = () => {},
): boolean {
  if (!proc.connected) {
    done(new Error('the child process has exited'));
    return false;
  }
  try {
    return proc.send(msg, handle, done);
  } catch (err) {
    done(err as Error);
    return false;
  }
}

/** Child → parent; resolves once written (or at once when there is no parent any more). */
export function sendToParent(msg: FromChild): Promise<void> {
  return new Promise<void>((resolve) => {
    if (!process.connected || !process.send) return resolve();
    try {
      process.send(msg, undefined, {}, () => resolve());
    } catch {
      resolve();
    }
  });
}
