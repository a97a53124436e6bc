// The import graph of src/, bench/ and deploy/: layers run one way (cli → lab → proxy → client/server/udp → core,
// server/ may import udp/) and no file reaches itself through its imports. Every import and
// export-from statement counts, type-only ones included, and so does a dynamic import().

import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import ts from 'typescript';
import { describe, expect, it } from 'vitest';
import { ROOT } from './helpers.js';

/** Which folders of src/ each folder may import from; src/index.ts is the public API. */
const ALLOWED: Record<string, string[]> = {
  core: ['core'],
  udp: ['udp', 'core'],
  client: ['client', 'core'],
  server: ['server', 'udp', 'core'],
  proxy: ['proxy', 'server', 'udp', 'core'],
  lab: ['lab', 'proxy', 'client', 'server', 'udp', 'core'],
  cli: ['cli', 'lab', 'proxy', 'client', 'server', 'udp', 'core'],
  api: ['lab', 'proxy', 'client', 'server', 'udp', 'core'],
};

function tsFiles(dir: string): string[] {
  const out: string[] = [];
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const full = path.join(dir, entry.name);
    if (entry.isDirectory()) out.push(...tsFiles(full));
    else if (entry.name.endsWith('.ts') && !entry.name.endsWith('.d.ts')) out.push(full);
  }
  return out;
}

/** Relative specifiers a file imports, resolved to repository paths ('src/core/log.ts'). */
function importsOf(file: string, text: string): string[] {
  const info = ts.preProcessFile(text, true, true);
  const out: string[] = [];
  for (const { fileName } of info.importedFiles) {
    if (!fileName.startsWith('.')) continue;
    const resolved = path.posix.normalize(path.posix.join(path.posix.dirname(file), fileName));
    out.push(resolved.replace(/\.js$/, '.ts'));
  }
  return out;
}

/** The layer of a repository path: the folder under src/, 'api' for src/index.ts. */
function layerOf(file: string): string | undefined {
  const parts = file.split('/');
  if (parts[0] !== 'src') return undefined;
  return parts.length === 2 ? 'api' : parts[1];
}

function graph(): Map<string, string[]> {
  const g = new Map<string, string[]>();
  for (const top of ['src', 'bench', 'deploy']) {
    for (const full of tsFiles(path.join(ROOT, top))) {
      const file = path.relative(ROOT, full).split(path.sep).join('/');
      g.set(file, importsOf(file, readFileSync(full, 'utf8')));
    }
  }
  return g;
}

/** Layer violations as 'from -> to' lines. */
function layerViolations(g: Map<string, string[]>): string[] {
  const bad: string[] = [];
  for (const [from, tos] of g) {
    const lf = layerOf(from);
    if (lf === undefined) continue;
    for (const to of tos) {
      const lt = layerOf(to);
      if (lt === undefined || !(ALLOWED[lf] ?? []).includes(lt)) bad.push(`${from} -> ${to}`);
    }
  }
  return bad.sort();
}

/** Every cycle's files, one list per strongly connected component of more than one file. */
function cycles(g: Map<string, string[]>): string[][] {
  let index = 0;
  const idx = new Map<string, number>();
  const low = new Map<string, number>();
  const stack: string[] = [];
  const on = new Set<string>();
  const out: string[][] = [];
  const visit = (v: string) => {
    idx.set(v, index);
    low.set(v, index);
    index++;
    stack.push(v);
    on.add(v);
    for (const w of g.get(v) ?? []) {
      if (!g.has(w)) continue;
      if (!idx.has(w)) {
        visit(w);
        low.set(v, Math.min(low.get(v)!, low.get(w)!));
      } else if (on.has(w)) low.set(v, Math.min(low.get(v)!, idx.get(w)!));
    }
    if (low.get(v) === idx.get(v)) {
      const comp: string[] = [];
      let w: string;
      do {
        w = stack.pop()!;
        on.delete(w);
        comp.push(w);
      } while (w !== v);
      if (comp.length > 1 || (g.get(v) ?? []).includes(v)) out.push(comp.sort());
    }
  };
  for (const v of g.keys()) if (!idx.has(v)) visit(v);
  return out;
}

describe('import layers', () => {
  it('the parser sees multi-line, type-only, export-from and dynamic imports', () => {
    const text = [
      "import {\n  a,\n  b,\n} from '../core/x.js';",
      "import type { T } from './t.js';",
      "export { c } from '../udp/y.js';",
      "const m = await import('../lab/z.js');",
      "import net from 'node:net';",
    ].join('\n');
    expect(importsOf('src/server/f.ts', text)).toEqual([
      'src/core/x.ts',
      'src/server/t.ts',
      'src/udp/y.ts',
      'src/lab/z.ts',
    ]);
  });

  it('the checks find a wrong-way import and a cycle when there is one', () => {
    const g = new Map([
      ['src/core/a.ts', ['src/server/b.ts']],
      ['src/server/b.ts', ['src/core/a.ts']],
      ['src/udp/c.ts', ['src/udp/c.ts']],
    ]);
    expect(layerViolations(g)).toEqual(['src/core/a.ts -> src/server/b.ts']);
    expect(cycles(g)).toEqual(
      expect.arrayContaining([['src/core/a.ts', 'src/server/b.ts'], ['src/udp/c.ts']]),
    );
  });

  it('the real tree has files and imports to check', () => {
    const g = graph();
    expect(g.size).toBeGreaterThan(50);
    expect([...g.values()].flat().length).toBeGreaterThan(100);
  });

  it('no folder of src/ imports one above it', () => {
    expect(layerViolations(graph())).toEqual([]);
  });

  it('no two files import each other, directly or through others', () => {
    expect(cycles(graph())).toEqual([]);
  });
});

describe('who exits', () => {
  const calls = (dir: string) =>
    tsFiles(path.join(ROOT, 'src', dir))
      .filter((f) => /process\.exit\(/.test(readFileSync(f, 'utf8')))
      .map((f) => path.relative(ROOT, f).split(path.sep).join('/'));

  it('among the CLI files only the runner (common.ts) calls process.exit', () => {
    expect(calls('cli')).toEqual(['src/cli/common.ts']);
  });

  it('library code in core/, client/ and udp/ never calls process.exit', () => {
    expect([...calls('core'), ...calls('client'), ...calls('udp')]).toEqual([]);
  });
});

describe('sizes', () => {
  it('no CLI file is over 350 lines: the CLI parses flags, calls the library and prints', () => {
    const long = tsFiles(path.join(ROOT, 'src', 'cli'))
      .map((f) => [path.relative(ROOT, f), readFileSync(f, 'utf8').split('\n').length - 1] as const)
      .filter(([, n]) => n > 350);
    expect(long).toEqual([]);
  });

  it('no function in server/ is over 100 lines', () => {
    const long: string[] = [];
    for (const f of tsFiles(path.join(ROOT, 'src', 'server'))) {
      const sf = ts.createSourceFile(f, readFileSync(f, 'utf8'), ts.ScriptTarget.Latest, true);
      const visit = (n: ts.Node) => {
        if (ts.isFunctionLike(n) && 'body' in n && n.body) {
          const first = sf.getLineAndCharacterOfPosition(n.getStart(sf)).line;
          const last = sf.getLineAndCharacterOfPosition(n.end).line;
          const name = (n as ts.FunctionLikeDeclaration).name?.getText(sf) ?? '(anonymous)';
          if (last - first + 1 > 100)
            long.push(`${path.basename(f)}:${first + 1} ${name}: ${last - first + 1} lines`);
        }
        ts.forEachChild(n, visit);
      };
      visit(sf);
    }
    expect(long).toEqual([]);
  });
});
