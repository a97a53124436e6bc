// The Toxiproxy HTTP API: driven by a client nobody here wrote (toxiproxy-node-client), status
// codes and error bodies checked with curl, and echo-proxy's command line.

import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import type { Socket } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Toxiproxy } from 'toxiproxy-node-client';
import { describe, expect, it, onTestFinished } from 'vitest';
import { Proxies } from '../src/proxy/registry.js';
import { serveToxiproxyApi } from '../src/server/toxiproxy-api.js';
import {
  bin,
  connect,
  echoServer,
  hasCommand,
  readAll,
  readN,
  refusal,
  runCommand,
  spawnCli,
} from './helpers.js';

async function api() {
  const reg = new Proxies();
  const srv = await serveToxiproxyApi(reg, { host: '127.0.0.1', port: 0 });
  onTestFinished(async () => {
    await srv.close();
    await reg.close();
  });
  return { reg, url: `http://127.0.0.1:${srv.address.port}` };
}

async function roundTrip(s: Socket): Promise<number> {
  const t0 = performance.now();
  s.write('ping');
  await readN(s, 4);
  return performance.now() - t0;
}

const portOf = (listen: string) => Number(listen.split(':').pop());

describe('toxiproxy-node-client, unchanged', () => {
  it('create proxy → latency toxic → measure → update → remove → reset → populate', async () => {
    const up = await echoServer();
    const { url } = await api();
    const tp = new Toxiproxy(url);
    expect(await tp.getVersion()).toContain('version');
    const proxy = await tp.createProxy({
      name: 'echo',
      listen: '127.0.0.1:0',
      upstream: `127.0.0.1:${up.address.port}`,
    });
    const s = await connect(portOf(proxy.listen));
    const base = await roundTrip(s);
    const toxic = await proxy.addToxic({
      name: 'slow',
      type: 'latency' as never,
      stream: 'downstream' as never,
      toxicity: 1,
      attributes: { latency: 200, jitter: 0 },
    } as never);
    expect(toxic.attributes).toEqual({ latency: 200, jitter: 0 });
    expect(await roundTrip(s)).toBeGreaterThanOrEqual(195); // on the connection opened before
    const updated = await toxic.update({ attributes: { latency: 400 } } as never);
    expect(updated.attributes).toMatchObject({ latency: 400 });
    expect(await roundTrip(s)).toBeGreaterThanOrEqual(395);
    await updated.remove();
    expect(await roundTrip(s)).toBeLessThan(base + 300);
    await proxy.addToxic({ type: 'latency' as never, attributes: { latency: 300 } } as never);
    await tp.reset();
    expect((await (await fetch(`${url}/proxies/echo`)).json()).toxics).toEqual([]);
    expect(await roundTrip(s)).toBeLessThan(base + 250);
    const all = await tp.populate([
      { name: 'echo', listen: proxy.listen, upstream: `127.0.0.1:${up.address.port}` },
      { name: 'second', listen: '127.0.0.1:0', upstream: `127.0.0.1:${up.address.port}` },
    ] as never);
    expect(Object.keys(all).sort()).toEqual(['echo', 'second']);
    const s2 = await connect(portOf(all.second!.listen));
    expect(await roundTrip(s2)).toBeGreaterThanOrEqual(0);
    expect(Object.keys(await tp.getAll()).sort()).toEqual(['echo', 'second']);
    await (await tp.get('second')).remove();
    expect(Object.keys(await tp.getAll())).toEqual(['echo']);
  });
});

const hasCurl = hasCommand('curl');

/** curl (the API runs in this process: not spawnSync): the status code and the body. */
async function curl(method: string, url: string, body?: string): Promise<{ status: number; body: string }> {
  const r = await runCommand('curl', [
    '-s',
    '--max-time',
    '20',
    '-X',
    method,
    '-w',
    '\n%{http_code}',
    ...(body !== undefined ? ['-d', body] : []),
    url,
  ]);
  const out = r.out.toString();
  const cut = out.lastIndexOf('\n');
  return { status: Number(out.slice(cut + 1)), body: out.slice(0, cut).trimEnd() };
}

describe('status codes and error bodies (curl)', () => {
  it.skipIf(!hasCurl)("every route answers with Toxiproxy's codes", async () => {
    const up = await echoServer();
    const { url } = await api();
    const upstream = `127.0.0.1:${up.address.port}`;
    const err = (status: number, error: string) => ({ status, body: JSON.stringify({ error, status }) });
    const code = async (method: string, path: string, body?: string) =>
      (await curl(method, url + path, body)).status;
    const call = (method: string, path: string, body?: string) => curl(method, url + path, body);
    const a = JSON.stringify({ name: 'a', listen: '127.0.0.1:0', upstream });
    expect(await code('GET', '/version')).toBe(200);
    expect(await code('POST', '/proxies', a)).toBe(201);
    expect(await call('POST', '/proxies', a)).toEqual(err(409, 'proxy already exists'));
    expect(await call('POST', '/proxies', '{"name":"b"}')).toEqual(
      err(400, 'missing required field: upstream'),
    );
    expect(await code('POST', '/proxies', '{nope')).toBe(400);
    expect(await call('GET', '/proxies/zz')).toEqual(err(404, 'proxy not found'));
    expect(await code('GET', '/proxies/a')).toBe(200);
    expect(await call('GET', '/proxies/a/toxics')).toEqual({ status: 200, body: '[]' });
    expect(await call('POST', '/proxies/a/toxics', '{"type":"nope"}')).toEqual(
      err(400, 'invalid toxic type'),
    );
    expect(await call('POST', '/proxies/a/toxics', '{"type":"latency","stream":"x"}')).toEqual(
      err(400, 'stream was invalid, can be either upstream or downstream'),
    );
    const made = await call('POST', '/proxies/a/toxics', '{"type":"latency","attributes":{"latency":10}}');
    expect(made.status).toBe(200);
    expect(JSON.parse(made.body).name).toBe('latency_downstream');
    expect(await call('POST', '/proxies/a/toxics', '{"type":"latency"}')).toEqual(
      err(409, 'toxic already exists'),
    );
    expect(await code('GET', '/proxies/a/toxics/latency_downstream')).toBe(200);
    expect(await code('PATCH', '/proxies/a/toxics/latency_downstream', '{"attributes":{"latency":20}}')).toBe(
      200,
    );
    expect(await call('GET', '/proxies/a/toxics/nope')).toEqual(err(404, 'toxic not found'));
    expect(await call('DELETE', '/proxies/a/toxics/nope')).toEqual(err(404, 'toxic not found'));
    expect(await call('DELETE', '/proxies/a/toxics/latency_downstream')).toEqual({ status: 204, body: '' });
    expect(await code('POST', '/proxies/a', '{"enabled":false}')).toBe(200);
    expect(JSON.parse((await call('GET', '/proxies/a')).body).enabled).toBe(false);
    expect(await call('POST', '/reset')).toEqual({ status: 204, body: '' });
    expect(JSON.parse((await call('GET', '/proxies/a')).body).enabled).toBe(true);
    expect(await code('POST', '/populate', JSON.stringify([{ name: 'p1', upstream }]))).toBe(201);
    expect(await code('POST', '/populate', JSON.stringify([{ upstream }]))).toBe(400);
    expect(await call('DELETE', '/proxies/a')).toEqual({ status: 204, body: '' });
    expect(await call('DELETE', '/proxies/a')).toEqual(err(404, 'proxy not found'));
    expect(await code('PUT', '/proxies')).toBe(405);
  });
});

describe('echo-proxy command', () => {
  it('with no proxy flags starts just the API; with --listen/--upstream/--fault forwards with the fault', async () => {
    const bare = spawnCli('echo-proxy', ['--api', '127.0.0.1:0']);
    const only = await bare.waitStderr(/Toxiproxy API on http:\/\/127\.0\.0\.1:(\d+)/);
    expect(await (await fetch(`http://127.0.0.1:${only[1]}/proxies`)).json()).toEqual({});
    bare.child.kill('SIGTERM');
    expect((await bare.exit).code).toBe(0);
    const up = await echoServer();
    const p = spawnCli('echo-proxy', [
      '--api',
      '127.0.0.1:0',
      '--listen',
      '127.0.0.1:0',
      '--upstream',
      `127.0.0.1:${up.address.port}`,
      '--fault',
      'latency=150ms,stream=upstream',
    ]);
    const line = await p.waitStderr(/Toxiproxy API on http:\/\/127\.0\.0\.1:(\d+)/);
    const listen = /listening on 127\.0\.0\.1:(\d+)/.exec(p.stderr())!;
    const s = await connect(Number(listen[1]));
    expect(await roundTrip(s)).toBeGreaterThanOrEqual(145);
    const url = `http://127.0.0.1:${line[1]}`;
    const state = await (await fetch(`${url}/proxies/proxy`)).json();
    expect(state.toxics).toEqual([
      {
        name: 'latency_upstream',
        type: 'latency',
        stream: 'upstream',
        toxicity: 1,
        attributes: { latency: 150, jitter: 0 },
      },
    ]);
  });

  it('--proxy and --config (the /populate format) start several proxies; --no-api starts none', async () => {
    const up = await echoServer();
    const dir = mkdtempSync(path.join(tmpdir(), 'echo-proxy-cfg-'));
    onTestFinished(() => rmSync(dir, { recursive: true, force: true }));
    const file = path.join(dir, 'proxies.json');
    writeFileSync(
      file,
      JSON.stringify([{ name: 'fromfile', listen: '127.0.0.1:0', upstream: `127.0.0.1:${up.address.port}` }]),
    );
    const p = spawnCli('echo-proxy', [
      '--api',
      '127.0.0.1:0',
      '--proxy',
      `one=127.0.0.1:0,127.0.0.1:${up.address.port}`,
      '--config',
      file,
    ]);
    const line = await p.waitStderr(/Toxiproxy API on http:\/\/127\.0\.0\.1:(\d+)/);
    const all = await (await fetch(`http://127.0.0.1:${line[1]}/proxies`)).json();
    expect(Object.keys(all).sort()).toEqual(['fromfile', 'one']);
    for (const name of ['fromfile', 'one']) {
      const s = await connect(portOf(all[name].listen));
      expect(await roundTrip(s)).toBeGreaterThanOrEqual(0);
    }
    const none = spawnCli('echo-proxy', [
      '--no-api',
      '--proxy',
      `x=127.0.0.1:0,127.0.0.1:${up.address.port}`,
    ]);
    await none.waitStderr(/proxy x: listening on/);
    none.child.kill('SIGTERM');
    expect((await none.exit).code).toBe(0);
    expect(none.stderr()).toMatch(/closing every proxy/);
    expect(none.stderr()).not.toMatch(/Toxiproxy API on/);
  });

  it("--max-connections: the server pipeline's admission gate holds in front of the upstream", async () => {
    const up = await echoServer();
    const p = spawnCli('echo-proxy', [
      '--no-api',
      '--max-connections',
      '1',
      '--listen',
      '127.0.0.1:0',
      '--upstream',
      `127.0.0.1:${up.address.port}`,
    ]);
    const m = await p.waitStderr(/listening on 127\.0\.0\.1:(\d+)/);
    const first = await connect(Number(m[1]));
    expect(await roundTrip(first)).toBeGreaterThanOrEqual(0);
    const second = await connect(Number(m[1]));
    expect((await readAll(second)).length).toBe(0); // closed at once, nothing forwarded
    expect(await roundTrip(first)).toBeGreaterThanOrEqual(0);
  });

  it('a --listen address in use: exit 1 with one explained line', async () => {
    const up = await echoServer();
    const busy = await echoServer();
    const r = await runCommand(process.execPath, [
      bin('echo-proxy'),
      '--no-api',
      '--listen',
      `127.0.0.1:${busy.address.port}`,
      '--upstream',
      `127.0.0.1:${up.address.port}`,
    ]);
    expect(r.code).toBe(1);
    expect(r.err).toMatch(/EADDRINUSE [^"]*— another socket holds that address/);
    expect(r.err).not.toMatch(/\n\s+at /);
  });

  it("echo-server refuses the proxy's own faults, saying they are echo-proxy's", async () => {
    const late = await refusal('echo-server', ['--fault', 'reset-on-connect,after=1s']);
    expect(late.code).toBe(2);
    expect(late.stderr).toMatch(/after=/);
    for (const spec of ['slow-close=1s', 'timeout=0', 'limit-data=1k', 'down']) {
      const r = await refusal('echo-server', ['--fault', spec]);
      expect(r.code, spec).toBe(2);
      expect(r.stderr, spec).toMatch(/echo-proxy/);
      expect(r.stderr, spec).not.toMatch(/needs --udp/);
    }
  });

  it('bad input exits 2 naming the flag', async () => {
    for (const [args, flag] of [
      [['--listen', '127.0.0.1:0'], '--listen'],
      [['--listen', 'x', '--upstream', '127.0.0.1:1'], '--listen'],
      [['--listen', '127.0.0.1:0', '--upstream', '127.0.0.1:1', '--fault', 'drop=0.1'], '--fault'],
      [['--listen', '127.0.0.1:0', '--upstream', '127.0.0.1:1', '--fault', 'slow-close=5'], '--fault'],
      [['--ca', 'x.pem'], '--ca'],
      [['--proxy', 'nope'], '--proxy'],
    ] as [string[], string][]) {
      const r = await runCommand(process.execPath, [bin('echo-proxy'), ...args]);
      expect(r.code, args.join(' ')).toBe(2);
      expect(r.err).toContain(flag);
    }
  });
});
