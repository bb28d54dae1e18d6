import { fileURLToPath } from "node:url";
import { defineConfig } from "vite";

/**
 * Builds the web page into clients/web/dist, which the service serves at "/"
 * (src/transport/web-page-route.ts). Run from the repository root:
 * `npm run build:web`.
 *
 * No inline scripts or styles end up in the output, so the page runs under
 * a CSP without 'unsafe-inline'; the BLAKE3 worker is its own module file.
 */
const root = fileURLToPath(new URL(".", import.meta.url));

export default defineConfig({
  root,
  base: "/",
  logLevel: "warn",
  build: {
    outDir: "dist",
    emptyOutDir: true,
    target: "es2022",
    // Inlined assets would be data: URLs; keep every asset a file.
    assetsInlineLimit: 0,
    modulePreload: { polyfill: false },
    sourcemap: false,
  },
  worker: { format: "es" },
});
