// Peer bytes shown on a terminal are escaped: a peer must not be able to set the window title
// (ESC ] 0 ;), clear the screen (ESC [ 2 J), write the clipboard (ESC ] 52 ;) or rewrite the
// line (CR) of the person reading. Control characters other than newline and tab are shown
// as `cat -v` shows them (^[, ^G, ^M, ^?), C1 controls (U+0080–U+009F, which some terminals
// take as ESC sequences) as M-^X. Multi-byte UTF-8 split across reads is joined first
// (StringDecoder), so "é" arriving in two segments prints as é, not two U+FFFD.
// The Unicode bidirectional controls (U+202A–U+202E embeddings and overrides, U+2066–U+2069
// isolates, U+200E/U+200F/U+061C marks) are shown as <U+202E>: they reorder what follows on
// the screen, so text could read differently from the bytes that came (Trojan Source).

import { StringDecoder } from 'node:string_decoder';

// biome-ignore lint/suspicious/noControlCharactersInRegex: matching control characters is the point
const CONTROL = /[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]/g;

function caret(ch: string): string {
  const c = ch.charCodeAt(0);
  if (c > 0xff) return `<U+${c.toString(16).toUpperCase().padStart(4, '0')}>`;
  if (c === 0x7f) return '^?';
  if (c >= 0x80) return `M-${caret(String.fromCharCode(c - 0x80))}`;
  return `^${String.fromCharCode(c + 0x40)}`;
}

/** `text` with every control character except \n and \t made visible. */
export function escapeForTerminal(text: string): string {
  return text.replace(CONTROL, caret);
}

/** Decodes a byte stream to safe terminal text, chunk by chunk. */
export class TerminalText {
  private readonly decoder = new StringDecoder('utf8');

  write(chunk: Buffer): string {
    return escapeForTerminal(this.decoder.write(chunk));
  }

  end(): string {
    return escapeForTerminal(this.decoder.end());
  }
}
