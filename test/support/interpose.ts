/**
 * Forcing an interleaving instead of hoping for it: a store method of a
 * running app is replaced, on that one instance the service calls through,
 * by a wrapper that can stop a call at a gate, see its outcome or fail it,
 * while the rest of the service runs unchanged against the real store.
 */

/** A point calls wait at until the test opens it. `reached` resolves once `expected` calls are waiting. */
export interface Gate {
  wait(): Promise<void>;
  open(): void;
  readonly reached: Promise<void>;
  readonly waiting: number;
}

export function gate(expected = 1): Gate {
  let open!: () => void;
  const opened = new Promise<void>((resolve) => (open = resolve));
  let arrived!: () => void;
  const reached = new Promise<void>((resolve) => (arrived = resolve));
  let waiting = 0;
  return {
    async wait() {
      if (++waiting >= expected) arrived();
      await opened;
    },
    open,
    reached,
    get waiting() {
      return waiting;
    },
  };
}

type Method<T, K extends keyof T> = T[K] extends (...args: infer A) => infer R ? (...args: A) => R : never;

/**
 * Replaces `target[name]` with `wrapper(original, ...args)` until the returned
 * restore function is called. `original` is bound to `target`.
 */
export function interpose<T extends object, K extends keyof T>(
  target: T,
  name: K,
  wrapper: (original: Method<T, K>, ...args: Parameters<Method<T, K>>) => ReturnType<Method<T, K>>,
): () => void {
  const had = Object.hasOwn(target, name);
  const previous = target[name];
  const original = (previous as (...args: unknown[]) => unknown).bind(target) as Method<T, K>;
  target[name] = ((...args: Parameters<Method<T, K>>) => wrapper(original, ...args)) as T[K];
  return () => {
    if (had) target[name] = previous;
    else delete target[name];
  };
}

/**
 * Stops each call of `target[name]` that `matches` its arguments at `at`
 * until the test opens it, then lets it run and pushes its outcome to
 * `outcomes`; other calls pass straight through. Returns the restore
 * function, as interpose does.
 */
export function gateCalls<T extends object, K extends keyof T>(
  target: T,
  name: K,
  matches: (...args: Parameters<Method<T, K>>) => boolean,
  at: Gate,
  outcomes: Awaited<ReturnType<Method<T, K>>>[],
): () => void {
  return interpose(target, name, (async (original: Method<T, K>, ...args: Parameters<Method<T, K>>) => {
    if (!matches(...args)) return original(...args);
    await at.wait();
    const outcome = await original(...args);
    outcomes.push(outcome as Awaited<ReturnType<Method<T, K>>>);
    return outcome;
  }) as unknown as (original: Method<T, K>, ...args: Parameters<Method<T, K>>) => ReturnType<Method<T, K>>);
}

/** Lets every call of `target[name]` run, pushing the outcome of each that `matches` its arguments to `outcomes`; returns restore. */
export function recordCalls<T extends object, K extends keyof T>(
  target: T,
  name: K,
  matches: (...args: Parameters<Method<T, K>>) => boolean,
  outcomes: Awaited<ReturnType<Method<T, K>>>[],
): () => void {
  return interpose(target, name, (async (original: Method<T, K>, ...args: Parameters<Method<T, K>>) => {
    const outcome = await original(...args);
    if (matches(...args)) outcomes.push(outcome as Awaited<ReturnType<Method<T, K>>>);
    return outcome;
  }) as unknown as (original: Method<T, K>, ...args: Parameters<Method<T, K>>) => ReturnType<Method<T, K>>);
}
