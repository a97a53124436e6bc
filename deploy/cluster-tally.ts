// What deploy/cluster-demo.ts reports, from what the balancer logged: which instance each client
// was sent to (HAProxy's `option tcplog` line, written when the session ends) and what the client
// got back. Kept apart from the demo so the counting can be checked without starting anything.

export interface ClientResult {
  /** every byte sent came back, in order */
  ok: boolean;
  /** bytes that came back */
  got: number;
  /** the client's local port: how the balancer's log names it */
  port: number;
  /** bytes sent */
  size: number;
}

/**
 * Client port → server name, from HAProxy tcplog lines such as
 * `<6>127.0.0.9:45783 [03/Dec/2026:14:28:13.472] echo_in echo_servers/e2 1/0/684 229376 -- …`.
 */
export function routesFromHaproxyLog(log: string, clientIp: string): Map<number, string> {
  const routes = new Map<number, string>();
  const ip = clientIp.replace(/\./g, '\\.');
  const re = new RegExp(`(?:^|[\\s>])${ip}:(\\d+) \\[[^\\]]*\\] \\S+ [^/\\s]+/(\\S+) `, 'gm');
  for (const m of log.matchAll(re)) routes.set(Number(m[1]), m[2]!);
  return routes;
}

export interface Tally {
  /** clients per instance, as the balancer sent them */
  perInstance: Map<string, number>;
  /** clients of the instances that stayed up */
  onSurvivors: ClientResult[];
  /** clients of the killed instance */
  onKilled: ClientResult[];
  /** clients the balancer's log does not name (yet) */
  unrouted: ClientResult[];
}

export function tally(
  results: ClientResult[],
  routes: Map<number, string>,
  instances: string[],
  killed: string,
): Tally {
  const perInstance = new Map(instances.map((name) => [name, 0]));
  const t: Tally = { perInstance, onSurvivors: [], onKilled: [], unrouted: [] };
  for (const r of results) {
    const to = routes.get(r.port);
    if (to === undefined) {
      t.unrouted.push(r);
      continue;
    }
    perInstance.set(to, (perInstance.get(to) ?? 0) + 1);
    (to === killed ? t.onKilled : t.onSurvivors).push(r);
  }
  return t;
}

/** The report's lines about the clients, each one true of what was measured. */
export function describeTally(t: Tally, killed: string): string[] {
  const survivors = [...t.perInstance.keys()].filter((n) => n !== killed);
  const lost = t.onSurvivors.reduce((n, r) => n + (r.ok ? 0 : r.size - r.got), 0);
  const cut = t.onKilled.filter((r) => !r.ok);
  const whole = t.onKilled.length - cut.length;
  return [
    `connections per instance: ${[...t.perInstance].map(([n, c]) => `${n} ${c}${n === killed ? ' (killed)' : ''}`).join(', ')}`,
    `clients on ${survivors.join(' and ')}: ${t.onSurvivors.length}, all bytes back: ${t.onSurvivors.filter((r) => r.ok).length} of ${t.onSurvivors.length}; bytes lost: ${lost}`,
    `clients on ${killed}: ${t.onKilled.length}, ${cut.length} cut mid-stream${cut.length ? ` after ${cut.map((r) => r.got).join(', ')} bytes` : ''} (their instance died)${whole ? `; ${whole} had every byte back before it died` : ''}`,
  ];
}
