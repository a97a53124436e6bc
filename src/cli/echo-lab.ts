// echo-lab: run a scenario, print its steps, explained errors and TCP states (or --json).
// Exit 0 when the behaviour was reproduced as expected (or skipped for a missing capability), 1 if not.

import { writeFileSync } from 'node:fs';
import { parseHost, parsePort, plural, UsageError } from '../core/parse.js';
import { formatTcpView } from '../core/tcp-states.js';
import { abortScenarios, findScenario, SCENARIOS, type ScenarioResult, traced } from '../lab/index.js';
import { formatLadder, ladderSvg } from '../lab/ladder.js';
import { startLabWeb } from '../lab/web/server.js';
import { exitOnSignal, newProgram, onSignals, runCli } from './common.js';

export function formatResult(r: ScenarioResult): string {
  const out: string[] = [];
  out.push(`echo-lab ${r.name}: ${r.title} (tutorials: ${r.tutorials})`, '');
  for (const s of r.steps) out.push(`  [${String(s.t).padStart(5)} ms] ${s.text}`);
  if (r.errors.length) {
    out.push('', 'errors:');
    for (const e of r.errors) out.push(`  ${e.code}: ${e.line}`);
  }
  if (r.states.length) {
    out.push('', 'kernel TCP states (/proc/net/tcp, as `netstat -an | grep PORT`):');
    for (const st of r.states) {
      out.push(`  ${st.label}:`);
      for (const line of formatTcpView({ available: st.available, entries: st.entries }))
        out.push(`    ${line}`);
    }
  }
  if (r.trace && 'unavailable' in r.trace) out.push('', `packet ladder: not drawn — ${r.trace.unavailable}`);
  else if (r.trace) {
    out.push(
      '',
      `packets (${plural(r.trace.segments.length, 'segment')} of this scenario, captured with AF_PACKET${r.trace.segments[0]?.src.startsWith('127.') || r.trace.segments[0]?.src === '::1' ? ' on lo' : ' on its veth'}${r.trace.netnsSegments ? `, and ${r.trace.netnsSegments.length} on its namespaces' veth` : ''}):`,
    );
    if (!r.trace.ladders.length) out.push('  none');
    for (const l of r.trace.ladders) out.push('', ...formatLadder(l));
  }
  if (r.kernel.length || r.facts.length) {
    out.push('', 'what Linux does here (settings read live from /proc/sys/net):');
    for (const k of r.kernel) out.push(`  ${k.name} = ${k.value}: ${k.meaning}`);
    for (const f of r.facts) out.push(`  ${f}`);
  }
  if (r.checks.length) {
    out.push('', 'checks:');
    for (const c of r.checks) out.push(`  ${c.ok ? '✓' : '✗'} ${c.what}`);
  }
  out.push(
    '',
    r.skipped
      ? `skipped: ${r.skipped}`
      : r.ok
        ? `reproduced as expected (${r.ms} ms)`
        : `NOT reproduced as expected (${r.ms} ms)`,
  );
  return `${out.join('\n')}\n`;
}

/** One line per scenario, the summaries in one column two spaces after the longest name. */
export function scenarioTable(indent: string, netnsNote: string): string[] {
  const width = Math.max(...SCENARIOS.map((s) => s.name.length)) + 2;
  return SCENARIOS.map((s) => `${indent}${s.name.padEnd(width)}${s.summary}${s.netns ? netnsNote : ''}`);
}

/** `--web 8080`, `--web 127.0.0.1:8080`, `--web [::1]:0` */
function parseWebAddress(raw: string): { host: string; port: number } {
  const v6 = /^\[([^\]]+)\]:(\d+)$/.exec(raw);
  const v4 = /^([^:\s]+):(\d+)$/.exec(raw);
  const [host, port] = v6 ? [v6[1]!, v6[2]!] : v4 ? [v4[1]!, v4[2]!] : ['127.0.0.1', raw];
  return { host: parseHost('--web', host), port: parsePort('--web', port) };
}

/** Serve the page until a signal ends the process; the URL goes to stdout. */
async function serveWeb(
  raw: string,
  given: { name: string; json: boolean; trace: boolean },
): Promise<number> {
  if (given.name !== 'list')
    throw new UsageError('--web', raw, `takes no scenario (open the page with ?scenario=${given.name})`);
  if (given.json) throw new UsageError('--web', raw, 'cannot be combined with --json');
  if (given.trace)
    throw new UsageError('--web', raw, 'cannot be combined with --trace (the page always traces)');
  const { host, port } = parseWebAddress(raw);
  const web = await startLabWeb(host, port);
  process.stdout.write(`${web.url}\n`);
  if (!/^(127\.|::1$|localhost$)/.test(host))
    process.stderr.write(
      `echo-lab: warning: ${host} may be reachable from other hosts; anyone who reaches it can run the scenarios here (no authentication)\n`,
    );
  // the page serves until SIGINT/SIGTERM (runLabCli's handler ends the process)
  return new Promise<number>(() => {});
}

export async function runLabCli(argv: string[]): Promise<void> {
  // chat-fork's reader processes tell their writer (this process) with SIGUSR2; one that arrives
  // after the scenario stopped listening must not end the run (the default action terminates)
  process.on('SIGUSR2', () => {});
  // Ctrl-C in the middle of a scenario: remove its namespaces and children before exiting
  const stopSignals = onSignals(
    (signal) => {
      abortScenarios();
      exitOnSignal(signal);
    },
    () => {},
  );
  await runCli('echo-lab', async () => {
    const program = newProgram(
      'echo-lab',
      'Reproduce the classic socket failures on real sockets, observe them, explain them',
    )
      .argument('[scenario]', 'scenario name, `list`, or `all`', 'list')
      .option('--json', 'print the structured result as JSON')
      .option(
        '--trace',
        "capture the scenario's own segments (on lo, or on its namespace's veth) and draw them as a ladder (root or CAP_NET_RAW)",
      )
      .option('--svg <file>', 'with --trace: also write the ladder as an SVG file')
      .option(
        '--web <[host:]port>',
        'serve the scenarios as a page at http://HOST:PORT/ (host 127.0.0.1 unless given; port 0 picks one and prints the URL)',
      );
    program.addHelpText(
      'after',
      `\nScenarios:\n${scenarioTable('  ', ' (network namespaces: root)').join('\n')}\n\nExamples:\n  echo-lab list\n  echo-lab time-wait\n  echo-lab epipe --json\n  echo-lab time-wait --trace --svg time-wait.svg\n  echo-lab --web 8080            # then open http://127.0.0.1:8080/?scenario=time-wait&run=1`,
    );
    program.parse(argv, { from: 'user' });
    const [name] = program.processedArgs as [string];
    const {
      json = false,
      trace = false,
      svg,
      web,
    } = program.opts<{ json?: boolean; trace?: boolean; svg?: string; web?: string }>();
    if (svg !== undefined && !trace) throw new UsageError('--svg', svg, 'needs --trace');
    if (web !== undefined) return serveWeb(web, { name, json, trace });
    if (name === 'list') {
      if (json)
        process.stdout.write(
          `${JSON.stringify(SCENARIOS.map(({ name: n, summary, netns }) => ({ name: n, summary, netns })))}\n`,
        );
      else process.stdout.write(`${scenarioTable('', ' (needs network namespaces)').join('\n')}\n`);
      return 0;
    }
    const chosen = name === 'all' ? [...SCENARIOS] : [findScenario(name)];
    if (!chosen[0])
      throw new UsageError('SCENARIO', name, `unknown; one of: ${SCENARIOS.map((s) => s.name).join(', ')}`);
    const results: ScenarioResult[] = [];
    for (const s of chosen) {
      const r = trace ? await traced(s!) : await s!.run();
      results.push(r);
      if (!json) process.stdout.write(`${formatResult(r)}\n`);
    }
    if (svg !== undefined) {
      const drawn = results.flatMap((r) => (r.trace && 'ladders' in r.trace ? r.trace.ladders : []));
      writeFileSync(svg, ladderSvg(drawn, `echo-lab ${name}: packets`));
    }
    const failed = results.filter((r) => !r.ok && !r.skipped);
    const skipped = results.filter((r) => r.skipped);
    if (json) {
      // one JSON document: the result for one scenario, an array (as `list --json`) for all
      process.stdout.write(`${JSON.stringify(name === 'all' ? results : results[0])}\n`);
    } else if (name === 'all') {
      process.stdout.write(
        `${results.length} scenarios: ${results.length - failed.length - skipped.length} reproduced, ${failed.length} not${failed.length ? ` (${failed.map((r) => r.name).join(', ')})` : ''}, ${skipped.length} skipped${skipped.length ? ` (${skipped.map((r) => r.name).join(', ')})` : ''}\n`,
      );
    }
    return failed.length ? 1 : 0;
  });
  stopSignals();
}
