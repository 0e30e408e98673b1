// Live drafts: while a suggestion is being computed, each `unmask/draft` notification (one per
// denoising step, docs/protocol.md) is shown after the cursor as a faint decoration, replaced
// step by step, and removed when the suggestion itself arrives.
import * as vscode from 'vscode';

export interface DraftParams {
  textDocument: { uri: string; version: number };
  position: { line: number; character: number };
  step: number;
  text: string;
  confidence: number;
  elapsedMs: number;
  done: boolean;
}

export class Drafts implements vscode.Disposable {
  private type = vscode.window.createTextEditorDecorationType({
    after: {
      color: new vscode.ThemeColor('editorGhostText.foreground'),
      fontStyle: 'italic',
    },
    rangeBehavior: vscode.DecorationRangeBehavior.ClosedClosed,
  });
  private shownIn: vscode.TextEditor | undefined;
  /** The last draft shown, for tests and the log. */
  last: DraftParams | undefined;

  show(p: DraftParams): void {
    this.clear();
    if (p.done) {
      return;
    }
    const editor = vscode.window.visibleTextEditors.find(
      (e) => e.document.uri.toString() === p.textDocument.uri && e.document.version === p.textDocument.version,
    );
    if (!editor) {
      return;
    }
    const lines = p.text.split('\n');
    const text = lines[0] + (lines.length > 1 && lines.slice(1).some((l) => l.trim()) ? ' …' : '');
    if (text.trim() === '') {
      return;
    }
    const pos = new vscode.Position(p.position.line, p.position.character);
    editor.setDecorations(this.type, [
      { range: new vscode.Range(pos, pos), renderOptions: { after: { contentText: text.replace(/ /g, '\u00a0') } } },
    ]);
    this.shownIn = editor;
    this.last = p;
  }

  clear(): void {
    this.shownIn?.setDecorations(this.type, []);
    this.shownIn = undefined;
  }

  dispose(): void {
    this.type.dispose();
  }
}
