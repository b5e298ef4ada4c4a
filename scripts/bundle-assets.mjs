// Copy the UI's front-end files from an installed node_modules into upload_service/static/vendor/, as
// upload_service/assets.json lists them (npm package, file in the package, file in the bundle, SRI hash, CDN URL).
//   node scripts/bundle-assets.mjs [--node-modules DIR] [--update-manifest]
// Without --update-manifest every file must be the version and hash the manifest pins (the wheel build's hook,
// hatch_build.py, runs it so). scripts/build-assets passes --update-manifest after `npm ci`, which records the
// versions, hashes and CDN URLs of package-lock.json's packages (commit assets.json when it changes).
import { createHash } from "node:crypto";
import { copyFileSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const root = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const args = process.argv.slice(2);
const at = args.indexOf("--node-modules");
const nodeModules = resolve(at >= 0 ? args[at + 1] : join(root, "node_modules"));
const update = args.includes("--update-manifest");
const manifestPath = join(root, "upload_service", "assets.json");
const manifest = JSON.parse(readFileSync(manifestPath, "utf8"));

for (const [name, entry] of Object.entries(manifest)) {
  const packageDir = join(nodeModules, entry.package);
  const version = JSON.parse(readFileSync(join(packageDir, "package.json"), "utf8")).version;
  const source = readFileSync(join(packageDir, entry.source));
  const integrity = "sha384-" + createHash("sha384").update(source).digest("base64");
  if (update) {
    Object.assign(entry, { version, integrity, cdn: `https://cdn.jsdelivr.net/npm/${entry.package}@${version}/${entry.source}` });
  } else if (version !== entry.version || integrity !== entry.integrity) {
    console.error(`bundle-assets: ${entry.package} ${version} (${integrity}) is not what assets.json pins ` +
                  `(${entry.version}, ${entry.integrity}): run scripts/build-assets and commit assets.json`);
    process.exit(1);
  }
  const target = join(root, "upload_service", "static", entry.file);
  mkdirSync(dirname(target), { recursive: true });
  copyFileSync(join(packageDir, entry.source), target);
  console.log(`bundle-assets: ${name}: ${entry.package} ${version} -> upload_service/static/${entry.file} (${integrity})`);
}
if (update) writeFileSync(manifestPath, JSON.stringify(manifest, null, 2) + "\n");
