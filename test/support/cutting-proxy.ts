import net from "node:net";

/**
 * A TCP relay between a client and a test server on loopback that counts
 * the bytes crossing it and can cut every connection on command or after a
 * number of bytes: how the client tests see bytes on the wire (a cache hit
 * moves none) and drop a connection mid-transfer (resume).
 */
export interface CuttingProxy {
  /** http://127.0.0.1:<port>, to give clients instead of the server's URL. */
  readonly url: string;
  /** Bytes relayed so far, client → server and server → client. */
  readonly bytes: { readonly up: number; readonly down: number };
  /** Zeroes the byte counters. */
  resetCounts(): void;
  /**
   * Destroys every open connection once `bytes` more bytes have gone in the
   * given direction (once; arm again for another cut). Resolves when it has cut.
   */
  cutAfter(direction: "up" | "down", bytes: number): Promise<void>;
  /**
   * Pauses the client → server relay (as pauseUp) once `bytes` more bytes
   * have gone up. Resolves when it has paused: the server then holds all it
   * will get until resumeUp, so a test can wait for it to settle and cut at
   * a known point instead of racing the server.
   */
  pauseUpAfter(bytes: number): Promise<void>;
  /** Destroys every open connection now. */
  cutNow(): void;
  /**
   * Stops relaying client → server (the relay stops reading from clients, so
   * their sockets fill up) until resumeUp: a server that does not read.
   */
  pauseUp(): void;
  resumeUp(): void;
  /** Connections accepted so far. */
  readonly connections: number;
  close(): Promise<void>;
}

export async function startCuttingProxy(targetUrl: string): Promise<CuttingProxy> {
  const target = new URL(targetUrl);
  const sockets = new Set<net.Socket>();
  const bytes = { up: 0, down: 0 };
  let connections = 0;
  let upPaused = false;
  const clientSockets = new Set<net.Socket>();
  let armed: { direction: "up" | "down"; at: number; act: () => void } | undefined;

  const cutNow = () => {
    for (const socket of sockets) socket.destroy();
    sockets.clear();
  };
  const pauseUp = () => {
    upPaused = true;
    for (const socket of clientSockets) socket.pause();
  };
  const count = (direction: "up" | "down", n: number) => {
    bytes[direction] += n;
    if (armed && armed.direction === direction && bytes[direction] >= armed.at) {
      const { act } = armed;
      armed = undefined;
      act();
    }
  };

  const server = net.createServer((client) => {
    connections++;
    const upstream = net.connect(Number(target.port), target.hostname);
    sockets.add(client);
    sockets.add(upstream);
    clientSockets.add(client);
    if (upPaused) client.pause();
    const closeBoth = () => {
      client.destroy();
      upstream.destroy();
      sockets.delete(client);
      sockets.delete(upstream);
      clientSockets.delete(client);
    };
    client.on("data", (data: Buffer) => {
      count("up", data.byteLength);
      if (!upstream.destroyed && !upstream.write(data)) client.pause();
    });
    upstream.on("drain", () => !upPaused && client.resume());
    upstream.on("data", (data: Buffer) => {
      count("down", data.byteLength);
      if (!client.destroyed && !client.write(data)) upstream.pause();
    });
    client.on("drain", () => upstream.resume());
    client.on("close", closeBoth);
    upstream.on("close", closeBoth);
    client.on("error", closeBoth);
    upstream.on("error", closeBoth);
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const port = (server.address() as net.AddressInfo).port;

  return {
    url: `http://127.0.0.1:${port}`,
    bytes,
    get connections() {
      return connections;
    },
    resetCounts() {
      bytes.up = 0;
      bytes.down = 0;
    },
    cutAfter(direction, n) {
      return new Promise<void>((resolve) => (armed = { direction, at: bytes[direction] + n, act: () => (cutNow(), resolve()) }));
    },
    pauseUpAfter(n) {
      return new Promise<void>((resolve) => (armed = { direction: "up", at: bytes.up + n, act: () => (pauseUp(), resolve()) }));
    },
    cutNow,
    pauseUp,
    resumeUp() {
      upPaused = false;
      for (const socket of clientSockets) socket.resume();
    },
    async close() {
      cutNow();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
