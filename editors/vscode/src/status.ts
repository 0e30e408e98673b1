// The status bar item: whether the server runs and its model loaded, the last suggestion's
// latency, and the last error. Clicking it opens a small menu (toggle, restart, log).
import * as vscode from 'vscode';

export type State = 'starting' | 'ready' | 'off' | 'error';

export class Status implements vscode.Disposable {
  private item = vscode.window.createStatusBarItem('unmask.status', vscode.StatusBarAlignment.Right, 100);
  private state: State = 'starting';
  private model = '';
  private lastMs: number | undefined;
  private error = '';
  private server = '';

  constructor() {
    this.item.name = 'unmask';
    this.item.command = 'unmask.menu';
    this.render();
    this.item.show();
  }

  set(state: State, error = ''): void {
    this.state = state;
    if (state === 'error') {
      this.error = error;
    } else if (state !== 'off') {
      this.error = '';
    }
    this.render();
  }

  setServer(command: string): void {
    this.server = command;
    this.render();
  }

  setModel(model: string): void {
    this.model = model;
    if (model && this.state === 'starting') {
      this.state = 'ready';
    }
    this.render();
  }

  latency(ms: number): void {
    this.lastMs = ms;
    this.render();
  }

  /** What the item shows now (the e2e test reads it). */
  get text(): string {
    return this.item.text;
  }

  private render(): void {
    const ms = this.lastMs === undefined ? '' : ` ${Math.round(this.lastMs)} ms`;
    const texts: Record<State, string> = {
      starting: '$(loading~spin) unmask',
      ready: `$(sparkle) unmask${ms}`,
      off: '$(circle-slash) unmask',
      error: '$(error) unmask',
    };
    this.item.text = texts[this.state];
    this.item.backgroundColor =
      this.state === 'error' ? new vscode.ThemeColor('statusBarItem.errorBackground') : undefined;
    const md = new vscode.MarkdownString(undefined, true);
    const lines = [
      `**unmask** — ${this.state === 'starting' ? 'starting, loading the model' : this.state}`,
      this.model ? `model: \`${this.model}\`` : this.state === 'ready' ? '' : 'model: not loaded yet',
      this.lastMs === undefined ? '' : `last suggestion: ${Math.round(this.lastMs)} ms`,
      this.server ? `server: \`${this.server}\`` : '',
      this.error ? `error: ${this.error}` : '',
      'click for: toggle, restart, log',
    ];
    md.appendMarkdown(lines.filter(Boolean).join('  \n'));
    this.item.tooltip = md;
  }

  dispose(): void {
    this.item.dispose();
  }
}
