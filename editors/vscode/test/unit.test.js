// Unit checks of the extension's vscode-free parts (node --test, after `npm run compile`):
// server discovery, settings mapping, next-edit target choice, and that package.json declares
// every setting the code reads with the same default.
const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { findServer } = require('../out/findServer');
const { DEFAULTS, read, serverSettings, documentSelector } = require('../out/settings');
const { applicable, target } = require('../out/nextEditModel');

function fakeExe(dir, name = 'unmask') {
  fs.mkdirSync(dir, { recursive: true });
  const p = path.join(dir, name);
  fs.writeFileSync(p, '#!/bin/sh\n');
  fs.chmodSync(p, 0o755);
  return p;
}

test('finds unmask: configured path, then PATH, then the interpreter, then .venv', () => {
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'unmask-find-'));
  const onPath = fakeExe(path.join(tmp, 'pathdir'));
  const interp = fakeExe(path.join(tmp, 'py', 'bin'), 'python');
  const inInterp = fakeExe(path.join(tmp, 'py', 'bin'));
  const inVenv = fakeExe(path.join(tmp, 'ws', '.venv', 'bin'));
  const configured = fakeExe(path.join(tmp, 'cfg'));
  const base = { serverPath: '', workspaceFolders: [path.join(tmp, 'ws')], envPath: '' };
  assert.equal(findServer({ ...base, serverPath: configured }).command, configured);
  const home = fs.mkdtempSync(path.join(os.homedir(), '.unmask-find-'));
  try {
    const inHome = fakeExe(path.join(home, 'bin'));
    const tilde = '~/' + path.relative(os.homedir(), inHome);
    assert.equal(findServer({ ...base, serverPath: tilde }).command, inHome);
  } finally {
    fs.rmSync(home, { recursive: true });
  }
  assert.equal(findServer({ ...base, envPath: path.join(tmp, 'pathdir') }).command, onPath);
  assert.equal(findServer({ ...base, pythonInterpreter: interp }).command, inInterp);
  assert.equal(findServer({ ...base, pythonInterpreter: 'python' }).command, inVenv);
});

test('a missing server is explained with the fix', () => {
  const none = findServer({ serverPath: '', workspaceFolders: [], envPath: '/nonexistent' });
  assert.match(none.error, /cannot find the `unmask` executable/);
  assert.match(none.error, /unmask\.serverPath/);
  const bad = findServer({ serverPath: '/no/such/unmask', workspaceFolders: [], envPath: '' });
  assert.match(bad.error, /\/no\/such\/unmask, which is not an executable file/);
});

test('settings become server settings and a document selector', () => {
  const s = read(() => undefined);
  assert.deepEqual(s, DEFAULTS);
  assert.deepEqual(serverSettings(s), {
    latencyBudgetMs: 250,
    minConfidence: 0.4,
    modelPath: null,
    streamDrafts: true,
    'nextEdit.enabled': true,
    'nextEdit.minConfidence': 0.75,
  });
  assert.equal(serverSettings({ ...s, modelPath: '/m' }).modelPath, '/m');
  assert.deepEqual(documentSelector(['*']), [{ scheme: 'file' }, { scheme: 'untitled' }]);
  assert.deepEqual(documentSelector(['python']), [
    { scheme: 'file', language: 'python' },
    { scheme: 'untitled', language: 'python' },
  ]);
});

test('package.json declares every setting with the code\'s default', () => {
  const pkg = JSON.parse(fs.readFileSync(path.join(__dirname, '..', 'package.json'), 'utf8'));
  const props = pkg.contributes.configuration.properties;
  const names = { nextEdit: 'nextEdit.enable', nextEditMinConfidence: 'nextEdit.minConfidence' };
  for (const [key, value] of Object.entries(DEFAULTS)) {
    const decl = props[`unmask.${names[key] ?? key}`];
    assert.ok(decl, `unmask.${key} is not declared`);
    assert.deepEqual(decl.default, value, `default of unmask.${key}`);
  }
  const commands = pkg.contributes.commands.map((c) => c.command);
  for (const c of ['unmask.toggle', 'unmask.restart', 'unmask.showLog']) {
    assert.ok(commands.includes(c), c);
  }
});

test('next edits: only this version, in order; Tab goes to the next target, then applies it', () => {
  const uri = 'file:///a.py';
  const e = (line, text, version = 3) => ({
    text,
    textDocument: { uri, version },
    range: { start: { line, character: 4 }, end: { line, character: 8 } },
  });
  const edits = applicable({ edits: [e(9, 'b'), e(2, 'a'), e(5, 'old', 2), { ...e(1, 'x'), textDocument: { uri: 'file:///b.py', version: 3 } }] }, uri, 3);
  assert.deepEqual(edits.map((x) => x.text), ['a', 'b']);
  assert.deepEqual(target(edits, { line: 0, character: 0 }), { edit: edits[0], on: false });
  assert.deepEqual(target(edits, { line: 2, character: 6 }), { edit: edits[0], on: true });
  assert.deepEqual(target(edits, { line: 3, character: 0 }), { edit: edits[1], on: false });
  assert.deepEqual(target(edits, { line: 20, character: 0 }), { edit: edits[0], on: false });
  assert.equal(target([], { line: 0, character: 0 }), undefined);
});
