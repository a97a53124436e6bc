#!/usr/bin/env node
import { runLabCli } from '../dist/cli/echo-lab.js';

await runLabCli(process.argv.slice(2));
