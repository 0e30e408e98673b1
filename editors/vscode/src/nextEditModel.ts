// Next-edit answers (shaped like `textDocument/copilotInlineEdit`'s: {edits: [{text,
// textDocument: {uri, version}, range}]}) reduced to what the editor shows: the edits for this
// document version, in order, and which one <Tab> goes to. No `vscode` import (unit-tested in Node).

export interface Pos {
  line: number;
  character: number;
}
export interface Edit {
  text: string;
  textDocument?: { uri: string; version?: number };
  range: { start: Pos; end: Pos };
  command?: { title: string; command: string; arguments?: unknown[] };
}

const before = (a: Pos, b: Pos) => a.line < b.line || (a.line === b.line && a.character < b.character);

/** The edits that apply to `uri` at `version`, sorted by position. */
export function applicable(result: { edits?: Edit[] } | null | undefined, uri: string, version: number): Edit[] {
  return (result?.edits ?? [])
    .filter((e) => (e.textDocument?.uri ?? uri) === uri && (e.textDocument?.version ?? version) === version)
    .sort((a, b) => (before(a.range.start, b.range.start) ? -1 : before(b.range.start, a.range.start) ? 1 : 0));
}

/** The edit under the cursor (on = true), else the next one after it, wrapping around. */
export function target(edits: Edit[], cursor: Pos): { edit: Edit; on: boolean } | undefined {
  for (const edit of edits) {
    const on = !before(cursor, edit.range.start) && !before(edit.range.end, cursor);
    if (on || before(cursor, edit.range.start)) {
      return { edit, on };
    }
  }
  return edits.length ? { edit: edits[0], on: false } : undefined;
}
