/** One deadline over several calls (a transfer and its resumed attempts): each call is given what is left of it. */
export interface Deadline {
  /** Milliseconds left (at least 1, so a call past it fails with DEADLINE_EXCEEDED); undefined: no deadline. */
  remainingMs(): number | undefined;
  /** Call options with what is left, or `cap` when that is sooner. */
  callOptions(cap?: number): { timeoutMs?: number };
}

export function startDeadline(timeoutMs: number | undefined): Deadline {
  const at = timeoutMs === undefined ? undefined : Date.now() + timeoutMs;
  const remainingMs = () => (at === undefined ? undefined : Math.max(1, at - Date.now()));
  return {
    remainingMs,
    callOptions(cap) {
      const left = remainingMs();
      const timeout = left === undefined ? cap : cap === undefined ? left : Math.min(cap, left);
      return timeout === undefined ? {} : { timeoutMs: timeout };
    },
  };
}
