// The playground page: a Monaco editor whose inline suggestions come from `unmask serve` over
// WebSocket. Every keystroke goes to the server as an incremental didChange; Monaco asks for
// inline completions as you type; each denoising step (`unmask/draft`) is drawn live after the
// cursor and listed in the side panel. The page holds no completion logic.
import * as monaco from 'monaco-editor/editor/editor.main.js';
import { LspSocket } from './lsp.js';

self.MonacoEnvironment = { getWorkerUrl: () => './editor.worker.js' };

const SAMPLE = `import os


def find_python_files(root):
    """Return the paths of all .py files below root, sorted."""
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        for name in filenames:
            if name.endswith(".py"):
                found.append(os.path.join(dirpath, name))
    return sorted(found)


def main():
    total = 0
    for path in find_python_files("."):
        total += `;

const $ = (id) => document.getElementById(id);
const status = (text, cls = '') => {
  $('status').textContent = text;
  $('status').className = cls;
};
const params = new URLSearchParams(location.search);
const settings = { streamDrafts: true };
for (const key of ['minConfidence', 'latencyBudgetMs', 'steps']) {
  if (params.has(key)) settings[key] = Number(params.get(key));
}

const uri = monaco.Uri.parse('file:///playground/example.py');
const model = monaco.editor.createModel(SAMPLE, 'python', uri);
const editor = monaco.editor.create($('editor'), {
  model,
  theme: 'vs-dark',
  fontSize: 14,
  automaticLayout: true,
  minimap: { enabled: false },
  quickSuggestions: false,
  wordBasedSuggestions: 'off',
  inlineSuggest: { enabled: true },
});
window.unmaskEditor = editor; // for the end-to-end test

const draftMarks = editor.createDecorationsCollection();
const drafts = []; // the steps of the latest request, for the panel

function showDraft(d) {
  if (d.textDocument.version !== model.getVersionId() || d.done) {
    draftMarks.clear();
  } else {
    const pos = new monaco.Position(d.position.line + 1, d.position.character + 1);
    const first = d.text.split('\n')[0];
    draftMarks.set([
      {
        range: monaco.Range.fromPositions(pos),
        options: { after: { content: first || ' ', inlineClassName: 'unmask-draft' }, showIfCollapsed: true },
      },
    ]);
  }
  if (d.step === 1) drafts.length = 0;
  drafts.push(d);
  $('drafts').replaceChildren(
    ...drafts.map((s) => {
      const li = document.createElement('li');
      li.className = s.done ? 'done' : '';
      li.textContent = `step ${s.step} · ${Math.round(s.elapsedMs)} ms · ${s.confidence.toFixed(2)}  ${JSON.stringify(s.text)}`;
      return li;
    }),
  );
}

async function connect() {
  status('starting the server…');
  const session = await (await fetch('./session', { method: 'POST' })).json();
  const lsp = new LspSocket(session.ws, {
    settings,
    onNotification: (method, p) => {
      if (method === 'unmask/draft') showDraft(p);
      else if (method === 'window/showMessage') status(p.message, 'error');
    },
    onClose: () => status('disconnected from the server: reload the page', 'error'),
  });
  await lsp.start({
    textDocument: { synchronization: { dynamicRegistration: false }, inlineCompletion: {} },
    workspace: { configuration: true },
  });
  lsp.notify('textDocument/didOpen', {
    textDocument: { uri: uri.toString(), languageId: 'python', version: model.getVersionId(), text: model.getValue() },
  });
  model.onDidChangeContent((e) => {
    draftMarks.clear();
    lsp.notify('textDocument/didChange', {
      textDocument: { uri: uri.toString(), version: e.versionId },
      contentChanges: e.changes.map((c) => ({
        range: {
          start: { line: c.range.startLineNumber - 1, character: c.range.startColumn - 1 },
          end: { line: c.range.endLineNumber - 1, character: c.range.endColumn - 1 },
        },
        text: c.text,
      })),
    });
  });
  monaco.editor.registerCommand('unmask.didAcceptCompletion', (_accessor, ...args) =>
    lsp.request('workspace/executeCommand', { command: 'unmask.didAcceptCompletion', arguments: args }),
  );
  monaco.languages.registerInlineCompletionsProvider('python', {
    async provideInlineCompletions(m, position, context, token) {
      const t0 = performance.now();
      try {
        const res = await lsp.request(
          'textDocument/inlineCompletion',
          {
            textDocument: { uri: m.uri.toString() },
            position: { line: position.lineNumber - 1, character: position.column - 1 },
            context: { triggerKind: context.triggerKind === monaco.languages.InlineCompletionTriggerKind.Explicit ? 1 : 2 },
          },
          token,
        );
        $('latency').textContent = `last suggestion: ${Math.round(performance.now() - t0)} ms`;
        return {
          items: (res?.items ?? []).map((it) => ({
            insertText: typeof it.insertText === 'string' ? it.insertText : it.insertText.value,
            range: it.range
              ? new monaco.Range(
                  it.range.start.line + 1,
                  it.range.start.character + 1,
                  it.range.end.line + 1,
                  it.range.end.character + 1,
                )
              : undefined,
            command: it.command && { id: it.command.command, title: it.command.title, arguments: it.command.arguments },
          })),
        };
      } catch {
        return { items: [] }; // superseded or stale: a newer keystroke took over
      } finally {
        draftMarks.clear();
      }
    },
    disposeInlineCompletions() {},
  });
  // the model loads in the background after start
  for (;;) {
    const stats = await lsp.request('unmask/stats', {});
    if (stats.model) {
      status(`ready · model ${stats.model.split('/').slice(-1)[0]}`, 'ready');
      break;
    }
    await new Promise((r) => setTimeout(r, 500));
  }
  editor.focus();
}

connect().catch((e) => status(String(e), 'error'));
