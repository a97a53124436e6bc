#!/usr/bin/env node
import { runServerCli } from '../dist/cli/echo-server.js';

await runServerCli(process.argv.slice(2));
