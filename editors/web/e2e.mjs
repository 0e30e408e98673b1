// End-to-end check of the playground: starts `unmask playground` (playground.py), loads the
// page in headless chromium (playwright-core), waits for the server's model, types at the end
// of the sample, and records the live drafts, the ghost text, and the text after Tab.
// Writes result.json and playground.png to $UNMASK_ARTIFACTS; always stops what it started.
//
// Environment: UNMASK_PYTHON (interpreter with unmask installed), UNMASK_ARTIFACTS, CHROMIUM,
// UNMASK_MODEL (a model directory other than the shipped one).
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const here = path.dirname(fileURLToPath(import.meta.url));
const out = path.resolve(process.env.UNMASK_ARTIFACTS ?? path.join(here, '..', 'artifacts'));
fs.mkdirSync(out, { recursive: true });
const result = { steps: [] };
const step = (s) => {
  result.steps.push(s);
  console.log(`[playground-e2e] ${s}`);
};
let server;
let browser;

async function main() {
  const model = process.env.UNMASK_MODEL ? ['--model', process.env.UNMASK_MODEL] : [];
  server = spawn(process.env.UNMASK_PYTHON ?? 'python3', [path.join(here, 'playground.py'), '--port', '0', ...model], {
    detached: true,
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const url = await new Promise((resolve, reject) => {
    let buf = '';
    server.stdout.on('data', (d) => {
      buf += d;
      const m = buf.match(/http:\/\/127\.0\.0\.1:\d+\//);
      if (m) resolve(m[0]);
    });
    server.on('exit', (code) => reject(new Error(`playground exited with ${code}`)));
    setTimeout(() => reject(new Error('playground printed no URL within 30 s')), 30_000);
  });
  step(`playground at ${url}`);

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
  const page = await browser.newPage({ viewport: { width: 1300, height: 700 } });
  page.on('pageerror', (e) => (result.pageErrors ??= []).push(String(e)));
  await page.goto(`${url}?minConfidence=0`);
  await page.locator('#status.ready').waitFor({ timeout: 120_000 });
  result.status = await page.locator('#status').innerText();
  step(`status: ${result.status}`);

  await page.locator('.monaco-editor .view-lines').click();
  await page.keyboard.press('Control+End'); // after "        total += ": make it "        total"
  for (let i = 0; i < 5; i++) await page.keyboard.press('Backspace');
  await page.keyboard.type('l');
  const ghost = page.locator('.monaco-editor .ghost-text-decoration, .monaco-editor .ghost-text');
  let shown = false;
  for (let attempt = 0; attempt < 3 && !shown; attempt++) {
    try {
      await ghost.first().waitFor({ state: 'visible', timeout: 15_000 });
      shown = true;
    } catch {
      await page.keyboard.press('Alt+Backslash'); // ask explicitly: no confidence gate
    }
  }
  result.drafts = await page.locator('#drafts li').allInnerTexts();
  await page.screenshot({ path: path.join(out, 'playground.png') });
  step(`drafts listed: ${result.drafts.length}`);
  if (!shown) {
    result.noGhost = true;
    step('no ghost text appeared');
    return;
  }
  result.ghost = (await page.locator('.monaco-editor .view-line .ghost-text-decoration').allTextContents())
    .join('')
    .replace(/\u00a0/g, ' ');
  result.before = await page.evaluate(() => window.unmaskEditor.getValue());
  await page.keyboard.press('Tab');
  await page.waitForTimeout(300);
  result.after = await page.evaluate(() => window.unmaskEditor.getValue());
  step(`accepted: ${JSON.stringify(result.after.split('\n').at(-1))}`);
}

try {
  await main();
  result.error = null;
} catch (e) {
  result.error = String(e?.stack ?? e);
  console.error(e);
} finally {
  try {
    await browser?.close();
  } catch {}
  if (server?.pid) {
    try {
      process.kill(-server.pid, 'SIGTERM'); // playground.py stops its unmask serve on SIGTERM
    } catch {}
    await new Promise((r) => setTimeout(r, 1500));
    try {
      process.kill(-server.pid, 'SIGKILL');
    } catch {}
  }
  fs.writeFileSync(path.join(out, 'playground-result.json'), JSON.stringify(result, null, 2));
}
process.exit(result.error ? 1 : 0);
