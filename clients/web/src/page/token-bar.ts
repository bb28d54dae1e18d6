import { byId } from "./dom.ts";

const TOKEN_KEY = "artifactd.token";

/**
 * The API token, kept in localStorage so the page remembers it. A token is a
 * bearer secret: it stays in this browser's storage for this origin only.
 */
export function createTokenBar(onChange: () => void) {
  const form = byId<HTMLFormElement>("token-form");
  const input = byId<HTMLInputElement>("token");
  let token = read();
  input.value = token;
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    token = input.value.trim();
    try {
      if (token) localStorage.setItem(TOKEN_KEY, token);
      else localStorage.removeItem(TOKEN_KEY);
    } catch {
      // Storage disabled: the token lasts until the page is closed.
    }
    onChange();
  });
  return { token: () => token };
}

function read(): string {
  try {
    return localStorage.getItem(TOKEN_KEY) ?? "";
  } catch {
    return "";
  }
}
