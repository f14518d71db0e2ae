// Builds the demo page into web/dist (committed: the Rust server embeds these files, so
// `cargo build` needs no Node). `--check` builds in memory and fails if dist/ is stale.
//   npm run build:web        npm run check:web

import * as esbuild from 'esbuild';
import { readFileSync, writeFileSync, mkdirSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const dist = path.join(here, 'dist');
const check = process.argv.includes('--check');

const result = await esbuild.build({
  entryPoints: [path.join(here, 'src/main.js')],
  bundle: true,
  minify: true,
  format: 'iife',
  target: ['es2020'],
  outfile: path.join(dist, 'app.js'),
  legalComments: 'eof',
  charset: 'utf8',
  write: false,
  logLevel: 'warning',
});

const files = new Map(result.outputFiles.map((f) => [path.basename(f.path), f.text]));
files.set('index.html', readFileSync(path.join(here, 'src/index.html'), 'utf8'));

if (check) {
  const stale = [...files].filter(([name, text]) => {
    try {
      return readFileSync(path.join(dist, name), 'utf8') !== text;
    } catch {
      return true;
    }
  });
  if (stale.length) {
    console.error(`web/dist is stale (${stale.map(([n]) => n).join(', ')}): run \`npm run build:web\` in client-examples and commit web/dist`);
    process.exit(1);
  }
  console.log('web/dist is up to date');
} else {
  mkdirSync(dist, { recursive: true });
  for (const [name, text] of files) {
    writeFileSync(path.join(dist, name), text);
    console.log(`web/dist/${name}  ${(Buffer.byteLength(text) / 1024).toFixed(1)} KiB`);
  }
}
