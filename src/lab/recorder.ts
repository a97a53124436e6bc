// What a lab scenario produces: the steps it took, the errors it met (explained from the one
// error table), the kernel's TCP states at chosen moments, and whether the behaviour
// matched what the tutorials describe. echo-lab prints it; the tests assert on it.

import { readFileSync } from 'node:fs';
import { errorCode, explainError } from '../core/errors.js';
import { readSysctl, SYSCTLS, type SysctlName } from '../core/sysctl.js';
import type { TcpEntry } from '../core/tcp-states.js';
import type { Segment } from './capture.js';
import type { Ladder } from './ladder.js';
import { labTcpStates } from './states.js';
import { describeSchedule, liveSynSchedule } from './timers.js';

export interface LabStep {
  /** ms since the scenario started */
  t: number;
  text: string;
}

export interface LabError {
  code: string;
  line: string;
  /** ms since the scenario started */
  t: number;
  /** when the program met it, µs since the epoch (the clock of a capture's `epochUs`), where known */
  atUs?: number;
}

export interface LabStates {
  label: string;
  available: boolean;
  entries: TcpEntry[];
}

/** A Linux timer the scenario printed, computed from live settings, next to what the run measured. */
export interface LabTimer {
  what: string;
  /** computed from the live sysctls and the kernel's rules, ms */
  predictedMs: number;
  /** measured in this run (capture or clock), ms; absent when it could not be measured */
  measuredMs?: number;
  /** when the measured span began and ended, µs since the epoch (a capture's kernel stamps or the clock) */
  fromUs?: number;
  toUs?: number;
  /**
   * the measurement ended on this process's clock: how late its event loop ran a timer due
   * when the measured one ended, ms (a stall that delayed the end, not the timer measured)
   */
  loopLateMs?: number;
}

export interface LabCheck {
  what: string;
  ok: boolean;
}

/** A kernel setting the scenario depends on, as read on this machine. */
export interface LabSetting {
  name: string;
  value: string;
  meaning: string;
}

export interface ScenarioResult {
  name: string;
  title: string;
  /** the tutorials' topics this scenario checks */
  tutorials: string;
  steps: LabStep[];
  errors: LabError[];
  states: LabStates[];
  checks: LabCheck[];
  /** the kernel settings and Linux timers it depends on */
  kernel: LabSetting[];
  facts: string[];
  /** Linux timers computed from live settings, each with what the run measured */
  timers?: LabTimer[];
  /** the TCP/UDP ports of the scenario's own sockets: what a capture keeps */
  ports?: number[];
  /** every check held */
  ok: boolean;
  /** set when the scenario could not run here (missing capability) */
  skipped?: string;
  ms: number;
  /** --trace: the scenario's TCP segments off the wire, one ladder per connection */
  trace?:
    | {
        segments: Segment[];
        ladders: Ladder[];
        ports?: number[];
        /** a scenario on lo that runs a part in namespaces: that part's segments, off its veth */
        netnsSegments?: Segment[];
      }
    | { unavailable: string };
}

/** Who wants to hear of a scenario's ports as they are made (a capture filtering by port). */
const portWatchers = new Set<(port: number) => void>();

/** Hear of every port a scenario announces from now on; returns the function that stops it. */
export function onPort(fn: (port: number) => void): () => void {
  portWatchers.add(fn);
  return () => portWatchers.delete(fn);
}

/** A scenario made a socket on this port (a listener, a held port): a capture keeps its segments. */
export function announcePort(port: number): void {
  if (port > 0 && port < 65536) for (const fn of portWatchers) fn(port);
}

/** TcpExtTCPTimeWaitOverflow: closes that skipped TIME_WAIT because tcp_max_tw_buckets was reached. */
export function timeWaitOverflows(): number | undefined {
  try {
    const lines = readFileSync('/proc/net/netstat', 'utf8').split('\n');
    for (let i = 0; i + 1 < lines.length; i++) {
      if (!lines[i]!.startsWith('TcpExt:')) continue;
      const names = lines[i]!.split(/\s+/);
      const values = lines[i + 1]!.split(/\s+/);
      const at = names.indexOf('TCPTimeWaitOverflow');
      return at < 0 ? undefined : Number(values[at]);
    }
  } catch {
    // not Linux
  }
  return undefined;
}

/**
 * A timer on this process's event loop due `ms` from now. `lateMs()`: how late the loop ran it
 * (0 when on time; while it is overdue and not yet run, how overdue it is now). A measurement
 * whose end is read on this process's clock near that moment was delayed by that stall too.
 */
export function loopSentinel(ms: number): { lateMs(): number; stop(): void } {
  const due = performance.now() + ms;
  let ranAt: number | undefined;
  const t = setTimeout(() => {
    ranAt = performance.now();
  }, ms);
  t.unref?.();
  return {
    lateMs: () => Math.max(0, Math.round((ranAt ?? performance.now()) - due)),
    stop: () => clearTimeout(t),
  };
}

/** What a scenario records, told as it records it (echo-lab --web streams these to the page). */
export type RecorderEvent =
  | { kind: 'step'; scenario: string; step: LabStep }
  | { kind: 'error'; scenario: string; error: LabError }
  | { kind: 'states'; scenario: string; states: LabStates }
  | { kind: 'check'; scenario: string; check: LabCheck };

/** Listeners told of every Recorder's steps, errors, state snapshots and checks as they happen. */
export const recorderListeners = new Set<(e: RecorderEvent) => void>();

function tell(e: RecorderEvent): void {
  for (const fn of recorderListeners) {
    try {
      fn(e);
    } catch {
      // a listener's failure is its own; the scenario goes on
    }
  }
}

export class Recorder {
  private readonly t0 = performance.now();
  readonly steps: LabStep[] = [];
  readonly errors: LabError[] = [];
  readonly states: LabStates[] = [];
  readonly checks: LabCheck[] = [];
  readonly kernel: LabSetting[] = [];
  readonly facts: string[] = [];
  readonly ports = new Set<number>();
  readonly timers: LabTimer[] = [];
  private twOverflowAtStart: number | undefined;

  constructor(
    readonly name: string,
    readonly title: string,
    readonly tutorials: string,
  ) {}

  /** Say which kernel settings (read live) and Linux constants this scenario depends on. */
  dependsOn(names: SysctlName[], facts: string[] = []): void {
    for (const name of names) {
      const value = readSysctl(name);
      if (value === undefined) continue;
      let meaning: string = SYSCTLS[name];
      const sched = name === 'tcp_syn_retries' ? liveSynSchedule() : undefined;
      if (sched)
        meaning += `; here, with tcp_syn_linear_timeouts ${sched.linear}: ${describeSchedule(sched)}`;
      this.kernel.push({ name, value, meaning });
    }
    this.facts.push(...facts);
  }

  /**
   * The scenario shows TIME_WAIT. On a host whose TIME_WAIT table is full (tcp_max_tw_buckets)
   * the kernel closes sockets without it: a run during which that happened is reported as
   * skipped, with the reason, instead of as a wrong result.
   */
  needsTimeWait(): void {
    this.twOverflowAtStart = timeWaitOverflows();
  }

  /** Name ports of the scenario's own sockets (listeners, clients): the capture keeps their segments. */
  usePort(...ports: (number | undefined)[]): void {
    for (const p of ports)
      if (p !== undefined && p > 0) {
        this.ports.add(p);
        announcePort(p);
      }
  }

  elapsed(): number {
    return Math.round(performance.now() - this.t0);
  }

  step(text: string): void {
    const step = { t: this.elapsed(), text };
    this.steps.push(step);
    tell({ kind: 'step', scenario: this.name, step });
    for (const m of text.matchAll(/:(\d{4,5})\b/g)) if (Number(m[1]) >= 1024) announcePort(Number(m[1]));
  }

  /** Record an error the scenario provoked (`atUs`: when its program met it); returns its code. */
  error(err: unknown, atUs?: number): string {
    const e = explainError(err);
    const error = { code: e.code, line: e.line, t: this.elapsed(), ...(atUs !== undefined ? { atUs } : {}) };
    this.errors.push(error);
    tell({ kind: 'error', scenario: this.name, error });
    return errorCode(err);
  }

  /** Snapshot the TCP states of these ports, as `netstat -an | grep PORT` would show them. */
  snapshot(
    label: string,
    ports: number[],
    filter?: (e: TcpEntry) => boolean,
    read?: (file: string) => string,
  ): TcpEntry[] {
    const view = labTcpStates(ports, read);
    const entries = filter ? view.entries.filter(filter) : view.entries;
    const states = { label, available: view.available, entries };
    this.states.push(states);
    tell({ kind: 'states', scenario: this.name, states });
    return entries;
  }

  /**
   * Wait (bounded) until the kernel shows the expected states, then snapshot. Some state
   * changes trail the event Node reports (an ACK still in flight), so look until they land.
   */
  async settle(
    label: string,
    ports: number[],
    done: (entries: TcpEntry[]) => boolean,
    filter?: (e: TcpEntry) => boolean,
    timeoutMs = 2000,
    /** read /proc/net/tcp elsewhere (inside a network namespace) */
    read?: (file: string) => string,
  ): Promise<TcpEntry[]> {
    const end = performance.now() + timeoutMs;
    for (;;) {
      const view = labTcpStates(ports, read);
      const entries = filter ? view.entries.filter(filter) : view.entries;
      if (!view.available || done(entries) || performance.now() > end) {
        const states = { label, available: view.available, entries };
        this.states.push(states);
        tell({ kind: 'states', scenario: this.name, states });
        return entries;
      }
      await new Promise((r) => setTimeout(r, 5));
    }
  }

  /**
   * Record a computed timer beside its measurement; true when within 10 %. `loopLateMs`: the
   * end was read on this process's clock, and a timer due then ran that late (loopSentinel):
   * the measurement is also within when, less that stall, it is within 10 % and not early.
   */
  timer(
    what: string,
    predictedMs: number,
    measuredMs?: number,
    span?: { fromUs?: number; toUs?: number; loopLateMs?: number },
  ): boolean {
    this.timers.push({ what, predictedMs, ...(measuredMs !== undefined ? { measuredMs } : {}), ...span });
    if (measuredMs === undefined) return false;
    const near = (ms: number) => Math.abs(ms - predictedMs) <= predictedMs * 0.1;
    const late = span?.loopLateMs ?? 0;
    return near(measuredMs) || (measuredMs >= predictedMs * 0.9 && near(measuredMs - late));
  }

  check(what: string, ok: boolean): boolean {
    const check = { what, ok };
    this.checks.push(check);
    tell({ kind: 'check', scenario: this.name, check });
    return ok;
  }

  result(skipped?: string): ScenarioResult {
    if (skipped === undefined && this.twOverflowAtStart !== undefined && !this.checks.every((c) => c.ok)) {
      const grew = (timeWaitOverflows() ?? 0) - this.twOverflowAtStart;
      if (grew > 0)
        skipped = `the kernel's TIME_WAIT table was full during this run (tcp_max_tw_buckets = ${readSysctlRaw('tcp_max_tw_buckets') ?? '?'}; ${grew} sockets closed without TIME_WAIT, TcpExtTCPTimeWaitOverflow): TIME_WAIT could not be shown here now`;
    }
    return {
      name: this.name,
      title: this.title,
      tutorials: this.tutorials,
      steps: this.steps,
      errors: this.errors,
      states: this.states,
      checks: this.checks,
      kernel: this.kernel,
      facts: this.facts,
      ports: [...this.ports],
      ...(this.timers.length ? { timers: this.timers } : {}),
      ok: skipped === undefined && this.checks.length > 0 && this.checks.every((c) => c.ok),
      ...(skipped ? { skipped } : {}),
      ms: this.elapsed(),
    };
  }
}

/** Resources a scenario opened, closed on every exit path. */
export class Cleanup {
  /** every Cleanup not yet run: a signal that ends the process runs them all at once */
  private static readonly live = new Set<Cleanup>();
  private readonly fns: (() => unknown)[] = [];
  constructor() {
    Cleanup.live.add(this);
  }
  add(fn: () => unknown): void {
    this.fns.push(fn);
  }
  async run(): Promise<void> {
    Cleanup.live.delete(this);
    for (const fn of this.fns.splice(0).reverse()) {
      try {
        await fn();
      } catch {
        // best effort: one failed close must not leave the rest open
      }
    }
  }
  /**
   * The process is about to exit (a signal): start every pending cleanup now. What is
   * synchronous (killing a child, removing a file) is done when this returns; closing a
   * socket is left to the exit.
   */
  static runAllNow(): void {
    for (const c of Cleanup.live) {
      Cleanup.live.delete(c);
      for (const fn of c.fns.splice(0).reverse()) {
        try {
          const r = fn();
          if (r instanceof Promise) r.catch(() => {});
        } catch {
          // best effort, as run()
        }
      }
    }
  }
}

function readSysctlRaw(name: string): string | undefined {
  try {
    return readFileSync(`/proc/sys/net/ipv4/${name}`, 'utf8').trim();
  } catch {
    return undefined;
  }
}
