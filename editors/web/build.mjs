// Bundles the playground into dist/ with esbuild (pinned in package.json): the page, Monaco with
// its CSS and codicon font, and Monaco's editor worker. `unmask playground` serves dist/.
import * as esbuild from 'esbuild';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const dist = path.join(here, 'dist');
fs.rmSync(dist, { recursive: true, force: true });
const common = { bundle: true, minify: true, logLevel: 'warning', outdir: dist, loader: { '.ttf': 'file' } };
await esbuild.build({ ...common, entryPoints: [path.join(here, 'src', 'main.js')], format: 'iife' });
await esbuild.build({
  ...common,
  entryPoints: { 'editor.worker': 'monaco-editor/editor/editor.worker.js' },
  format: 'iife',
});
fs.copyFileSync(path.join(here, 'src', 'index.html'), path.join(dist, 'index.html'));
console.log(`built ${dist}: ${fs.readdirSync(dist).join(', ')}`);
