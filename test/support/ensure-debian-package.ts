import { execFile } from "node:child_process";
import { existsSync } from "node:fs";
import { promisify } from "node:util";

const run = promisify(execFile);

/**
 * Makes sure a tool from Debian's packages is on this machine, installing the
 * package when it is missing and we are root (a fresh CI machine); anyone else
 * gets a message saying what to install. Returns the executable's path.
 */
export async function ensureDebianPackage(pkg: string, executable: string, log: (line: string) => void = console.log): Promise<string> {
  if (existsSync(executable)) return executable;
  if (process.platform !== "linux" || process.getuid?.() !== 0 || !existsSync("/usr/bin/apt-get")) {
    throw new Error(`these tests need ${executable}: install it (Debian/Ubuntu: sudo apt-get install -y ${pkg}) and run the tests again`);
  }
  log(`${executable} is missing: installing Debian's package (apt-get install -y ${pkg})…`);
  const env = { ...process.env, DEBIAN_FRONTEND: "noninteractive" };
  const install = () => run("apt-get", ["install", "-y", pkg], { env, maxBuffer: 64 * 1024 * 1024 });
  try {
    await install();
  } catch {
    // The package lists may be missing or stale on a fresh machine.
    await run("apt-get", ["update"], { env, maxBuffer: 64 * 1024 * 1024 });
    try {
      await install();
    } catch (error) {
      const stderr = (error as { stderr?: string }).stderr ?? "";
      throw new Error(`installing ${pkg} with apt-get failed: ${stderr.trim().split("\n").slice(-5).join("\n") || String(error)}`);
    }
  }
  if (!existsSync(executable)) throw new Error(`apt-get installed ${pkg}, but ${executable} is still missing`);
  return executable;
}
