import { randomUUID } from "node:crypto";
import { chmod, mkdir, open, rename, rm } from "node:fs/promises";
import path from "node:path";

/**
 * Owner-only folders and files for what the server keeps on disk: the
 * embedded database, local blobs and the bootstrap token are readable by
 * whoever can read the data folder.
 *
 * A `mode` given to mkdir or writeFile applies only when they create the
 * entry (and is narrowed by the umask); a folder or file that already
 * exists — made by an earlier version, by hand, or by a deployment script —
 * keeps its 0755 / 0644. So the mode is set explicitly every time.
 */
export const PRIVATE_DIR_MODE = 0o700;
export const PRIVATE_FILE_MODE = 0o600;

/** Creates `dir` (and missing parents) if needed and makes it 0700, whatever it was before. */
export async function ensurePrivateDir(dir: string): Promise<void> {
  await mkdir(dir, { recursive: true, mode: PRIVATE_DIR_MODE });
  await chmod(dir, PRIVATE_DIR_MODE);
}

/**
 * Writes `data` to `file` with mode 0600. The content goes to a new file
 * beside it, created 0600 before the first byte, and is renamed over the
 * target: a reader never sees it partial, and no moment exists in which the
 * secret sits in a file with the old, wider mode.
 */
export async function writePrivateFile(file: string, data: string | Uint8Array): Promise<void> {
  const temp = path.join(path.dirname(file), `.${path.basename(file)}.${randomUUID()}.tmp`);
  const handle = await open(temp, "wx", PRIVATE_FILE_MODE);
  try {
    await handle.chmod(PRIVATE_FILE_MODE); // the umask may have narrowed it; never widened it
    await handle.writeFile(data);
    await handle.sync();
    await handle.close();
    await rename(temp, file);
  } catch (error) {
    await handle.close().catch(() => {});
    await rm(temp, { force: true });
    throw error;
  }
}

/** Makes an existing `file` 0600; a missing one is left missing. */
export async function restrictFileToOwner(file: string): Promise<void> {
  try {
    await chmod(file, PRIVATE_FILE_MODE);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== "ENOENT") throw error;
  }
}
