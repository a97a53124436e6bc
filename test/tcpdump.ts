// tcpdump as the lab tests' outside witness: where it is installed, and how it captures.

import { execFileSync } from 'node:child_process';

/** tcpdump's path, or undefined where it is not installed. */
export const tcpdumpPath = ['/usr/bin/tcpdump', '/usr/sbin/tcpdump'].find((p) => {
  try {
    execFileSync(p, ['--version'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
});

/**
 * How it captures: no name lookups, each packet written at once, headers only (-s 256) into a
 * 16 MB ring (-B): with the full snapshot length libpcap sizes its slots for lo's 64 KB MTU and
 * the default 2 MB ring holds a few dozen packets, which it dropped under load.
 */
export const CAPTURE_FLAGS = ['-n', '--immediate-mode', '-U', '-s', '256', '-B', '16384'];
