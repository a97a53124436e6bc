#!/usr/bin/env node
// the V8 flag first: loading the CLI already allocates enough to grow the young generation
import { keepYoungGenerationSmall } from '../dist/core/heap.js';

keepYoungGenerationSmall();
const { runServerCli } = await import('../dist/cli/echo-server.js');
await runServerCli(process.argv.slice(2));
