// the peer's host vanishes — no FIN, no RST, nothing. Without help a client that
// sends retransmits for ~15 minutes (tcp_retries2) and an idle one waits forever. Keepalive
// probes find a dead idle peer; TCP_USER_TIMEOUT bounds how long sent data may stay
// unacknowledged. Two namespaces, the path cut with a blackhole route on the server side
// (the server still answers ARP, so no ICMP turns the timeout into EHOSTUNREACH).
import type { TcpInfo } from '../../core/libc.js';
import { plural } from '../../core/parse.js';
import type { SocketOptions } from '../../core/sockopts.js';
import { captureUnavailable, type Segment } from '../capture.js';
import { CLIENT_ADDR, netnsUnavailable, SERVER_ADDR, withTwoHosts } from '../netns.js';
import { Recorder, type ScenarioResult } from '../recorder.js';
import { captureClientVeth, nowUs, oldestUnacked } from '../wire.js';

export interface DeadPeerSpec {
  name: string;
  title: string;
  options: SocketOptions;
  mode: 'idle' | 'write' | 'heartbeat';
  heartbeat?: { intervalMs: number; timeoutMs: number };
  /** the error the client reports (default ETIMEDOUT) */
  expect?: string;
  /** when the error should arrive, ms after the cut: [at least, at most] */
  window: [number, number];
  /**
   * when the timers set here say the error arrives, how that is computed, and from what moment
   * on the client's veth: the last segment received from the server, the first transmission of
   * the oldest unacknowledged data, or its first retransmission. `clock`: without a capture, measured from
   * the connect or the cut on this process's clock instead (absent: not measurable then).
   */
  predict: {
    ms: number;
    how: string;
    from: 'last-received' | 'first-retransmission' | 'unanswered-data';
    clock?: 'connected' | 'cut';
  };
  /** a second timer, from the cut to when the client program met the error (an application's own timers) */
  alsoFromCut?: { ms: number; how: string };
  explain: string;
}

export async function deadPeer(spec: DeadPeerSpec): Promise<ScenarioResult> {
  const r = new Recorder(spec.name, spec.title, 'a robust TCP client and server, watched on the wire');
  r.dependsOn(
    spec.name === 'user-timeout'
      ? ['tcp_retries2']
      : ['tcp_keepalive_time', 'tcp_keepalive_intvl', 'tcp_keepalive_probes'],
  );
  if (spec.mode === 'heartbeat') {
    const k = (n: string) => Number(r.kernel.find((x) => x.name === n)?.value);
    const total = k('tcp_keepalive_time') + k('tcp_keepalive_probes') * k('tcp_keepalive_intvl');
    if (Number.isFinite(total)) {
      r.step(
        `keepalive with this machine's defaults (${k('tcp_keepalive_time')} s idle, ${k('tcp_keepalive_probes')} probes ${k('tcp_keepalive_intvl')} s apart) would notice after ${total} s (${(total / 3600).toFixed(1)} h)`,
      );
    }
  }
  const why = netnsUnavailable();
  if (why) {
    r.step(`skipped: ${why}`);
    return r.result(why);
  }
  return withTwoHosts(async (h) => {
    const server = h.spawnIn(h.server, {
      role: 'server',
      host: SERVER_ADDR,
      echo: spec.mode === 'heartbeat',
    });
    const { port } = await server.next('listening');
    // the wire says when the timer started: the last segment received, or a retransmission
    const noWire = captureUnavailable();
    const wire = noWire ? undefined : await captureClientVeth(h);
    r.step(
      `two hosts: client ${CLIENT_ADDR} (netns ${h.client}), server ${SERVER_ADDR}:${port} (netns ${h.server})`,
    );
    const client = h.spawnIn(h.client, {
      role: 'client',
      host: SERVER_ADDR,
      port,
      options: spec.options,
      mode: spec.mode,
      heartbeat: spec.heartbeat,
    });
    const { local } = await client.next('connected');
    const connectedAt = performance.now();
    for (const line of describeOptions(spec.options)) r.step(`client sets ${line}`);
    r.snapshot('connected, seen from the client host', [port], undefined, h.readIn(h.client));
    client.send({ type: 'start' });
    h.ip(h.server, 'route', 'add', 'blackhole', `${CLIENT_ADDR}/32`);
    const cut = performance.now();
    const cutUs = nowUs();
    r.step(
      `the path is cut: blackhole route on the server for ${CLIENT_ADDR} (its host "vanishes": no FIN, no RST)`,
    );
    r.step(spec.explain);
    const failure = await client.next('error', spec.window[1] + 10_000);
    // from the cut to when the client program met the error (stamped there): this process may
    // read the message late, when its event loop is busy
    const ms = typeof failure.atUs === 'number' ? (failure.atUs - cutUs) / 1000 : performance.now() - cut;
    const err = Object.assign(new Error(failure.message), { code: failure.code, syscall: failure.syscall });
    r.step(
      `client socket fails after ${(ms / 1000).toFixed(1)} s: ${failure.code} (syscall ${failure.syscall})`,
    );
    r.error(err, typeof failure.atUs === 'number' ? failure.atUs : undefined);
    const info = (failure as { tcp?: TcpInfo }).tcp;
    if (info && spec.mode === 'write') {
      r.step(
        `the client's TCP_INFO just before: ${info.totalRetrans} retransmissions, the last timeout ${(info.rtoUs / 1000).toFixed(0)} ms (doubling each time), ${plural(info.unacked, 'segment')} unacknowledged — what TCP_USER_TIMEOUT cut short`,
      );
      r.check(
        'the kernel was retransmitting unacknowledged data (TCP_INFO)',
        info.totalRetrans > 0 && info.unacked > 0,
      );
    }
    const expected = spec.expect ?? 'ETIMEDOUT';
    r.check(`the dead peer is reported as ${expected}`, failure.code === expected);
    r.check(
      `it is detected within ${spec.window[0] / 1000}–${spec.window[1] / 1000} s of the cut`,
      ms >= spec.window[0] && ms <= spec.window[1],
    );
    if (spec.alsoFromCut) {
      const { ms: want, how } = spec.alsoFromCut;
      r.check(
        `${failure.code} within 10 % of ${want / 1000} s after the cut (${how})`,
        r.timer(`${spec.name}: ${failure.code} after the cut (the program's clock)`, want, ms),
      );
    }
    const segments = wire ? await wire.stop() : [];
    const start = timerStart(spec.predict.from, segments, Number(local), failure.atUs);
    if (start && typeof failure.atUs === 'number') {
      const measured = (failure.atUs - start.us) / 1000;
      r.step(`on the wire: ${failure.code} came ${(measured / 1000).toFixed(3)} s after ${start.what}`);
      r.check(
        `${failure.code} within 10 % of the computed ${spec.predict.ms / 1000} s (${spec.predict.how})`,
        r.timer(`${spec.name}: ${failure.code} after ${start.what}`, spec.predict.ms, measured, {
          fromUs: start.us,
          toUs: failure.atUs,
        }),
      );
      return r.result();
    }
    r.step(`the timer's start could not be read off the wire: ${noWire ?? 'it is not in the capture'}`);
    r.check('the timer is timed on the wire (or no capture here)', !!noWire);
    if (spec.predict.clock) {
      const within = r.timer(
        `${spec.name}: the dead peer is reported, after the ${spec.predict.clock === 'cut' ? 'cut' : 'connect'} (this process's clock)`,
        spec.predict.ms,
        spec.predict.clock === 'cut' ? ms : performance.now() - connectedAt - (performance.now() - cut - ms),
      );
      r.check(
        `detected within 10 % of the computed ${spec.predict.ms / 1000} s (${spec.predict.how})`,
        within,
      );
    }
    return r.result();
  });
}

/**
 * Where a dead-peer timer starts, on the client's veth (µs since the epoch): the last segment
 * received from the server before the error (the keepalive idle time counts from it), the first
 * transmission of the oldest unacknowledged data (an application's deadline for its answer), or
 * the first retransmission of that data
 * unacknowledged data (the kernel's retrans_stamp, which TCP_USER_TIMEOUT counts from: one RTO
 * after the data first left).
 */
function timerStart(
  from: 'last-received' | 'first-retransmission' | 'unanswered-data',
  segments: Segment[],
  local: number,
  errorUs: unknown,
): { us: number; what: string } | undefined {
  if (from === 'last-received') {
    const got = segments.filter(
      (x) => x.dport === local && (typeof errorUs !== 'number' || x.epochUs < errorUs),
    );
    const last = got.at(-1);
    return last && { us: last.epochUs, what: `the last segment from the server (${last.flags.join(',')})` };
  }
  const head = oldestUnacked(segments, { addr: CLIENT_ADDR, port: local });
  if (from === 'unanswered-data')
    return (
      head && {
        us: head.first.epochUs,
        what: `the unanswered data (${plural(head.first.len, 'byte')}) first left`,
      }
    );
  const rtx = head?.retransmitted;
  return (
    rtx && {
      us: rtx.epochUs,
      what: `the first retransmission of the oldest unacknowledged data (${((rtx.epochUs - head.first.epochUs) / 1000).toFixed(0)} ms, one RTO, after it first left)`,
    }
  );
}

function describeOptions(o: SocketOptions): string[] {
  const out: string[] = [];
  if (o.keepAliveIdleMs !== undefined)
    out.push(`SO_KEEPALIVE on, TCP_KEEPIDLE ${o.keepAliveIdleMs / 1000} s`);
  if (o.keepAliveIntervalMs !== undefined) out.push(`TCP_KEEPINTVL ${o.keepAliveIntervalMs / 1000} s`);
  if (o.keepAliveCount !== undefined) out.push(`TCP_KEEPCNT ${o.keepAliveCount}`);
  if (o.userTimeoutMs !== undefined) out.push(`TCP_USER_TIMEOUT ${o.userTimeoutMs} ms`);
  return out;
}

export const keepalive = () =>
  deadPeer({
    name: 'keepalive',
    title: 'an idle connection to a vanished host, found by keepalive probes',
    options: { keepAlive: true, keepAliveIdleMs: 1000, keepAliveIntervalMs: 1000, keepAliveCount: 3 },
    mode: 'idle',
    window: [2500, 8000],
    predict: {
      ms: 4000,
      how: 'TCP_KEEPIDLE 1 s after the last segment received + TCP_KEEPCNT 3 × TCP_KEEPINTVL 1 s',
      from: 'last-received',
      clock: 'connected',
    },
    explain:
      'the client is idle: without keepalive it would wait forever; with it, 1 s idle + 3 unanswered probes 1 s apart = 4 s',
  });

export const heartbeat = () =>
  deadPeer({
    name: 'heartbeat',
    title: 'an application heartbeat finds a vanished peer in seconds',
    options: {},
    mode: 'heartbeat',
    heartbeat: { intervalMs: 1000, timeoutMs: 3000 },
    expect: 'ERR_HEARTBEAT_TIMEOUT',
    window: [2500, 8000],
    // the program counts both: 1 s of quiet from when the heartbeat starts (at the cut), then
    // the echo's 3 s deadline from when it is sent (on the wire)
    predict: {
      ms: 3000,
      how: '--heartbeat-timeout 3 s after the unanswered echo left',
      from: 'unanswered-data',
    },
    alsoFromCut: { ms: 4000, how: 'the first echo after 1 s of quiet + its 3 s deadline' },
    explain:
      'the client sends an echo every 1 s of quiet (echo-client --heartbeat 1s --heartbeat-timeout 3s); when one is not back within 3 s the peer is gone: 1 s + 3 s = 4 s after the last traffic',
  });

export const userTimeout = () =>
  deadPeer({
    name: 'user-timeout',
    title: 'sending to a vanished host, bounded by TCP_USER_TIMEOUT',
    options: { userTimeoutMs: 3000 },
    mode: 'write',
    window: [2500, 8000],
    predict: {
      ms: 3000,
      // the kernel counts from its retrans_stamp: the first retransmission of the oldest
      // unacknowledged segment (one RTO after it first left), and clamps the retransmission
      // timer so that it fires when the 3 s are up
      how: 'TCP_USER_TIMEOUT 3 s after the oldest unacknowledged data was first retransmitted',
      from: 'first-retransmission',
    },
    explain:
      'the client keeps sending: without TCP_USER_TIMEOUT it retransmits for ~15 min (tcp_retries2 = 15); with 3 s it gives up after ~3 s',
  });
