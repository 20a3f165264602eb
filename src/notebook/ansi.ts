// Removes terminal escape sequences (colours, cursor moves, hyperlinks) so kernel text reads as plain text.

// String-type controls (OSC, DCS, SOS, PM, APC) run until BEL or String Terminator (ESC \ or 0x9C).
// Of the 8-bit C1 forms only CSI (0x9B) and OSC (0x9D) are treated as escapes: the others are rare
// enough in real output that mis-decoded text containing them is the likelier explanation.
// An unterminated one is dropped up to the end of its line, so a stray ESC ] never swallows the rest.
const STRING_CONTROL = /(?:\x1b[\]PX^_]|\x9d)[^\x07\x1b\x9c\n]*(?:\x07|\x1b\\|\x9c)?/g;
// CSI: ESC [ (or 0x9B), parameter bytes 0x30–0x3F, intermediate bytes 0x20–0x2F, one final byte 0x40–0x7E.
const CSI = /(?:\x1b\[|\x9b)[0-?]*[ -/]*[@-~]/g;
// Every other escape: ESC, optional intermediates, one final byte (charset selection, keypad modes, ESC 7…).
// "[" and "]" are left out: they open a CSI or OSC, and one still here is incomplete (handled below).
const OTHER_ESCAPE = /\x1b[ -/]*[0-Z\\^-~]/g;
// A sequence cut in half at the very end (stream chunking), then any ESC that starts nothing valid.
const DANGLING_ESC = /\x1b[[\]]?[0-?]*$/;
const LONE_ESC = /\x1b/g;

/** The text with every ANSI/VT escape sequence removed; ordinary characters are untouched. */
export function stripAnsi(text: string): string {
  if (!/[\x1b\x9b\x9d]/.test(text)) return text;
  return text
    .replace(STRING_CONTROL, '')
    .replace(CSI, '')
    .replace(OTHER_ESCAPE, '')
    .replace(DANGLING_ESC, '')
    .replace(LONE_ESC, '');
}
