// Bundles the web UI's pages (SIP.js included) into one script each: `npm run build:web`
// (make web) writes them to services/api/web/dist, which the api serves under /ui/;
// `node services/api/web/build.mjs <dir>` writes them elsewhere (the tests do).
import { build } from "esbuild";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const outdir = process.argv[2] ?? join(here, "dist");

await build({
  entryPoints: ["softphone", "calls", "trunks"].map((page) => join(here, "src", `${page}.ts`)),
  bundle: true,
  format: "iife",
  platform: "browser",
  target: "chrome110",
  minify: true,
  sourcemap: "linked",
  outdir,
  logLevel: "warning",
});
