import { execFileSync } from 'node:child_process';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { describe, expect, it } from 'vitest';
import { ROOT } from './helpers.js';

// A fresh process allocates a burst of short-lived objects while a few thousand stay alive
// (what accepting many connections does); it prints the young generation's size (new_space)
// after the burst. `on`: keepYoungGenerationSmall() ran first.
const SCRIPT = `
import v8 from 'node:v8';
const { keepYoungGenerationSmall } = await import(${JSON.stringify(pathToFileURL(path.join(ROOT, 'dist/core/heap.js')).href)});
const set = process.argv[1] === 'on' ? keepYoungGenerationSmall() : false;
let keep = [];
for (let i = 0; i < 3e6; i++) { keep.push({ a: i, b: [i] }); if (keep.length > 100000) keep = []; }
const young = v8.getHeapSpaceStatistics().find((s) => s.space_name === 'new_space').space_size;
console.log(JSON.stringify({ set, young }));
`;

function run(arg: string, env: NodeJS.ProcessEnv = {}): { set: boolean; young: number } {
  const out = execFileSync(process.execPath, ['--input-type=module', '-e', SCRIPT, arg], {
    encoding: 'utf8',
    env: { ...process.env, ECHO_V8_DEFAULTS: '', NODE_OPTIONS: '', ...env },
    timeout: 60_000,
  });
  return JSON.parse(out.trim().split('\n').pop()!);
}

const MiB = 1024 * 1024;

describe('the young generation of a server process', () => {
  it('stays near its start size through an allocation burst that grows it many times by default', () => {
    const grown = run('off');
    const kept = run('on');
    expect(kept.set).toBe(true);
    expect(grown.young).toBeGreaterThanOrEqual(8 * MiB); // the burst does grow V8's default
    expect(kept.young).toBeLessThanOrEqual(4 * MiB);
  });

  it("leaves V8's default with ECHO_V8_DEFAULTS=1, and a semi-space flag the user gave", () => {
    expect(run('on', { ECHO_V8_DEFAULTS: '1' })).toMatchObject({ set: false });
    const own = run('on', { NODE_OPTIONS: '--max-semi-space-size=8' });
    expect(own.set).toBe(false);
  });
});
