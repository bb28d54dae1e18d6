/**
 * Renews a heartbeat, lease or claim every `everyMs` while work runs.
 *
 * A renewal that throws (the database unreachable for a moment) is tried
 * again at the next tick: the hold lapses only if the outage outlasts it. One
 * that answers false means the hold is gone (taken over, reclaimed): `lost`
 * turns true and the work must stop without recording anything.
 */
export interface KeepAlive {
  readonly lost: boolean;
  stop(): void;
}

export function keepAlive(renew: () => Promise<boolean>, everyMs: number): KeepAlive {
  let lost = false;
  let renewing = false;
  const timer = setInterval(() => {
    if (renewing || lost) return;
    renewing = true;
    renew()
      .then((held) => {
        if (!held) lost = true;
      })
      .catch(() => {})
      .finally(() => (renewing = false));
  }, everyMs);
  timer.unref();
  return {
    get lost() {
      return lost;
    },
    stop: () => clearInterval(timer),
  };
}
