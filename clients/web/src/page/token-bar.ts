import { byId } from "./dom.ts";

const TOKEN_KEY = "artifactd.token";

/**
 * The API token. A token is a bearer secret, so by default it is kept in
 * sessionStorage: it survives reloads of this tab and is gone when the
 * browser session ends (a new window or profile does not have it). Ticking
 * "Remember" keeps it in localStorage instead, for this origin, until it is
 * unticked — which forgets it there at once, leaving it to this tab's
 * session — or replaced. It is never in both.
 */
export function createTokenBar(onChange: () => void) {
  const form = byId<HTMLFormElement>("token-form");
  const input = byId<HTMLInputElement>("token");
  const remember = byId<HTMLInputElement>("token-remember");
  const remembered = read(localStorageOrNone());
  let token = remembered || read(sessionStorageOrNone());
  input.value = token;
  remember.checked = remembered !== "";

  /** Puts the token where the box says, and removes it from the other place. */
  const store = () => {
    const [keep, drop] = remember.checked ? [localStorageOrNone(), sessionStorageOrNone()] : [sessionStorageOrNone(), localStorageOrNone()];
    write(drop, "");
    write(keep, token);
  };
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    token = input.value.trim();
    store();
    onChange();
  });
  // Takes effect at once for the token in use: unticking must not wait for a Save to forget it.
  remember.addEventListener("change", store);
  return { token: () => token };
}

// Storage may be disabled (privacy settings, sandboxed frames): then the token lasts until the page is closed.
function localStorageOrNone(): Storage | undefined {
  try {
    return localStorage;
  } catch {
    return undefined;
  }
}

function sessionStorageOrNone(): Storage | undefined {
  try {
    return sessionStorage;
  } catch {
    return undefined;
  }
}

function read(storage: Storage | undefined): string {
  try {
    return storage?.getItem(TOKEN_KEY) ?? "";
  } catch {
    return "";
  }
}

/** Stores `token`, or removes the entry when it is empty. */
function write(storage: Storage | undefined, token: string): void {
  try {
    if (token) storage?.setItem(TOKEN_KEY, token);
    else storage?.removeItem(TOKEN_KEY);
  } catch {
    // Full or disabled: the token still works for this page.
  }
}
