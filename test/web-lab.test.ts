// echo-lab --web at the HTTP level: the page's files, the scenario list, a run served as the
// `--json` document and streamed as it happens, the Host check. The browser tests are in
// test/web-browser.test.ts (npm run test:e2e).

import { spawnSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { bin, get, spawnCli } from './helpers.js';

async function startWeb(args: string[] = ['--web', '0']) {
  const p = spawnCli('echo-lab', args);
  const m = await p.waitStdout(/^(http:\/\/[^\s]+\/)$/m);
  return { ...p, url: m[1]! };
}

/** Server-Sent Events as [event, data] in arrival order, until the server ends the stream. */
function events(url: string): Promise<[string, any][]> {
  return get(url).then(({ body }) =>
    body
      .split('\n\n')
      .filter((b) => b.trim())
      .map((b) => {
        const ev = /^event: (.+)$/m.exec(b)![1]!;
        const data = /^data: (.+)$/m.exec(b)![1]!;
        return [ev, JSON.parse(data)] as [string, any];
      }),
  );
}

const labJson = (args: string[]) =>
  JSON.parse(spawnSync(process.execPath, [bin('echo-lab'), ...args], { encoding: 'utf8' }).stdout);

describe('echo-lab --web', () => {
  it('prints its URL on stdout, serves the page and its files, and the list as `list --json` does', async () => {
    const w = await startWeb();
    expect(w.url).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/$/);
    const index = await get(w.url);
    expect(index.status).toBe(200);
    expect(index.type).toMatch(/text\/html/);
    for (const file of ['app.js', 'diagram.js', 'style.css']) {
      const f = await get(`${w.url}${file}`);
      expect(f.status, file).toBe(200);
      expect(index.body.includes(file) || file === 'diagram.js').toBe(true);
    }
    // nothing from another origin: no CDN
    expect(index.body).not.toMatch(/https?:\/\//);
    const list = JSON.parse((await get(`${w.url}api/scenarios`)).body);
    const cli = labJson(['list', '--json']);
    expect(list.map((s: any) => ({ name: s.name, summary: s.summary, netns: s.netns }))).toEqual(
      expect.arrayContaining(cli),
    );
    expect(list).toHaveLength(cli.length);
    for (const s of list) expect(s.group, s.name).toBeTruthy();
    expect((await get(`${w.url}api/run/no-such`)).status).toBe(404);
    expect((await get(`${w.url}../../package.json`)).status).toBe(404);
  });

  it('refuses a request whose Host is not this server (DNS rebinding)', async () => {
    const w = await startWeb();
    expect((await get(w.url, { host: 'attacker.example' })).status).toBe(403);
    expect((await get(`${w.url}api/scenarios`, { host: 'attacker.example:80' })).status).toBe(403);
    expect((await get(w.url, { host: 'localhost' })).status).toBe(200);
  });

  it('/api/run/NAME is the document `echo-lab NAME --json` prints, from a run made now', async () => {
    const w = await startWeb();
    const page = JSON.parse((await get(`${w.url}api/run/eaddrinuse`)).body);
    const cli = labJson(['eaddrinuse', '--json']);
    for (const k of Object.keys(cli)) expect(page, k).toHaveProperty(k);
    expect(page.name).toBe('eaddrinuse');
    expect(page.checks.map((c: any) => c.what)).toEqual(cli.checks.map((c: any) => c.what));
    expect(page.errors.map((e: any) => e.code)).toEqual(['EADDRINUSE']);
    expect(page.ok).toBe(true);
    // listed under the first tutorial the run names
    const listed = JSON.parse((await get(`${w.url}api/scenarios`)).body).find(
      (s: any) => s.name === 'eaddrinuse',
    );
    expect(listed.group).toBe(page.tutorials.split('; ')[0]);
    // a run made now: another run names another port
    const again = JSON.parse((await get(`${w.url}api/run/eaddrinuse`)).body);
    expect(again.steps[0].text).not.toBe(page.steps[0].text);
  });

  it('/api/stream/NAME sends each step as the scenario records it, then the result', async () => {
    const w = await startWeb();
    const got = await events(`${w.url}api/stream/epipe`);
    const kinds = got.map(([k]) => k);
    expect(kinds[0]).toBe('started');
    expect(kinds.at(-1)).toBe('result');
    const result = got.at(-1)![1];
    const steps = got.filter(([k]) => k === 'step').map(([, d]) => d.step);
    expect(steps).toEqual(result.steps);
    expect(got.filter(([k]) => k === 'errno').map(([, d]) => d.error.code)).toEqual(['EPIPE']);
    expect(got.filter(([k]) => k === 'check').map(([, d]) => d.check)).toEqual(result.checks);
    // the steps came before the result was known
    expect(kinds.indexOf('step')).toBeLessThan(kinds.indexOf('result'));
  });

  it('serves until Ctrl-C, then exits 130', async () => {
    const w = await startWeb();
    expect((await get(w.url)).status).toBe(200);
    w.child.kill('SIGINT');
    expect((await w.exit).code).toBe(130);
  });

  it('refuses bad --web values and combinations with exit 2 naming the flag', () => {
    for (const args of [
      ['--web', 'abc'],
      ['--web', '70000'],
      ['time-wait', '--web', '0'],
      ['--web', '0', '--json'],
    ]) {
      const r = spawnSync(process.execPath, [bin('echo-lab'), ...args], { encoding: 'utf8' });
      expect(r.status, args.join(' ')).toBe(2);
      expect(r.stderr, args.join(' ')).toMatch(/--web/);
    }
  });
});
