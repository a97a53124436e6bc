#!/usr/bin/env node
import { runClientCli } from '../dist/cli/echo-client.js';

await runClientCli(process.argv.slice(2));
