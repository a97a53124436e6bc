// Peer bytes on a terminal: escaped like `cat -v`, UTF-8 joined across reads.
import { describe, expect, it } from 'vitest';
import { escapeForTerminal, TerminalText } from '../src/core/terminal.js';

const ESC = '\x1b';
const BEL = '\x07';

describe('escapeForTerminal', () => {
  it('makes OSC, CSI, CR, DEL and C1 controls visible; keeps newline, tab and text', () => {
    expect(escapeForTerminal(`${ESC}]0;title${BEL}`)).toBe('^[]0;title^G');
    expect(escapeForTerminal(`${ESC}]52;c;aGk=${BEL}`)).toBe('^[]52;c;aGk=^G');
    expect(escapeForTerminal(`${ESC}[2J`)).toBe('^[[2J');
    expect(escapeForTerminal('a\rb\x7fc\x9bd')).toBe('a^Mb^?cM-^[d');
    expect(escapeForTerminal('line\n\ttab é 日本')).toBe('line\n\ttab é 日本');
    expect(escapeForTerminal('\x00')).toBe('^@');
  });

  it('TerminalText joins a character split across chunks', () => {
    const t = new TerminalText();
    const e = Buffer.from('é');
    expect(t.write(Buffer.concat([Buffer.from('caf'), e.subarray(0, 1)]))).toBe('caf');
    expect(t.write(e.subarray(1))).toBe('é');
    expect(t.write(Buffer.from([0xff]))).toBe('\ufffd'); // invalid UTF-8 is shown as such, not passed raw
    expect(t.end()).toBe('');
  });
});
