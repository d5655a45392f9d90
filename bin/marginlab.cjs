#!/usr/bin/env node
// The `marginlab` command: TypeScript sources run directly through tsx (no build step).
// Both hooks: require() of .ts files, and import() of them (the CLI loads commands lazily).
require("tsx/cjs/api").register();
require("tsx/esm/api").register();
require("../src/cli.ts");
