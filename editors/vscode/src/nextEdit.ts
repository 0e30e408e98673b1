// Next-edit suggestions in the editor: the targets of the server's proposed edits are decorated,
// the proposed text shown after them; Tab jumps to the next target and, on it, applies it; Escape
// dismisses (keybindings in package.json, gated on the `unmask.nextEditVisible` context key and
// yielding to a visible inline suggestion).
//
// The request is `textDocument/copilotInlineEdit` (`unmask serve` advertises it as
// `experimental.copilotInlineEditProvider`), sent 300 ms after the last change. Applying one
// edit drops the others (they were made for the text before it); the change asks again. A
// server that answers "method not found" is not asked again until it restarts.
import * as vscode from 'vscode';
import { applicable, Edit, target } from './nextEditModel';

export const METHOD = 'textDocument/copilotInlineEdit';
const METHOD_NOT_FOUND = -32601;

type Request = (method: string, params: unknown) => Promise<unknown>;

export class NextEdits implements vscode.Disposable {
  private targetType = vscode.window.createTextEditorDecorationType({
    backgroundColor: new vscode.ThemeColor('diffEditor.removedTextBackground'),
    borderRadius: '2px',
  });
  private proposalType = vscode.window.createTextEditorDecorationType({
    after: { color: new vscode.ThemeColor('editorGhostText.foreground'), margin: '0 0 0 1em' },
  });
  private edits: Edit[] = [];
  private editor: vscode.TextEditor | undefined;
  private timer: NodeJS.Timeout | undefined;
  unsupported = false;

  constructor(private log: vscode.LogOutputChannel) {}

  /** Ask the server after an edit pauses (no-op once it said it does not know the method). */
  scheduleRequest(request: Request | undefined, editor: vscode.TextEditor | undefined, enabled: boolean): void {
    clearTimeout(this.timer);
    this.clear();
    if (!request || !editor || !enabled || this.unsupported) {
      return;
    }
    this.timer = setTimeout(async () => {
      const doc = editor.document;
      const version = doc.version;
      const pos = editor.selection.active;
      try {
        const res = await request(METHOD, {
          textDocument: { uri: doc.uri.toString(), version },
          position: { line: pos.line, character: pos.character },
        });
        if (doc.version === version) {
          this.show(editor, res as { edits?: Edit[] });
        }
      } catch (e) {
        if ((e as { code?: number }).code === METHOD_NOT_FOUND) {
          this.unsupported = true;
          this.log.info(`the server does not offer ${METHOD}; next-edit suggestions are off until it restarts`);
        }
      }
    }, 300);
  }

  show(editor: vscode.TextEditor, result: { edits?: Edit[] } | null | undefined): number {
    this.clear();
    const doc = editor.document;
    this.edits = applicable(result, doc.uri.toString(), doc.version);
    if (!this.edits.length) {
      return 0;
    }
    this.editor = editor;
    const range = (e: Edit) =>
      new vscode.Range(e.range.start.line, e.range.start.character, e.range.end.line, e.range.end.character);
    editor.setDecorations(this.targetType, this.edits.map(range));
    editor.setDecorations(
      this.proposalType,
      this.edits.map((e) => ({
        range: range(e),
        renderOptions: { after: { contentText: `→ ${e.text.split('\n')[0]}${e.text.includes('\n') ? ' …' : ''}` } },
      })),
    );
    void vscode.commands.executeCommand('setContext', 'unmask.nextEditVisible', true);
    return this.edits.length;
  }

  /** Tab: jump to the next target; on it, apply it. */
  async accept(): Promise<void> {
    const editor = this.editor;
    const t = editor && target(this.edits, editor.selection.active);
    if (!editor || !t) {
      return;
    }
    const r = t.edit.range;
    const range = new vscode.Range(r.start.line, r.start.character, r.end.line, r.end.character);
    if (!t.on) {
      editor.selection = new vscode.Selection(range.start, range.start);
      editor.revealRange(range);
      return;
    }
    this.clear();
    await editor.edit((b) => b.replace(range, t.edit.text));
    if (t.edit.command) {
      await vscode.commands.executeCommand(t.edit.command.command, ...(t.edit.command.arguments ?? []));
    }
  }

  clear(): void {
    if (this.editor) {
      this.editor.setDecorations(this.targetType, []);
      this.editor.setDecorations(this.proposalType, []);
    }
    if (this.edits.length) {
      void vscode.commands.executeCommand('setContext', 'unmask.nextEditVisible', false);
    }
    this.edits = [];
    this.editor = undefined;
  }

  dispose(): void {
    clearTimeout(this.timer);
    this.targetType.dispose();
    this.proposalType.dispose();
  }
}
