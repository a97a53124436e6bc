#!/usr/bin/env node
import { manageYoungGeneration } from '../dist/core/heap.js';

manageYoungGeneration();
const { runServerCli } = await import('../dist/cli/echo-server.js');
await runServerCli(process.argv.slice(2));
