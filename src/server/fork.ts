// fork mode: a process per connection. The listener in this process accepts (reading
// paused) and admits; each connection is handed over IPC to a fresh child (`serve-once`),
// which echoes it, reports its bytes and exits. One warm spare is kept ready so a new client
// does not wait for Node to start; the listener runs at most --max-children at once and
// queues the rest, unread, in arrival order.

import type { Logger } from '../core/log.js';
import { ChildPool, type ChildrenBackend } from './children.js';
import type { ServerConfig } from './config.js';
import type { Child } from './supervisor.js';

export function forkBackend(cfg: ServerConfig, logger: Logger): ChildrenBackend {
  let spare: Child | undefined;
  const pool = new ChildPool({
    role: 'serve-once',
    name: 'child',
    cfg,
    logger,
    onExit(child) {
      if (child === spare) spare = undefined;
    },
  });
  const { sup } = pool;
  const pick = (): Child | undefined => {
    const c = spare?.alive ? spare : pool.trySpawn();
    spare = sup.stopping ? undefined : pool.trySpawn(); // warm the next one while this one works
    return c;
  };
  const started = (async () => {
    spare = sup.spawn();
    await spare.ready;
  })();
  started.catch(() => sup.killAll());
  return {
    pauseOnConnect: true,
    started,
    // a child is one connection: those serving one, not the spare
    pids: () => [...sup.children].filter((c) => c.conns.size > 0).map((c) => c.pid),
    serve: pool.serveWith(pick),
    setFaults: (faults, v) => pool.setFaults(faults, v),
    drain: (deadline) => sup.stopAll(deadline),
    force: () => sup.forceAll(),
    connections: () => pool.connections(),
  };
}
