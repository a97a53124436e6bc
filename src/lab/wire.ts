// Timer spans read off the wire: the moments a Linux timer starts from, taken from a capture's
// kernel timestamps (µs since the epoch, as tcpdump -tt prints them), and the clock on the same
// scale for the moment a program saw the timer fire.

import type { Segment } from './capture.js';
import { SERVER_ADDR, type TwoHosts } from './netns.js';

/** Now, µs since the epoch, on the clock the kernel stamps captured packets with. */
export function nowUs(): number {
  return (performance.timeOrigin + performance.now()) * 1000;
}

const after = (a: number, b: number) => ((a - b) | 0) > 0;
const span = (s: Segment) => s.len + (s.flags.includes('SYN') ? 1 : 0) + (s.flags.includes('FIN') ? 1 : 0);

/**
 * The oldest segment `from` sent that was never acknowledged (data or a FIN): its first
 * transmission, and its first retransmission. TCP_USER_TIMEOUT and tcp_retries2 count from the
 * latter: the kernel stamps retrans_stamp when it first retransmits the head of the queue
 * (tcp_retransmit_skb), with that retransmission's send time. Undefined when everything sent
 * was acknowledged.
 */
export function oldestUnacked(
  segments: Segment[],
  from: { addr: string; port: number },
): { first: Segment; retransmitted?: Segment } | undefined {
  const sent = segments.filter((s) => s.src === from.addr && s.sport === from.port && span(s) > 0);
  let una: number | undefined;
  for (const s of segments)
    if (s.dst === from.addr && s.dport === from.port && s.flags.includes('ACK'))
      if (una === undefined || after(s.ack, una)) una = s.ack;
  const first = sent.find((s) => una === undefined || !after(una, s.seq));
  if (!first) return undefined;
  const retransmitted = sent.find(
    (s) => s !== first && sent.indexOf(s) > sent.indexOf(first) && s.seq === first.seq,
  );
  return { first, ...(retransmitted ? { retransmitted } : {}) };
}

/** The first segment that acknowledges the FIN `from` sent (what moves it to FIN_WAIT2). */
export function ackOfFin(segments: Segment[], from: { addr: string; port: number }): Segment | undefined {
  const fin = segments.find((s) => s.src === from.addr && s.sport === from.port && s.flags.includes('FIN'));
  if (!fin) return undefined;
  const end = (fin.seq + fin.len + 1) >>> 0;
  return segments.find(
    (s) => s.dst === from.addr && s.dport === from.port && s.flags.includes('ACK') && !after(end, s.ack),
  );
}

/**
 * Capture every TCP segment on the client's end of a pair's veth (a child inside its namespace),
 * for a scenario that times a kernel timer from the wire. Resolves once the capture is reading.
 */
export async function captureClientVeth(h: TwoHosts): Promise<{ stop(): Promise<Segment[]> }> {
  const cap = h.spawnIn(h.client, {
    role: 'capture',
    ifname: h.clientIf,
    marker: { host: SERVER_ADDR, port: 9 },
  });
  await cap.next('capturing', 15_000);
  return {
    async stop() {
      // the last segments (a retransmission, an RST) may still be on their way
      await new Promise((res) => setTimeout(res, 30));
      cap.send({ type: 'stop' });
      const got = await cap.next('segments', 10_000);
      return (got.segments as Segment[] | undefined) ?? [];
    },
  };
}

/** ss -o's timer text in ms: "2min", "59sec", "1.988ms" (1 s and 988 ms), "850ms" */
export function ssTimerMs(text: string): number | undefined {
  const m = /^(?:(\d+)min)?(?:(\d+)(?:sec|\.))?(?:(\d+)ms)?$/.exec(text);
  if (!m || text === '') return undefined;
  return Number(m[1] ?? 0) * 60_000 + Number(m[2] ?? 0) * 1000 + Number(m[3] ?? 0);
}
