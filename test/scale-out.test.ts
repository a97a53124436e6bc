// Past one machine: three echo-server instances behind HAProxy with deploy/haproxy.cfg (PROXY
// v2, echo health checks), and the deploy files checked by the tools' own linters.
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import dgram from 'node:dgram';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, expect, it, onTestFinished } from 'vitest';
import { freePort, hasCommand, jsonLines, ROOT, spawnServer, tcpListening, until } from './helpers.js';

const hasHaproxy = hasCommand('haproxy', '-v');
if (!hasHaproxy) console.warn('skipped the HAProxy scale-out tests: haproxy is not installed');
const STREAM_MODULE = '/usr/lib/nginx/modules/ngx_stream_module.so';
const nginxWhy = !hasCommand('nginx', '-v')
  ? 'nginx is not installed'
  : /--with-stream=dynamic/.test(spawnSync('nginx', ['-V'], { encoding: 'utf8' }).stderr) &&
      !existsSync(STREAM_MODULE)
    ? 'nginx has no stream module (apt install libnginx-mod-stream)'
    : undefined;
if (nginxWhy) console.warn(`skipped the nginx stream tests: ${nginxWhy}`);

const CLIENT = '127.0.0.9';

/**
 * Send `data` through `port` from CLIENT in 16 KiB writes, `gapMs` apart (a stream that lasts);
 * resolves with what came back. `onEcho` runs at the first echoed bytes.
 */
function stream(
  port: number,
  data: Buffer,
  gapMs = 0,
  onEcho = () => {},
): Promise<{ back: Buffer; localPort: number; error?: string }> {
  return new Promise((resolve) => {
    const s = net.connect({ port, host: '127.0.0.1', localAddress: CLIENT, allowHalfOpen: true });
    onTestFinished(() => {
      s.destroy();
    });
    const got: Buffer[] = [];
    let localPort = 0;
    let error: string | undefined;
    s.on('data', (d: Buffer) => {
      if (got.length === 0) onEcho();
      got.push(d);
    });
    s.on('error', (e: NodeJS.ErrnoException) => {
      error = e.code;
    });
    s.on('end', () => s.end());
    s.on('close', () => resolve({ back: Buffer.concat(got), localPort, error }));
    s.on('connect', async () => {
      localPort = s.localPort!;
      for (let off = 0; off < data.length && !s.destroyed; off += 16384) {
        s.write(data.subarray(off, off + 16384));
        if (gapMs) await new Promise((r) => setTimeout(r, gapMs));
      }
      if (!s.destroyed) s.end();
    });
  });
}

async function fleet() {
  const servers: Awaited<ReturnType<typeof spawnServer>>[] = [];
  for (const [i, host] of ['127.0.0.2', '127.0.0.3', '127.0.0.4'].entries())
    servers.push(
      await spawnServer([
        '--host',
        host,
        '--proxy-protocol',
        '--instance-name',
        `e${i + 1}`,
        '--max-connections-per-ip',
        '50',
        '-v', // a health check's close line is a debug line
      ]),
    );
  const front = await freePort();
  const env = {
    ...process.env,
    ECHO_FRONTEND: `127.0.0.1:${front}`,
    ECHO_1: `127.0.0.2:${servers[0]!.port}`,
    ECHO_2: `127.0.0.3:${servers[1]!.port}`,
    ECHO_3: `127.0.0.4:${servers[2]!.port}`,
  };
  const hap: ChildProcess = spawn('haproxy', ['-db', '-f', path.join(ROOT, 'deploy', 'haproxy.cfg')], {
    env,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let hlog = '';
  hap.stdout!.setEncoding('utf8').on('data', (d: string) => {
    hlog += d;
  });
  hap.stderr!.setEncoding('utf8').on('data', (d: string) => {
    hlog += d;
  });
  onTestFinished(() => {
    hap.kill('SIGKILL');
  });
  // every instance passed an echo health check (a 7-byte "health\n" round trip, via HAProxy's
  // PROXY header), closed by HAProxy with an RST that lost nothing: a debug line, no error
  await until(
    () => servers.every((s) => /"level":20,[^\n]*"msg":"closed [^"]*: in 7 B, out 7 B/.test(s.stderr())),
    15_000,
    'three instances health-checked',
  );
  return { servers, front, log: () => hlog };
}

const clientLines = (stderr: string) =>
  jsonLines(stderr).filter(
    (l) => String(l.msg).startsWith('closed ') && String(l.peer).startsWith(`${CLIENT}:`),
  );

describe.skipIf(!hasHaproxy)('behind HAProxy with deploy/haproxy.cfg', () => {
  it('30 clients: each gets its own bytes back, spread evenly, the real address in every instance log', async () => {
    const { servers, front } = await fleet();
    const payloads = Array.from({ length: 30 }, () => randomBytes(50 * 1024));
    const results = await Promise.all(payloads.map((p) => stream(front, p)));
    for (const [i, r] of results.entries()) expect(r.back.equals(payloads[i]!)).toBe(true);
    await until(() => servers.reduce((n, s) => n + clientLines(s.stderr()).length, 0) === 30, 10_000, 'logs');
    const per = servers.map((s) => clientLines(s.stderr()).length);
    for (const n of per) {
      expect(n).toBeGreaterThanOrEqual(8); // 10 ± 20 %
      expect(n).toBeLessThanOrEqual(12);
    }
    // the client's own address and port, from the PROXY v2 header
    const ports = new Set(
      servers.flatMap((s) => clientLines(s.stderr()).map((l) => Number(String(l.peer).split(/[: ]/)[1]))),
    );
    for (const r of results) expect(ports.has(r.localPort)).toBe(true);
    expect(servers[0]!.stderr()).toMatch(/"instance":"e1"/);
  });

  it('an instance killed mid-run: HAProxy takes it out; clients on the others lose no byte', async () => {
    const { servers, front, log } = await fleet();
    const payloads = Array.from({ length: 9 }, () => randomBytes(40 * 16384));
    // ~600 ms each; e2 is killed once every stream is echoing, so its clients are mid-stream
    let echoing = 0;
    let allEchoing!: () => void;
    const started = new Promise<void>((r) => {
      allEchoing = r;
    });
    const running = payloads.map((p) =>
      stream(front, p, 15, () => {
        if (++echoing === payloads.length) allEchoing();
      }),
    );
    await Promise.race([started, Promise.all(running)]);
    servers[1]!.child.kill('SIGKILL');
    const results = await Promise.all(running);
    // the instances log each close asynchronously: wait until e1 and e3 have logged every
    // client that got all its bytes (an e2 client cannot have: it died mid-stream)
    const whole = results.filter((r, i) => r.back.equals(payloads[i]!)).length;
    await until(
      () => clientLines(servers[0]!.stderr()).length + clientLines(servers[2]!.stderr()).length >= whole,
      10_000,
      'e1 and e3 logs',
    );
    const survivors = new Set(
      [servers[0]!, servers[2]!].flatMap((s) =>
        clientLines(s.stderr()).map((l) => Number(String(l.peer).split(/[: ]/)[1])),
      ),
    );
    let exact = 0;
    results.forEach((r, i) => {
      if (survivors.has(r.localPort)) {
        expect(r.back.equals(payloads[i]!)).toBe(true); // on e1 or e3: every byte
        exact++;
      }
    });
    expect(exact).toBeGreaterThanOrEqual(5); // 6 of 9 by round robin
    await until(() => /e2 is DOWN/.test(log()), 10_000, 'HAProxy marks e2 down');
    // new clients go to the two left
    const after = await Promise.all(Array.from({ length: 4 }, () => stream(front, Buffer.from('after\n'))));
    for (const r of after) expect(r.back.toString()).toBe('after\n');
  });
});

describe.skipIf(!!nginxWhy)('behind nginx stream with deploy/nginx-stream.conf', () => {
  it('TCP with the PROXY protocol and UDP: every client its own bytes, datagrams echoed, loss counted', async () => {
    const tcp: Awaited<ReturnType<typeof spawnServer>>[] = [];
    const udp: Awaited<ReturnType<typeof spawnServer>>[] = [];
    for (const [i, host] of ['127.0.0.2', '127.0.0.3', '127.0.0.4'].entries()) {
      tcp.push(await spawnServer(['--host', host, '--proxy-protocol', '--instance-name', `e${i + 1}`]));
      udp.push(await spawnServer(['--host', host, '--udp', '--instance-name', `u${i + 1}`]));
    }
    const [tcpFront, udpFront] = [await freePort(), await freePort()];
    const dir = mkdtempSync(path.join(tmpdir(), 'echo-nginx-'));
    onTestFinished(() => rmSync(dir, { recursive: true, force: true }));
    // the shipped file, with this test's addresses
    let conf = readFileSync(path.join(ROOT, 'deploy', 'nginx-stream.conf'), 'utf8');
    ['127.0.0.2', '127.0.0.3', '127.0.0.4'].forEach((h, i) => {
      conf = conf.replace(`${h}:7007`, `${h}:${tcp[i]!.port}`).replace(`${h}:7008`, `${h}:${udp[i]!.port}`);
    });
    conf = conf
      .replace('listen 127.0.0.1:7000;', `listen 127.0.0.1:${tcpFront};`)
      .replace('listen 127.0.0.1:7000 udp;', `listen 127.0.0.1:${udpFront} udp;`)
      .replace('/tmp/echo-nginx.pid', path.join(dir, 'nginx.pid'))
      // Node's stdio pipes are sockets, which /dev/stderr cannot be opened on (ENXIO)
      .replace('access_log /dev/stderr echo;', `access_log ${path.join(dir, 'access.log')} echo;`);
    if (!existsSync(STREAM_MODULE)) conf = conf.replace(/^load_module .*$/m, '');
    const file = path.join(dir, 'nginx.conf');
    writeFileSync(file, conf);
    const ng = spawn('nginx', ['-c', file, '-p', dir, '-e', 'stderr'], { stdio: ['ignore', 'pipe', 'pipe'] });
    let nlog = '';
    ng.stderr!.setEncoding('utf8').on('data', (d: string) => {
      nlog += d;
    });
    onTestFinished(() => {
      ng.kill('SIGKILL');
    });
    await until(() => tcpListening(tcpFront), 10_000, 'nginx listening').catch((e) => {
      throw new Error(`${(e as Error).message}: ${nlog} exit ${ng.exitCode}`);
    });
    const payloads = Array.from({ length: 9 }, () => randomBytes(30 * 1024));
    const results = await Promise.all(payloads.map((p) => stream(tcpFront, p)));
    for (const [i, r] of results.entries()) expect(r.back.equals(payloads[i]!)).toBe(true);
    await until(() => tcp.reduce((n, s) => n + clientLines(s.stderr()).length, 0) === 9, 10_000, 'logs');
    for (const s of tcp) expect(clientLines(s.stderr()).length).toBe(3); // round robin, real addresses

    // UDP: 200 numbered datagrams, 20 in flight; what comes back is counted
    const sock = dgram.createSocket('udp4');
    onTestFinished(() => {
      sock.close();
    });
    await new Promise<void>((r) => sock.bind(0, CLIENT, r));
    const seen = new Set<number>();
    sock.on('message', (m) => seen.add(m.readUInt32BE(0)));
    for (let i = 0; i < 200; i += 20) {
      for (let j = i; j < i + 20; j++) {
        const b = Buffer.alloc(64);
        b.writeUInt32BE(j, 0);
        sock.send(b, udpFront, '127.0.0.1');
      }
      // the next wave once this one is back (a lost datagram is counted below, not waited for)
      const back = () => Array.from({ length: 20 }, (_, k) => i + k).every((j) => seen.has(j));
      await until(back, 1000, 'the wave echoed').catch(() => {});
    }
    await until(() => seen.size === 200, 5000, `200 datagrams echoed through nginx (got ${seen.size})`).catch(
      () => {},
    );
    const lost = 200 - seen.size;
    expect(lost).toBeLessThanOrEqual(10); // loopback: loss is counted, not expected
  });
});

describe('deploy files', () => {
  it.skipIf(!!nginxWhy)('nginx -t accepts deploy/nginx-stream.conf', () => {
    const r = spawnSync(
      'nginx',
      ['-t', '-c', path.join(ROOT, 'deploy', 'nginx-stream.conf'), '-e', 'stderr'],
      {
        encoding: 'utf8',
      },
    );
    expect(r.stderr).toMatch(/syntax is ok/);
  });

  it.skipIf(!hasHaproxy)('haproxy -c accepts deploy/haproxy.cfg', async () => {
    const p = spawn('haproxy', ['-c', '-f', path.join(ROOT, 'deploy', 'haproxy.cfg')], { stdio: 'ignore' });
    expect(await new Promise((r) => p.once('close', r))).toBe(0);
  });

  it('the Dockerfile runs as a non-root user with an echo health check; k8s.yaml probes with the echo', () => {
    const docker = readFileSync(path.join(ROOT, 'deploy', 'Dockerfile'), 'utf8');
    const lines = docker.split('\n').filter((l) => l.trim() && !l.trim().startsWith('#'));
    expect(lines[0]).toMatch(/^FROM node:(20|22|24)/);
    const user = lines.filter((l) => l.startsWith('USER '));
    expect(user.length).toBeGreaterThan(0);
    expect(user.at(-1)).not.toMatch(/USER (root|0)\b/);
    expect(docker).toMatch(/^HEALTHCHECK [\s\S]*?echo-client[\s\S]*?--message/m);
    expect(docker).toMatch(/^STOPSIGNAL SIGTERM/m);
    const k8s = readFileSync(path.join(ROOT, 'deploy', 'k8s.yaml'), 'utf8');
    const docs = k8s
      .split(/^---$/m)
      .map((d) => d.trim())
      .filter(Boolean);
    expect(docs.map((d) => /^kind: (\w+)/m.exec(d)?.[1])).toEqual(['Deployment', 'Service']);
    // both probes use the echo itself, and the grace periods line up: --grace < terminationGracePeriodSeconds
    expect(k8s).toMatch(/readinessProbe:\s+exec:\s+command:\s+\[[^\]]*echo-client[^\]]*--message/);
    expect(k8s).toMatch(/livenessProbe:\s+exec:\s+command:\s+\[[^\]]*echo-client[^\]]*--message/);
    const grace = Number(/"--grace",\s*"(\d+)s"/.exec(k8s)?.[1]);
    const term = Number(/terminationGracePeriodSeconds: (\d+)/.exec(k8s)?.[1]);
    expect(grace).toBeGreaterThan(0);
    expect(term).toBeGreaterThan(grace);
    // no tabs (YAML forbids them for indentation)
    expect(k8s).not.toMatch(/\t/);
  });
});

describe('echo-client bench over a fleet', () => {
  it('--target ×3 and --targets-file: one result per target and the total', async () => {
    const servers = await Promise.all(
      ['127.0.0.2', '127.0.0.3', '127.0.0.4'].map((h) => spawnServer(['--host', h])),
    );
    const targets = servers.map((s, i) => `127.0.0.${i + 2}:${s.port}`);
    const run = (args: string[]) =>
      new Promise<{ code: number | null; out: string }>((resolve) => {
        const p = spawn(process.execPath, [path.join(ROOT, 'bin', 'echo-client.js'), 'bench', ...args], {
          stdio: ['ignore', 'pipe', 'inherit'],
        });
        let out = '';
        p.stdout!.setEncoding('utf8').on('data', (d: string) => {
          out += d;
        });
        p.once('close', (code) => resolve({ code, out }));
      });
    const r = await run([
      ...targets.flatMap((t) => ['--target', t]),
      '-c',
      '2',
      '--requests',
      '100',
      '--warmup',
      '0',
      '--json',
    ]);
    expect(r.code).toBe(0);
    const j = JSON.parse(r.out);
    expect(j.targets.map((t: { target: string }) => t.target)).toEqual(targets);
    for (const t of j.targets) {
      expect(t.count).toBeGreaterThanOrEqual(100);
      expect(t.mismatches).toBe(0);
    }
    expect(j.total.count).toBe(j.targets.reduce((s: number, t: { count: number }) => s + t.count, 0));
    const dir = mkdtempSync(path.join(tmpdir(), 'echo-fleet-'));
    onTestFinished(() => rmSync(dir, { recursive: true, force: true }));
    const file = path.join(dir, 'targets');
    writeFileSync(file, `# the fleet\n${targets.join('\n')}\n`);
    const t = await run(['--targets-file', file, '-c', '1', '--requests', '20', '--warmup', '0']);
    expect(t.code).toBe(0);
    expect(t.out).toMatch(/^total {10}3 targets: \d+ round trips/m);
  });
});
