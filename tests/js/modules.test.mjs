// The browser modules of ui/static/ as a whole: each relative import names a file the static route
// serves, the entry (main.js) reaches every module, and only main.js touches window.WT (the bridge
// to boot.js, which Gradio runs as a function body and so cannot import).
import { test } from "node:test";
import assert from "node:assert/strict";
import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";

const STATIC = path.join(path.dirname(fileURLToPath(import.meta.url)), "..", "..", "ui", "static");
const VENDOR = { "vendor/livekit-client.esm.mjs": "node_modules/livekit-client/dist/livekit-client.esm.mjs" };

function modules(dir = STATIC) {
  return fs.readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const full = path.join(dir, e.name);
    if (e.isDirectory()) return modules(full);
    return e.name.endsWith(".js") && e.name !== "boot.js" ? [path.relative(STATIC, full)] : [];
  });
}

function imports(name) {
  const src = fs.readFileSync(path.join(STATIC, name), "utf8");
  return Array.from(src.matchAll(/^import .* from "([^"]+)";/gm), (m) => path.posix.join(path.posix.dirname(name), m[1]));
}

test("every import is a relative path to a module that exists", () => {
  for (const name of modules()) {
    for (const target of imports(name)) {
      if (VENDOR[target]) continue;
      assert.ok(fs.existsSync(path.join(STATIC, target)), `${name} imports ${target}`);
    }
  }
  assert.ok(modules().some((name) => imports(name).includes("vendor/livekit-client.esm.mjs")));
});

test("main.js reaches every module of ui/static", () => {
  const seen = new Set();
  const visit = (name) => {
    if (seen.has(name) || VENDOR[name]) return;
    seen.add(name);
    imports(name).forEach(visit);
  };
  visit("main.js");
  assert.deepEqual(
    modules().filter((name) => !seen.has(name)),
    [],
  );
});

test("only main.js sets window.WT, and no module is an IIFE or reads a global of another script", () => {
  for (const name of modules()) {
    const src = fs.readFileSync(path.join(STATIC, name), "utf8");
    if (name !== "main.js") assert.doesNotMatch(src, /window\.WT|\bWT\./, name);
    assert.doesNotMatch(src, /^\(function/m, name);
    assert.doesNotMatch(src, /window\.LivekitClient/, name);
  }
});
