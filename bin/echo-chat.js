#!/usr/bin/env node
import { runChatCli } from '../dist/cli/echo-chat.js';

await runChatCli(process.argv.slice(2));
