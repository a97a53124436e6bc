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

  const portsOf = (log: string) =>
    new Set(
      log
        .split('\n')
        .filter((l) => l.includes('"msg":"closed ') && l.includes(`"peer":"${CLIENT}:`))
        .map((l) => Number(new RegExp(`"peer":"${CLIENT.replace(/\./g, '\\.')}:(\\d+)`).exec(l)![1])),
    );
  const served = [instances[0]!, instances[2]!].map((i) => portsOf(i.log()));
  const onSurvivors = results.filter((r) => served.some((s) => s.has(r.port)));
  const cut = results.filter((r) => !served.some((s) => s.has(r.port)));
  say('');
  say(`connections per instance: e1 ${served[0]!.size}, e2 ${cut.length} (killed), e3 ${served[1]!.size}`);
  say(
    `clients on e1 and e3: ${onSurvivors.length}, all bytes back: ${onSurvivors.filter((r) => r.ok).length} of ${onSurvivors.length}; bytes lost: ${onSurvivors.reduce((n, r) => n + (r.ok ? 0 : r.size - r.got), 0)}`,
  );
  say(
    `clients on e2: ${cut.length}, cut mid-stream after ${cut.map((r) => r.got).join(', ')} bytes (their instance died)`,
  );
  const after = await Promise.all(Array.from({ length: 6 }, () => client(front, randomBytes(16384))));
  say(`6 new clients after the kill: ${after.filter((r) => r.ok).length} served (by e1 and e3)`);
  return onSurvivors.every((r) => r.ok) && after.every((r) => r.ok) ? 0 : 1;
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
