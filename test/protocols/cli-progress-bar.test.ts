import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { formatBytes, formatClock, formatElapsed } from "../../clients/cli/src/human-units.ts";
import { createProgressBar } from "../../clients/cli/src/progress-bar.ts";

/** The progress bar on a fake terminal and a fake clock. */
const MiB = 1024 * 1024;

function fakeTerminal(columns = 100) {
  const writes: string[] = [];
  return {
    writes,
    columns,
    write(text: string) {
      writes.push(text);
    },
    /** What the terminal shows last: the text after the last carriage return, without escape codes. */
    get screen() {
      const all = writes.join("").replace(/\x1b\[K/g, "");
      return all.slice(all.lastIndexOf("\r") + 1);
    },
  };
}

describe("progress bar", () => {
  beforeEach(() => vi.useFakeTimers({ now: 0 }));
  afterEach(() => vi.useRealTimers());

  const make = (terminal: ReturnType<typeof fakeTerminal>, totalBytes: number | undefined, label = "put weights.bin") =>
    createProgressBar({ label, totalBytes, stream: terminal, now: () => Date.now() });

  it("redraws at most ten times a second, however often the transfer reports", () => {
    const terminal = fakeTerminal();
    const bar = make(terminal, 100 * MiB);
    for (let ms = 1; ms <= 1000; ms++) {
      vi.advanceTimersByTime(1);
      bar.update({ bytes: ms * 10_000, totalBytes: 100 * MiB });
    }
    expect(terminal.writes.length).toBeLessThanOrEqual(10);
    expect(terminal.writes.length).toBeGreaterThanOrEqual(9);
    bar.finish();
  });

  it("shows a bar, percent, bytes of the total, a steady rate and the time left", () => {
    const terminal = fakeTerminal();
    const bar = make(terminal, 10 * MiB);
    // 1 MiB/s for 4 s.
    for (let i = 1; i <= 40; i++) {
      vi.advanceTimersByTime(100);
      bar.update({ bytes: (i * MiB) / 10, totalBytes: 10 * MiB });
    }
    expect(terminal.screen).toBe("put weights.bin [===========>                  ]  39%   3.9 MiB / 10.0 MiB    1.0 MiB/s  ETA 0:06 ");
    expect(terminal.screen.length).toBeLessThan(100);
  });

  it("smooths the rate, and lets it fall while no bytes move", () => {
    const terminal = fakeTerminal();
    const bar = make(terminal, 100 * MiB);
    for (let i = 1; i <= 30; i++) {
      vi.advanceTimersByTime(100);
      bar.update({ bytes: i * 200 * 1024, totalBytes: 100 * MiB }); // 2 MiB/s for 3 s
    }
    expect(terminal.screen).toMatch(/ 2\.0 MiB\/s /);
    // One burst does not swing it: 1 MiB in one tick is 10 MiB/s for that tick.
    vi.advanceTimersByTime(100);
    bar.update({ bytes: 30 * 200 * 1024 + MiB, totalBytes: 100 * MiB });
    vi.advanceTimersByTime(100);
    const afterBurst = Number(/ (\d+\.\d) MiB\/s /.exec(terminal.screen)![1]);
    expect(afterBurst).toBeGreaterThan(2);
    expect(afterBurst).toBeLessThan(4);
    // A stall: the timer keeps drawing, the rate falls and the ETA grows.
    vi.advanceTimersByTime(5000);
    const stalled = / ([\d.]+ [KM]?i?B)\/s {2}ETA (\d+:\d\d)/.exec(terminal.screen)!;
    expect(stalled[1]).toMatch(/KiB|B$/);
    expect(Number(stalled[2]!.split(":")[0])).toBeGreaterThan(1);
    bar.stop();
  });

  it("without a total (standard input) shows bytes and rate only", () => {
    const terminal = fakeTerminal();
    const bar = make(terminal, undefined, "put -");
    for (let i = 1; i <= 20; i++) {
      vi.advanceTimersByTime(100);
      bar.update({ bytes: i * 50 * 1024, totalBytes: undefined });
    }
    expect(terminal.screen).toBe("put -  950.0 KiB  500.0 KiB/s");
    expect(terminal.screen).not.toMatch(/%|ETA|\[/);
    bar.finish();
    expect(terminal.writes.at(-1)).toMatch(/^\rput - {2}1000\.0 KiB in 2\.0 s \(500\.0 KiB\/s\)\x1b\[K\n$/);
  });

  it("ends with the whole time and the mean rate, then draws nothing more", () => {
    const terminal = fakeTerminal();
    const bar = make(terminal, 8 * MiB);
    vi.advanceTimersByTime(2000);
    bar.update({ bytes: 8 * MiB, totalBytes: 8 * MiB });
    vi.advanceTimersByTime(2000);
    bar.finish();
    bar.finish();
    const count = terminal.writes.length;
    expect(terminal.writes.at(-1)).toBe("\rput weights.bin  8.0 MiB in 4.0 s (2.0 MiB/s)\x1b[K\n");
    vi.advanceTimersByTime(5000);
    bar.update({ bytes: 9 * MiB, totalBytes: 8 * MiB });
    expect(terminal.writes.length).toBe(count);
  });

  it("a failed transfer erases its line, so the error starts on a clean one", () => {
    const terminal = fakeTerminal();
    const bar = make(terminal, 8 * MiB);
    vi.advanceTimersByTime(150);
    bar.update({ bytes: MiB, totalBytes: 8 * MiB });
    vi.advanceTimersByTime(100);
    bar.stop();
    expect(terminal.writes.at(-1)).toBe("\r\x1b[K");
    expect(terminal.screen).toBe("");
  });

  it("a resumed transfer that reports fewer bytes does not show a negative rate", () => {
    const terminal = fakeTerminal();
    const bar = make(terminal, 10 * MiB);
    for (let i = 1; i <= 10; i++) {
      vi.advanceTimersByTime(100);
      bar.update({ bytes: i * 100 * 1024, totalBytes: 10 * MiB });
    }
    bar.update({ bytes: 0, totalBytes: 10 * MiB });
    vi.advanceTimersByTime(100);
    bar.update({ bytes: 100 * 1024, totalBytes: 10 * MiB });
    vi.advanceTimersByTime(100);
    expect(terminal.screen).not.toMatch(/-\d/);
    expect(terminal.screen).toMatch(/ETA \d+:\d\d *$/);
    bar.stop();
  });

  it("fits a narrow terminal: the label keeps its end, then the bar gives way; lines never wrap", () => {
    for (const columns of [160, 60, 40, 0]) {
      const terminal = fakeTerminal(columns);
      const bar = make(terminal, 10 * MiB, "put /very/long/path/to/some/deeply/nested/folder/weights-final.bin");
      vi.advanceTimersByTime(100);
      bar.update({ bytes: MiB, totalBytes: 10 * MiB });
      vi.advanceTimersByTime(100);
      bar.finish();
      for (const line of terminal.writes
        .join("")
        .replace(/\x1b\[K/g, "")
        .split(/[\r\n]/)) {
        expect(line.length).toBeLessThan(columns || 80);
      }
      if (columns === 160) expect(terminal.writes[0]).toMatch(/^\rput \/very\/long\/.*weights-final\.bin \[/);
      if (columns === 60) expect(terminal.writes[0]).toMatch(/^\r…[\w/-]*final\.bin +0% /);
    }
  });
});

describe("human units", () => {
  it("formats sizes, clocks and elapsed times", () => {
    expect([0, 512, 1023.6, 1024, 1536, MiB - 10, 12 * MiB, 3 * 1024 * MiB].map(formatBytes)).toEqual([
      "0 B",
      "512 B",
      "1.0 KiB",
      "1.0 KiB",
      "1.5 KiB",
      "1.0 MiB",
      "12.0 MiB",
      "3.0 GiB",
    ]);
    expect([0, 7, 61, 750, 3723].map(formatClock)).toEqual(["0:00", "0:07", "1:01", "12:30", "1:02:03"]);
    expect([0.42, 12.34, 75].map(formatElapsed)).toEqual(["0.4 s", "12.3 s", "1:15"]);
  });
});
