// ESLint (flat config) for the browser modules in ui/static/ and the JS unit tests in tests/js/.
// `make test` runs it (scripts/lint_js.sh) before the Python tiers; prettier formats (.prettierrc).
"use strict";
const js = require("@eslint/js");
const globals = require("globals");

module.exports = [
  { ignores: ["node_modules/**", ".venv/**", ".tools/**", "artifacts/**", "data/**"] },
  js.configs.recommended,
  {
    // ES modules: main.js (the entry the page head imports) and everything it imports.
    files: ["ui/static/**/*.js"],
    languageOptions: {
      ecmaVersion: 2022,
      sourceType: "module",
      globals: { ...globals.browser },
    },
  },
  {
    // Not a module: the js_on_load body Gradio wraps in a function with these arguments (ui/widgets.py BOOT_JS).
    files: ["ui/static/boot.js"],
    languageOptions: { sourceType: "script", globals: { element: "readonly", props: "readonly", server: "readonly" } },
  },
  {
    // node --test: ES modules importing the browser modules that need no DOM (tests/js/).
    files: ["tests/js/**/*.mjs"],
    languageOptions: { ecmaVersion: 2022, sourceType: "module", globals: { ...globals.node } },
  },
  {
    files: ["eslint.config.js"],
    languageOptions: { ecmaVersion: 2022, sourceType: "commonjs", globals: { ...globals.node } },
  },
];
