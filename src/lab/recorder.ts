// What a lab scenario produces: the steps it took, the errors it met (explained from the one
// error table), the kernel's TCP states at chosen moments, and whether the behaviour
// matched what the tutorials describe. echo-lab prints it; the tests assert on it.

import { errorCode, explainError } from '../core/errors.js';
import { readSysctl, SYSCTLS, type SysctlName } from '../core/sysctl.js';
import { type TcpEntry, tcpStates } from '../core/tcp-states.js';
import type { Segment } from './capture.js';
import type { Ladder } from './ladder.js';

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
}

export interface LabStates {
  label: string;
  available: boolean;
  entries: TcpEntry[];
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
  /** the TCP/UDP ports of the scenario's own sockets: what a capture keeps */
  ports?: number[];
  /** every check held */
  ok: boolean;
  /** set when the scenario could not run here (missing capability) */
  skipped?: string;
  ms: number;
  /** --trace: the scenario's TCP segments off the wire, one ladder per connection */
  trace?: { segments: Segment[]; ladders: Ladder[] } | { unavailable: string };
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

  constructor(
    readonly name: string,
    readonly title: string,
    readonly tutorials: string,
  ) {}

  /** Say which kernel settings (read live) and Linux constants this scenario depends on. */
  dependsOn(names: SysctlName[], facts: string[] = []): void {
    for (const name of names) {
      const value = readSysctl(name);
      if (value !== undefined) this.kernel.push({ name, value, meaning: SYSCTLS[name] });
    }
    this.facts.push(...facts);
  }

  /** Name ports of the scenario's own sockets (listeners, clients): the capture keeps their segments. */
  usePort(...ports: (number | undefined)[]): void {
    for (const p of ports) if (p !== undefined && p > 0) this.ports.add(p);
  }

  elapsed(): number {
    return Math.round(performance.now() - this.t0);
  }

  step(text: string): void {
    this.steps.push({ t: this.elapsed(), text });
  }

  /** Record an error the scenario provoked; returns its code. */
  error(err: unknown): string {
    const e = explainError(err);
    this.errors.push({ code: e.code, line: e.line, t: this.elapsed() });
    return errorCode(err);
  }

  /** Snapshot the TCP states of these ports, as `netstat -an | grep PORT` would show them. */
  snapshot(
    label: string,
    ports: number[],
    filter?: (e: TcpEntry) => boolean,
    read?: (file: string) => string,
  ): TcpEntry[] {
    const view = tcpStates(ports, read);
    const entries = filter ? view.entries.filter(filter) : view.entries;
    this.states.push({ label, available: view.available, entries });
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
      const view = tcpStates(ports, read);
      const entries = filter ? view.entries.filter(filter) : view.entries;
      if (!view.available || done(entries) || performance.now() > end) {
        this.states.push({ label, available: view.available, entries });
        return entries;
      }
      await new Promise((r) => setTimeout(r, 5));
    }
  }

  check(what: string, ok: boolean): boolean {
    this.checks.push({ what, ok });
    return ok;
  }

  result(skipped?: string): ScenarioResult {
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
