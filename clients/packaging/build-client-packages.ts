/**
 * Builds the client packages for npm: `npm run build:clients` (and, with
 * `--pack <folder>`, `npm run pack:clients`, which also writes their tarballs).
 *
 * In this repository the packages are workspaces whose `exports` point at
 * their TypeScript source, which the service, the CLI and the tests run with
 * Node 24's type stripping, no build step between an edit and a test. A
 * published package cannot ask that of its users (Node 20 and 22, bundlers),
 * so each one is built beside its source into `npm-package/` — compiled
 * JavaScript with declarations in `dist/`, and a package.json derived from
 * the source one whose `exports` name those files — and that folder is what
 * is packed and published. The source manifests stay `private` (and refuse
 * `npm pack`), so the source folders cannot be published by mistake.
 *
 * @artifactd/api is a package of its own that the two clients depend on by
 * exact version, not code bundled into each: the generated protos are one
 * copy, so an app using both clients (or the protos themselves) shares one
 * set of message types and enums.
 */
import { execFileSync } from "node:child_process";
import { cpSync, mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import path from "node:path";

const root = path.resolve(import.meta.dirname, "../..");
const tsc = path.join(root, "node_modules/typescript/bin/tsc");

interface SourceManifest {
  readonly name: string;
  readonly version: string;
  readonly description: string;
  readonly engines?: Record<string, string>;
  readonly dependencies?: Record<string, string>;
}

/** One package: its source folder, and the exports of its published form (besides "." → dist/index.js). */
interface ClientPackage {
  readonly folder: string;
  /** Folders copied into the package as they are (generated code, already JavaScript with declarations). */
  readonly copied: readonly string[];
  readonly extraExports: Readonly<Record<string, string>>;
}

const PACKAGES: readonly ClientPackage[] = [
  { folder: "clients/api", copied: ["gen"], extraExports: { "./artifacts/*": "./gen/artifacts/*", "./grpc/*": "./gen/grpc/*" } },
  { folder: "clients/node", copied: [], extraExports: {} },
  { folder: "clients/web", copied: [], extraExports: {} },
];

const PACKAGE_FOLDER = "npm-package";

/** Builds every client package into its npm-package/ folder; returns those folders. */
export function buildClientPackages(): string[] {
  const versions = Object.fromEntries(PACKAGES.map((pkg) => [readManifest(pkg).name, readManifest(pkg).version]));
  return PACKAGES.map((pkg) => buildPackage(pkg, versions));
}

/** Builds every package and packs each into `destination`; returns the tarballs' paths (api first). */
export function packClientPackages(destination: string): string[] {
  mkdirSync(destination, { recursive: true });
  return buildClientPackages().map((folder) => {
    const [packed] = JSON.parse(execFileSync("npm", ["pack", folder, "--pack-destination", destination, "--json"], { cwd: root, encoding: "utf8" })) as Array<{
      filename: string;
    }>;
    return path.join(destination, packed!.filename);
  });
}

function buildPackage(pkg: ClientPackage, versions: Readonly<Record<string, string>>): string {
  const source = path.join(root, pkg.folder);
  const out = path.join(source, PACKAGE_FOLDER);
  rmSync(out, { recursive: true, force: true });
  execFileSync(process.execPath, [tsc, "-p", path.join(source, "tsconfig.build.json")], { cwd: root, stdio: "inherit" });
  for (const folder of pkg.copied) cpSync(path.join(source, folder), path.join(out, folder), { recursive: true });
  const manifest = readManifest(pkg);
  const published = {
    name: manifest.name,
    version: manifest.version,
    description: manifest.description,
    type: "module",
    // ESM only. "default" as well as "import": Node ≥ 20.19 and ≥ 22.12 load ES modules from require() too.
    exports: { ".": { types: "./dist/index.d.ts", import: "./dist/index.js", default: "./dist/index.js" }, ...pkg.extraExports },
    files: ["dist", ...pkg.copied],
    ...(manifest.engines ? { engines: manifest.engines } : {}),
    // Sibling packages by the exact version built with them: they are released together.
    dependencies: Object.fromEntries(Object.entries(manifest.dependencies ?? {}).map(([name, range]) => [name, versions[name] ?? range])),
  };
  writeFileSync(path.join(out, "package.json"), `${JSON.stringify(published, null, 2)}\n`);
  return out;
}

function readManifest(pkg: ClientPackage): SourceManifest {
  return JSON.parse(readFileSync(path.join(root, pkg.folder, "package.json"), "utf8")) as SourceManifest;
}

if (import.meta.main) {
  const packAt = process.argv.indexOf("--pack");
  if (packAt === -1) {
    for (const folder of buildClientPackages()) console.log(path.relative(root, folder));
  } else {
    const destination = path.resolve(process.argv[packAt + 1] ?? path.join(root, "clients/tarballs"));
    for (const tarball of packClientPackages(destination)) console.log(path.relative(process.cwd(), tarball));
  }
}
