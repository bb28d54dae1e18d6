/**
 * The Go client's transfer cases (clients/go): its writer uploading and its
 * verified reader downloading through the service, beside the Node SDK's
 * cases and the direct S3 baselines of transfer-cases.ts. The Go side is
 * one long-lived process (clients/go/internal/benchclient, built here with
 * `go build`), driven over its stdin, so the runner reads its CPU time from
 * /proc across each run like the service's: `go_client` in the CPU columns.
 */
import { spawn, spawnSync } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { createInterface } from "node:readline";
import type { TransferCase } from "./bench-runner.ts";

const MiB = 1024 * 1024;

export interface GoClientContext {
  readonly sizeMiB: number;
  readonly url: string;
  readonly token: string;
  readonly root: string;
  readonly serverPid: () => number;
  readonly minioPid: () => number | undefined;
  /** Registers what stops the Go process when the bench ends. */
  readonly onClose: (close: () => void) => void;
}

interface GoAnswer {
  readonly bytes?: number;
  readonly id?: string;
  readonly error?: string;
}

export function goClientCases(context: GoClientContext): TransferCase[] {
  const size = context.sizeMiB * MiB;
  let driver: Promise<{ pid: number; ask: (request: object) => Promise<GoAnswer> }> | undefined;
  const start = () =>
    (driver ??= (async () => {
      const go = ["go", "/usr/local/go/bin/go"].find((candidate) => spawnSync(candidate, ["version"]).status === 0);
      if (!go) throw new Error("the Go client's cases need Go (on PATH or /usr/local/go/bin/go)");
      const bin = mkdtempSync(path.join(os.tmpdir(), "artifactd-bench-go-"));
      context.onClose(() => rmSync(bin, { recursive: true, force: true }));
      const built = spawnSync(go, ["build", "-o", bin, "./internal/benchclient"], { cwd: path.join(context.root, "clients/go"), encoding: "utf8" });
      if (built.status !== 0) throw new Error(`go build of the bench client failed: ${built.stderr}`);
      const child = spawn(path.join(bin, "benchclient"), [context.url, context.token], { stdio: ["pipe", "pipe", "inherit"] });
      context.onClose(() => child.kill());
      const answers = createInterface({ input: child.stdout })[Symbol.asyncIterator]();
      let queue = Promise.resolve<unknown>(undefined);
      const ask = (request: object) => {
        const asked = queue.then(async () => {
          child.stdin.write(`${JSON.stringify(request)}\n`);
          const next = await answers.next();
          if (next.done) throw new Error("the Go bench client exited");
          const answer = JSON.parse(next.value) as GoAnswer;
          if (answer.error) throw new Error(`Go client: ${answer.error}`);
          return answer;
        });
        queue = asked.catch(() => {});
        return asked;
      };
      return { pid: child.pid!, ask };
    })());
  const goPid = () => ({ server: context.serverPid(), minio: context.minioPid(), go_client: pidOf() });
  let startedPid: number | undefined;
  const pidOf = () => startedPid;
  const prepare = async () => void (startedPid = (await start()).pid);
  const expectBytes = (what: string, bytes: number | undefined) => {
    if (bytes !== size) throw new Error(`${what}: ${bytes} bytes, expected ${size}`);
    return bytes;
  };
  let downloadId: Promise<string> | undefined;
  // Salt 0: the content the other download cases read, so the service stores it once.
  const download = () => (downloadId ??= start().then(async ({ ask }) => (await ask({ op: "upload", mib: context.sizeMiB, salt: 0 })).id!));
  const downloadCase = (key: string, label: string, direct: boolean): TransferCase => ({
    key,
    label,
    processes: goPid,
    prepare: async () => {
      await prepare();
      await download();
    },
    run: async () => expectBytes(label, (await (await start()).ask({ op: "download", id: await download(), direct })).bytes),
  });
  return [
    {
      key: "go_upload",
      label: "service upload (Go client writer, io.Copy)",
      processes: goPid,
      sampleRssOf: context.serverPid,
      prepare,
      // Salts apart from transfer-cases.ts's (round × 16 + case < 100): each round sends new content.
      run: async (roundNumber) => expectBytes("Go upload", (await (await start()).ask({ op: "upload", mib: context.sizeMiB, salt: 100 + roundNumber })).bytes),
    },
    downloadCase("go_download", "service download (Go client, verified)", false),
    downloadCase("go_download_direct_mode", "service download, direct from storage (Go client, verified)", true),
  ];
}
