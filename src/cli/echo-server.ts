// echo-server: flags (server-flags.ts) → a validated config (server-config.ts) → one of the
// server modes. The only code that touches argv, signals and the exit code for the server.

import { formatFault } from '../core/faults.js';
import { formatAddress, plural } from '../core/parse.js';
import type { ServerTotals } from '../core/records.js';
import { describeCertificate, selfSignedTls } from '../core/tls.js';
import { echoServerProxies } from '../server/fault-control.js';
import { listeningLine, startServer } from '../server/index.js';
import type { ServerHandle } from '../server/listener.js';
import { type MetricsServer, startMetrics } from '../server/metrics.js';
import { DEFAULT_PROXY_FROM } from '../server/tcp-server.js';
import { checkLogFlags, loggerFromFlags, onSignals, runCli, warnIfReachable } from './common.js';
import { normalizeTraceArg } from './flag-groups.js';
import { resolveServerConfig } from './server-config.js';
import { buildServerProgram, type ServerFlags } from './server-flags.js';
import { parseAlpn } from './transport.js';

export { resolveServerConfig } from './server-config.js';
export { buildServerProgram, type ServerFlags } from './server-flags.js';

/** Totals as one human line. */
export function formatTotals(t: ServerTotals, udp = false): string {
  const list = (r: Record<string, number>) =>
    Object.entries(r)
      .map(([k, v]) => `${k} ${v}`)
      .join(', ');
  const errs = list(t.errors);
  const by = list(t.refusedBy);
  const what = udp
    ? `${plural(t.connections, 'source')}, ${t.refused} dropped`
    : `${plural(t.connections, 'connection')}, ${t.refused} refused`;
  return `totals: ${what}${by ? ` (${by})` : ''}, in ${t.bytesIn} B, out ${t.bytesOut} B${errs ? `, errors: ${errs}` : ''}`;
}

export async function runServerCli(argv: string[]): Promise<void> {
  await runCli('echo-server', async () => {
    const program = buildServerProgram();
    program.parse(normalizeTraceArg(argv), { from: 'user' });
    checkLogFlags(program.opts<ServerFlags>());
    const cfg = resolveServerConfig(program.opts<ServerFlags>(), program.processedArgs as string[]);
    const logger = loggerFromFlags('echo-server', program.opts<ServerFlags>(), cfg.instanceName);
    // signals are handled from before the first line is printed: a supervisor that reacts to
    // `listening on …` may signal at once
    let runner: ServerHandle | undefined;
    let metricsServer: MetricsServer | undefined;
    let done!: (code: number) => void;
    const finished = new Promise<number>((resolve) => {
      done = resolve;
    });
    // a signal during start-up stops the children being started; a server that did start is
    // then closed like any other (the start cannot be taken back half-way)
    const startup = new AbortController();
    let early: NodeJS.Signals | undefined;
    let stopping = false;
    const shutdown = (signal: NodeJS.Signals, runner: ServerHandle) => {
      stopping = true;
      logger.info({ signal }, `${signal}: shutting down, in-flight echoes get ${cfg.graceMs} ms`);
      runner.close({ graceMs: cfg.graceMs }).then(
        async (totals) => {
          logger.info({ ...totals }, formatTotals(totals, cfg.udp));
          await metricsServer?.close();
          done(0);
        },
        (err) => {
          logger.error({ err: String(err) }, 'shutdown failed');
          done(1);
        },
      );
    };
    onSignals(
      (signal) => {
        if (runner) return shutdown(signal, runner);
        early = signal;
        startup.abort();
      },
      () => runner?.forceClose(),
    );
    const interrupted = () => (early === 'SIGINT' ? 130 : 143);
    const flags = program.opts<ServerFlags>();
    if (flags.tls && !cfg.tls) {
      const t = await selfSignedTls(cfg.host);
      cfg.tls = { cert: t.cert, key: t.key, ...(flags.alpn ? { alpn: parseAlpn(flags.alpn) } : {}) };
    }
    if (early) return interrupted();
    try {
      runner = await startServer(cfg, logger, { signal: startup.signal });
    } catch (err) {
      if (early) return interrupted(); // the children it had started are gone
      throw err;
    }
    if (early) {
      shutdown(early, runner);
      return finished;
    }
    // the port the kernel chose is printed with -q too: nothing else can tell it
    const chosen =
      cfg.port === 0 && !logger.isLevelEnabled('info') ? logger.child({}, { level: 'info' }) : logger;
    chosen.info(
      {
        address: runner.address.address,
        port: runner.address.port,
        mode: cfg.mode,
        proto: cfg.udp ? 'udp' : cfg.path !== undefined ? 'unix' : 'tcp',
        ...(cfg.tls ? { tls: true } : {}),
      },
      listeningLine(cfg, runner),
    );
    if (cfg.proxyProtocol) {
      const from = (cfg.proxyFrom ?? DEFAULT_PROXY_FROM.map((c) => ({ text: c }))).map((c) => c.text);
      logger.info(
        { proxyFrom: cfg.path === undefined ? from : 'unix' },
        cfg.path === undefined
          ? `PROXY headers are believed only from ${from.join(', ')} (--proxy-from); any other peer is refused unread`
          : `PROXY headers are believed from every peer of the Unix socket: its file mode (--unix-mode) says who may connect`,
      );
    }
    if (cfg.tls) {
      const c = describeCertificate(cfg.tls.cert);
      logger.info(
        { fingerprint: c.fingerprint, subject: c.subject, validTo: c.validTo, selfSigned: !flags.cert },
        `TLS certificate${flags.cert ? '' : ' (self-signed, made at start)'}: SHA-256 ${c.fingerprint}, valid to ${c.validTo}; pin it with echo-client --tls --fingerprint ${c.fingerprint}`,
      );
    }
    if (cfg.path === undefined) warnIfReachable(logger, runner.address.address);
    if (cfg.metrics) {
      const api = echoServerProxies(runner, { udp: cfg.udp, faults: cfg.faults });
      const m = await startMetrics(runner, cfg.metrics.host, cfg.metrics.port, cfg.instanceName, api);
      if (stopping) {
        await m.close(); // a signal came while it started: it would keep the process alive
        return finished;
      }
      metricsServer = m;
      m.describe({ mode: cfg.udp ? 'udp' : cfg.mode });
      const a = metricsServer.address;
      (cfg.metrics.port === 0 && !logger.isLevelEnabled('info')
        ? logger.child({}, { level: 'info' })
        : logger
      ).info(
        { metrics: `${formatAddress(a.address, a.port)}` },
        `metrics on http://${formatAddress(a.address, a.port)}/metrics`,
      );
      warnIfReachable(logger, a.address, 'the metrics port (no authentication)');
    }
    if (cfg.faults) {
      const list = cfg.faults.map(formatFault).join('; ');
      logger.warn({ faults: cfg.faults }, `faults injected on purpose: ${list}`);
    }
    return finished;
  });
}
