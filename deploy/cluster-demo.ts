// npm run cluster-demo: three echo-server instances on 127.0.0.2-4 behind HAProxy
// (deploy/haproxy.cfg), 30 clients streaming through it, one instance killed mid-run. It shows
// the health check taking the instance out, how connections spread, and that the clients of
// the other instances lose no byte. Loopback only; everything it starts, it stops.

import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import net from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import getPort from 'get-port';
import { describeTally, routesFromHaproxyLog, tally } from './cluster-tally.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const CLIENT = '127.0.0.9';
const children: ChildProcess[] = [];
const say = (s: string) => process.stdout.write(`${s}\n`);

function start(cmd: string, args: string[], env?: NodeJS.ProcessEnv) {
  const p = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...env } });
  children.push(p);
  let log = '';
  p.stdout!.setEncoding('utf8').on('data', (d: string) => {
    log += d;
  });
  p.stderr!.setEncoding('utf8').on('data', (d: string) => {
    log += d;
  });
  return { p, log: () => log };
}

async function until(cond: () => boolean, ms: number, what: string) {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`${what}: not within ${ms} ms`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** One client: 40 × 16 KiB, 50 ms apart (2 s), through the balancer; what came back. */
function client(port: number, data: Buffer): Promise<{ ok: boolean; got: number; port: number }> {
  return new Promise((resolve) => {
    const s = net.connect({ port, host: '127.0.0.1', localAddress: CLIENT, allowHalfOpen: true });
    const got: Buffer[] = [];
    let local = 0;
    s.on('data', (d: Buffer) => got.push(d));
    s.on('error', () => {});
    s.on('end', () => s.end());
    s.on('close', () => {
      const back = Buffer.concat(got);
      resolve({ ok: back.equals(data), got: back.length, port: local });
    });
    s.on('connect', async () => {
      local = s.localPort ?? 0;
      for (let off = 0; off < data.length && !s.destroyed; off += 16384) {
        s.write(data.subarray(off, off + 16384));
        await new Promise((r) => setTimeout(r, 50));
      }
      if (!s.destroyed) s.end();
    });
  });
}

async function main(): Promise<number> {
  if (spawnSync('haproxy', ['-v'], { stdio: 'ignore' }).status !== 0) {
    say(
      'cluster-demo: HAProxy is not installed (apt-get install haproxy); nothing to show without a balancer',
    );
    return 1;
  }
  const hosts = ['127.0.0.2', '127.0.0.3', '127.0.0.4'];
  const instances = hosts.map((host, i) =>
    start(process.execPath, [
      path.join(root, 'bin', 'echo-server.js'),
      '--host',
      host,
      '--port',
      '0',
      '--proxy-protocol',
      '--instance-name',
      `e${i + 1}`,
      '--log-format',
      'json',
      // a health check that closes with a reset after its echo is logged at debug level only
      '-v',
    ]),
  );
  const ports: number[] = [];
  for (const inst of instances) {
    await until(() => /listening on [\d.]+:\d+/.test(inst.log()), 10_000, 'an instance listening');
    ports.push(Number(/listening on [\d.]+:(\d+)/.exec(inst.log())![1]));
  }
  const front = await getPort({ host: '127.0.0.1' });
  const hap = start('haproxy', ['-db', '-f', path.join(root, 'deploy', 'haproxy.cfg')], {
    ECHO_FRONTEND: `127.0.0.1:${front}`,
    ECHO_1: `${hosts[0]}:${ports[0]}`,
    ECHO_2: `${hosts[1]}:${ports[1]}`,
    ECHO_3: `${hosts[2]}:${ports[2]}`,
  });
  say(`3 instances: ${hosts.map((h, i) => `e${i + 1} ${h}:${ports[i]}`).join(', ')}`);
  say(
    `HAProxy on 127.0.0.1:${front} (deploy/haproxy.cfg: round robin, PROXY v2, an echo health check every 500 ms)`,
  );
  await until(
    () => instances.every((i) => /in 7 B, out 7 B/.test(i.log())),
    15_000,
    'every instance passing its health check',
  );
  say('health checks: all three up');

  const payloads = Array.from({ length: 30 }, () => randomBytes(40 * 16384));
  const t0 = Date.now();
  const running = payloads.map((p) => client(front, p));
  await new Promise((r) => setTimeout(r, 700));
  instances[1]!.p.kill('SIGKILL');
  const killedAt = Date.now();
  say(`t=${killedAt - t0} ms: e2 killed (SIGKILL) with its clients mid-stream`);
  await until(() => /e2 is DOWN/.test(hap.log()), 10_000, 'HAProxy marking e2 down');
  say(
    `t=${Date.now() - t0} ms: HAProxy: ${/Server \S+\/e2 is DOWN[^\n]*?check duration: \d+ms/.exec(hap.log())?.[0] ?? 'e2 is DOWN'}`,
  );
  const results = (await Promise.all(running)).map((r, i) => ({ ...r, size: payloads[i]!.length }));

  // HAProxy logs a session when it ends, a little after the client saw its close: wait for the
  // line of every client before counting (counting early listed finished clients as cut)
  const names = ['e1', 'e2', 'e3'];
  await until(
    () => tally(results, routesFromHaproxyLog(hap.log(), CLIENT), names, 'e2').unrouted.length === 0,
    10_000,
    'HAProxy logging every client session',
  );
  const t = tally(results, routesFromHaproxyLog(hap.log(), CLIENT), names, 'e2');
  say('');
  for (const l of describeTally(t, 'e2')) say(l);
  // the instances that stayed up saw each client's own address (PROXY v2), not HAProxy's:
  // `"peer":"127.0.0.9:PORT via 127.0.0.1:PORT"`
  const seen = (port: number) =>
    [instances[0]!, instances[2]!].some((i) => i.log().includes(`"peer":"${CLIENT}:${port} via `));
  await until(() => t.onSurvivors.every((r) => seen(r.port)), 10_000, 'e1 and e3 logging their clients');
  say(`e1 and e3 logged each of their clients as ${CLIENT}:PORT (PROXY v2), not as HAProxy's address`);
  const after = (await Promise.all(Array.from({ length: 6 }, () => client(front, randomBytes(16384))))).map(
    (r) => ({ ...r, size: 16384 }),
  );
  await until(
    () => tally(after, routesFromHaproxyLog(hap.log(), CLIENT), names, 'e2').unrouted.length === 0,
    10_000,
    'HAProxy logging the new sessions',
  );
  const a = tally(after, routesFromHaproxyLog(hap.log(), CLIENT), names, 'e2');
  say(
    `6 new clients after the kill: ${after.filter((r) => r.ok).length} served (${[...a.perInstance].map(([n, c]) => `${n} ${c}`).join(', ')})`,
  );
  return t.onSurvivors.every((r) => r.ok) && after.every((r) => r.ok) && a.onKilled.length === 0 ? 0 : 1;
}

main()
  .then(
    (code) => {
      process.exitCode = code;
    },
    (err) => {
      process.stderr.write(`cluster-demo: ${(err as Error).message}\n`);
      process.exitCode = 1;
    },
  )
  .finally(() => {
    for (const c of children) c.kill('SIGKILL');
  });
