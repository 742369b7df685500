// ESLint (flat config) for the browser scripts in ui/static/ and the JS unit tests in tests/js/.
// `make test` runs it (scripts/lint_js.sh) before the Python tiers; prettier formats (.prettierrc).
"use strict";
const js = require("@eslint/js");
const globals = require("globals");

module.exports = [
  { ignores: ["node_modules/**", ".venv/**", ".tools/**", "artifacts/**", "data/**"] },
  js.configs.recommended,
  {
    // Classic scripts loaded in order by the page head (ui/widgets.py SCRIPTS): they share `window.WT`.
    files: ["ui/static/**/*.js"],
    languageOptions: {
      ecmaVersion: 2022,
      sourceType: "script",
      globals: { ...globals.browser },
    },
  },
  {
    // The js_on_load body Gradio wraps in a function with these arguments (ui/widgets.py BOOT_JS).
    files: ["ui/static/boot.js"],
    languageOptions: { globals: { element: "readonly", props: "readonly", server: "readonly" } },
  },
  {
    // Loaded by the page (WT.logic) and by node's test runner (module.exports).
    files: ["ui/static/desk_logic.js"],
    languageOptions: { globals: { module: "readonly" } },
  },
  {
    files: ["tests/js/**/*.js", "eslint.config.js"],
    languageOptions: { ecmaVersion: 2022, sourceType: "commonjs", globals: { ...globals.node } },
  },
];
