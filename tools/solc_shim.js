#!/usr/bin/env node
// A solc command line backed by solc-js (npm `solc`), shaped for py-solc-x.
//
// py-solc-x runs `BIN --version` and `BIN --standard-json [--base-path P] [--allow-paths A]`
// with the input JSON on stdin. The stock `solcjs` command cannot serve it (it prints a notice
// before the JSON and cuts piped output at 64 KiB because it calls process.exit right after
// writing), so this script answers those two forms, resolves imports from the base path and
// node_modules, writes with process.stdout.write and lets Node exit on its own.
'use strict';
const fs = require('fs');
const path = require('path');
const solc = require('solc');

const args = process.argv.slice(2);

function option(name) {
  const i = args.indexOf(name);
  return i >= 0 && i + 1 < args.length ? args[i + 1] : null;
}

if (args.includes('--version')) {
  process.stdout.write('solc, the solidity compiler commandline interface\nVersion: ' + solc.version() + '\n');
} else if (args.includes('--standard-json')) {
  const basePath = option('--base-path') || process.cwd();
  const roots = [basePath, path.join(__dirname, '..', 'node_modules')];
  const findImports = (importPath) => {
    for (const root of roots) {
      const candidate = path.resolve(root, importPath);
      if (fs.existsSync(candidate)) {
        return { contents: fs.readFileSync(candidate, 'utf8') };
      }
    }
    return { error: 'File not found: ' + importPath };
  };
  const input = fs.readFileSync(0, 'utf8');
  process.stdout.write(solc.compile(input, { import: findImports }));
} else {
  process.stderr.write('usage: solc --version | solc --standard-json [--base-path P] [--allow-paths A] < input.json\n');
  process.exitCode = 2;
}
