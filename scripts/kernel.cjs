#!/usr/bin/env node
// The marginlab Jupyter kernel: tslab, started in the project root whatever folder the notebook is in.
// tslab compiles imported .ts files only under its working directory (its TypeScript rootDir), so
// notebooks in notebooks/ import the library as "./src" and experiments as "./experiments/...".
const path = require("node:path");

process.chdir(process.env.MARGINLAB_ROOT || path.resolve(__dirname, ".."));
require("tslab/dist/main.js").main();
