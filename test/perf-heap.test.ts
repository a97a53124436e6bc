import { execFileSync } from 'node:child_process';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { describe, expect, it } from 'vitest';
import { ROOT } from './helpers.js';

// A fresh process says it holds `open` connections (openConnections), then allocates a burst of
// short-lived objects while a few thousand stay alive (what accepting many connections does);
// it prints the young generation's size (new_space) after the burst. `manage`:
// manageYoungGeneration() ran first, as the process mains of echo-server do.
const SCRIPT = `
import v8 from 'node:v8';
const heap = await import(${JSON.stringify(pathToFileURL(path.join(ROOT, 'dist/core/heap.js')).href)});
const [manage, open] = [process.argv[1] === 'manage', Number(process.argv[2])];
const managed = manage ? heap.manageYoungGeneration() : false;
heap.openConnections(open);
const held = heap.youngGenerationHeld();
let keep = [];
for (let i = 0; i < 3e6; i++) { keep.push({ a: i, b: [i] }); if (keep.length > 100000) keep = []; }
const young = v8.getHeapSpaceStatistics().find((s) => s.space_name === 'new_space').space_size;
heap.openConnections(-open + heap.LOW - 1);
console.log(JSON.stringify({ managed, held, young, heldAfter: heap.youngGenerationHeld() }));
`;

interface Run {
  managed: boolean;
  held: boolean;
  young: number;
  heldAfter: boolean;
}

function run(manage: boolean, open: number, env: NodeJS.ProcessEnv = {}): Run {
  const out = execFileSync(
    process.execPath,
    ['--input-type=module', '-e', SCRIPT, manage ? 'manage' : 'no', String(open)],
    {
      encoding: 'utf8',
      env: { ...process.env, ECHO_V8_DEFAULTS: '', NODE_OPTIONS: '', ...env },
      timeout: 60_000,
    },
  );
  return JSON.parse(out.trim().split('\n').pop()!);
}

const MiB = 1024 * 1024;

describe('the young generation of a server process', () => {
  it('stops growing while many connections are open, and may grow again once few are', async () => {
    const { HIGH } = await import('../src/core/heap.js');
    const grown = run(true, HIGH - 1);
    const kept = run(true, HIGH);
    expect(grown).toMatchObject({ managed: true, held: false });
    expect(grown.young).toBeGreaterThanOrEqual(8 * MiB); // the burst does grow V8's default
    expect(kept).toMatchObject({ managed: true, held: true, heldAfter: false });
    expect(kept.young).toBeLessThanOrEqual(4 * MiB);
  });

  it("leaves V8's default unless a process main asks, with ECHO_V8_DEFAULTS=1, and with the user's own flag", async () => {
    const { HIGH } = await import('../src/core/heap.js');
    expect(run(false, HIGH)).toMatchObject({ managed: false, held: false });
    expect(run(true, HIGH, { ECHO_V8_DEFAULTS: '1' })).toMatchObject({ managed: false, held: false });
    const own = run(true, HIGH, { NODE_OPTIONS: '--max-semi-space-size=8' });
    expect(own).toMatchObject({ managed: false, held: false });
  });
});
