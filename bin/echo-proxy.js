#!/usr/bin/env node
import { runProxyCli } from '../dist/cli/echo-proxy.js';

await runProxyCli(process.argv.slice(2));
