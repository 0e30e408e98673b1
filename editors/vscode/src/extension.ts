// The unmask extension: finds and starts `unmask serve`, lets vscode-languageclient 11 forward
// LSP 3.18 inline completions, and adds what VS Code users look for: settings, a status bar
// item, commands (toggle, restart, show log), live drafts and next-edit decorations.
// No context gathering and no model logic here: the server does all of that.
import * as vscode from 'vscode';
import {
  DidChangeConfigurationNotification,
  LanguageClient,
  LanguageClientOptions,
  ServerOptions,
  State as ClientState,
  TransportKind,
} from 'vscode-languageclient/node';
import { Drafts, DraftParams } from './drafts';
import { findServer } from './findServer';
import { NextEdits } from './nextEdit';
import { documentSelector, read, serverSettings, Settings } from './settings';
import { Status } from './status';

let client: LanguageClient | undefined;
let log: vscode.LogOutputChannel;
let status: Status;
let drafts: Drafts;
let nextEdits: NextEdits;
let statsTimer: NodeJS.Timeout | undefined;

function settings(): Settings {
  const cfg = vscode.workspace.getConfiguration('unmask');
  return read((key) => cfg.get(key));
}

async function start(): Promise<void> {
  const s = settings();
  if (!s.enable) {
    status.set('off');
    return;
  }
  const interp = vscode.workspace.getConfiguration('python').get<string>('defaultInterpreterPath');
  const found = findServer({
    serverPath: s.serverPath,
    pythonInterpreter: interp,
    workspaceFolders: (vscode.workspace.workspaceFolders ?? []).map((f) => f.uri.fsPath),
    envPath: process.env.PATH ?? '',
    windows: process.platform === 'win32',
  });
  if ('error' in found) {
    status.set('error', found.error);
    log.error(found.error);
    void vscode.window.showErrorMessage(found.error, 'Open Settings', 'Show Log').then((pick) => {
      if (pick === 'Open Settings') {
        void vscode.commands.executeCommand('workbench.action.openSettings', 'unmask.serverPath');
      } else if (pick === 'Show Log') {
        log.show();
      }
    });
    return;
  }
  log.info(`starting ${found.command} serve (found via ${found.source})`);
  status.setServer(found.command);
  status.set('starting');
  const serverOptions: ServerOptions = { command: found.command, args: ['serve'], transport: TransportKind.stdio };
  const clientOptions: LanguageClientOptions = {
    documentSelector: documentSelector(s.languages),
    outputChannel: log,
    initializationOptions: serverSettings(s),
    middleware: {
      // time each suggestion for the status bar; drafts shown meanwhile end with it
      provideInlineCompletionItems: async (document, position, context, token, next) => {
        const t0 = Date.now();
        try {
          const res = await next(document, position, context, token);
          if (!token.isCancellationRequested) {
            status.latency(Date.now() - t0);
          }
          return res;
        } finally {
          drafts.clear();
        }
      },
    },
  };
  const c = new LanguageClient('unmask', 'unmask', serverOptions, clientOptions);
  client = c;
  c.onNotification('unmask/draft', (p: DraftParams) => drafts.show(p));
  c.onDidChangeState((e) => {
    if (e.newState === ClientState.Stopped && client === c) {
      status.set('error', 'the server stopped (see the log)');
    }
  });
  try {
    await c.start();
  } catch (e) {
    status.set('error', `the server did not start: ${e}`);
    log.error(`the server did not start: ${e}`);
    return;
  }
  pollModel(c);
}

/** Ask the server for its loaded model until it has one (it loads in the background at start). */
function pollModel(c: LanguageClient): void {
  clearInterval(statsTimer);
  const until = Date.now() + 120_000;
  const poll = async () => {
    try {
      const stats = (await c.sendRequest('unmask/stats', {})) as { model?: string };
      if (stats.model) {
        status.setModel(stats.model);
        clearInterval(statsTimer);
      }
    } catch {
      /* not ready yet */
    }
    if (Date.now() > until) {
      clearInterval(statsTimer);
      status.set('error', 'no model loaded after 2 minutes (see the log)');
    }
  };
  statsTimer = setInterval(poll, 1000);
  void poll();
}

async function stop(): Promise<void> {
  clearInterval(statsTimer);
  drafts.clear();
  nextEdits.clear();
  nextEdits.unsupported = false;
  const c = client;
  client = undefined;
  if (c) {
    try {
      await c.stop(5000);
    } catch (e) {
      log.warn(`stopping the server: ${e}`);
    }
  }
}

async function restart(): Promise<void> {
  await stop();
  await start();
}

export async function activate(context: vscode.ExtensionContext): Promise<void> {
  log = vscode.window.createOutputChannel('unmask', { log: true });
  status = new Status();
  drafts = new Drafts();
  nextEdits = new NextEdits(log);
  context.subscriptions.push(log, status, drafts, nextEdits);

  context.subscriptions.push(
    vscode.commands.registerCommand('unmask.toggle', async () => {
      const cfg = vscode.workspace.getConfiguration('unmask');
      await cfg.update('enable', !settings().enable, vscode.ConfigurationTarget.Global);
    }),
    vscode.commands.registerCommand('unmask.restart', restart),
    vscode.commands.registerCommand('unmask.showLog', () => log.show()),
    vscode.commands.registerCommand('unmask.nextEdit.accept', () => nextEdits.accept()),
    vscode.commands.registerCommand('unmask.nextEdit.dismiss', () => nextEdits.clear()),
    vscode.commands.registerCommand('unmask.menu', async () => {
      const on = settings().enable;
      const picks = [
        { label: on ? 'Turn off inline suggestions' : 'Turn on inline suggestions', command: 'unmask.toggle' },
        { label: 'Restart server', command: 'unmask.restart' },
        { label: 'Show log', command: 'unmask.showLog' },
      ];
      const pick = await vscode.window.showQuickPick(picks, { title: 'unmask' });
      if (pick) {
        await vscode.commands.executeCommand(pick.command);
      }
    }),
    vscode.workspace.onDidChangeConfiguration(async (e) => {
      if (e.affectsConfiguration('unmask.enable')) {
        await (settings().enable ? start() : stop().then(() => status.set('off')));
      } else if (e.affectsConfiguration('unmask.serverPath') || e.affectsConfiguration('unmask.languages')) {
        await restart();
      } else if (e.affectsConfiguration('unmask') && client) {
        await client.sendNotification(DidChangeConfigurationNotification.type, { settings: serverSettings(settings()) });
      }
    }),
    vscode.window.onDidChangeActiveTextEditor(() => nextEdits.clear()),
    vscode.workspace.onDidChangeTextDocument((e) => {
      const editor = vscode.window.activeTextEditor;
      if (editor?.document === e.document && e.contentChanges.length) {
        drafts.clear();
        const c = client;
        nextEdits.scheduleRequest(c && ((m, p) => c.sendRequest(m, p)), editor, settings().nextEdit);
      }
    }),
  );
  await start();
}

export async function deactivate(): Promise<void> {
  await stop();
}
