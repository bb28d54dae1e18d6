import { LATEST_ALIAS } from "@artifactd/api";
import type { Artifact } from "@artifactd/api/artifacts/v1/artifact_pb.js";
import type { AliasMove } from "@artifactd/api/artifacts/v1/artifact_service_pb.js";
import { Code, ConnectError } from "@connectrpc/connect";
import type { WebArtifactClient } from "../web-artifact-client.ts";
import { artifactHref, h } from "./dom.ts";
import { errorMessage, formatStatus, formatTime, versionedName } from "./format.ts";
import { formatMetric } from "./metric-values.ts";

/** Versions per ListVersions call; "More versions" asks for the next page. */
export const VERSIONS_PAGE_SIZE = 10;
/** Alias moves per ListAliasHistory call; "More moves" asks for the next page. */
export const ALIAS_HISTORY_PAGE_SIZE = 10;

/** A message for the versions panel after a redraw: what was done, or why it was not. */
export interface VersionsNote {
  readonly text: string;
  readonly failed: boolean;
}

/** An alias the service keeps by itself (`latest`) is shown but never offered to move or remove. */
function settable(alias: string): boolean {
  return alias !== LATEST_ALIAS;
}

/** The version and alias badges of a versioned artifact; nothing for one saved without versioning. */
export function versionBadges(artifact: Artifact): HTMLElement | null {
  if (artifact.version === 0n) return null;
  return h(
    "p",
    { id: "version-badges", class: "badges" },
    h("span", { class: "badge version", "data-version": String(artifact.version) }, `v${artifact.version}`),
    ...artifact.aliases.map((alias) => h("span", { class: "badge alias", "data-alias": alias }, alias)),
  );
}

/**
 * The "Versions" panel of a versioned artifact's view: the name's versions,
 * newest first (deleted ones too, marked), a page at a time; the alias
 * actions (move an alias to this version, remove one), each confirmed in the
 * page; and the alias history below.
 *
 * A move is a compare-and-set: SetAlias carries expected_artifact_id, the
 * version this page last saw the alias on (in the versions listed or, for
 * one not among them, the newest move in the history loaded; "" when it saw
 * none). If someone moved it meanwhile the server answers ABORTED: the view
 * is redrawn from the server (`onChanged`) with the refusal said plainly, so
 * the next choice is made on what is there now.
 */
export function createVersionsPanel(
  client: WebArtifactClient,
  artifact: Artifact,
  signal: AbortSignal,
  onChanged: (artifact: Artifact, note: VersionsNote) => void,
  note?: VersionsNote,
): HTMLElement {
  const name = versionedName(artifact);
  const request = { project: artifact.project, name: artifact.name };
  // The key metric of each version is the one the chart shows first: this artifact's first by name.
  const keyMetric = Object.keys(artifact.metrics).sort((a, b) => a.localeCompare(b))[0];
  /** Where this page last saw each alias of the name: alias → the artifact id and version. */
  const seen = new Map<string, { id: string; version: bigint }>();
  /** Aliases the history told about (newest move first), for those no listed version carries. */
  const fromHistory = new Map<string, { id: string; version: bigint }>();
  const historyAliases = new Set<string>();

  const result = h("p", { id: "alias-result", role: "status", class: "muted", hidden: !note || note.failed }, note && !note.failed ? note.text : "");
  const failure = h("p", { id: "alias-error", class: "error", role: "alert", hidden: !note?.failed }, note?.failed ? note.text : "");

  const rows = h("tbody", {});
  const table = h(
    "table",
    { id: "versions-table", class: "versions" },
    h(
      "thead",
      {},
      h(
        "tr",
        {},
        h("th", {}, "Version"),
        h("th", {}, "Aliases"),
        h("th", {}, "Status"),
        h("th", {}, "Created"),
        keyMetric ? h("th", { class: "num", "data-metric": keyMetric }, keyMetric) : null,
      ),
    ),
    rows,
  );
  const versionsStatus = h("p", { id: "versions-status", class: "muted", role: "status" }, "Loading…");
  const moreVersions = h("button", { id: "versions-more", type: "button", class: "secondary", hidden: true }, "More versions");
  let versionsToken = "";

  const historyRows = h("tbody", {});
  const history = h(
    "table",
    { id: "alias-history", class: "versions", hidden: true },
    h("thead", {}, h("tr", {}, h("th", {}, "When"), h("th", {}, "Alias"), h("th", {}, "Change"), h("th", {}, "By"), h("th", {}, "Reason"))),
    historyRows,
  );
  const historyStatus = h("p", { id: "alias-history-status", class: "muted", role: "status" }, "Loading…");
  const moreHistory = h("button", { id: "alias-history-more", type: "button", class: "secondary", hidden: true }, "More moves");
  let historyToken = "";

  function versionRow(version: Artifact): HTMLElement {
    const current = version.id === artifact.id;
    const deleted = version.deletedAt !== undefined;
    const value = keyMetric === undefined ? undefined : version.metrics[keyMetric];
    const row = h(
      "tr",
      {
        class: [current ? "current" : "", deleted ? "deleted" : ""].filter(Boolean).join(" ") || undefined,
        "data-artifact-id": version.id,
        "data-version": String(version.version),
        "data-deleted": String(deleted),
      },
      h("td", {}, h("a", { href: artifactHref(version.id) }, `v${version.version}`), current ? h("span", { class: "muted" }, " (this one)") : null),
      h("td", {}, ...version.aliases.map((alias) => h("span", { class: "badge alias", "data-alias": alias }, alias))),
      h("td", {}, formatStatus(version.status), deleted ? h("span", { class: "deleted-mark" }, " deleted") : null),
      h("td", {}, formatTime(version.createdAt)),
      keyMetric ? h("td", { class: "num" }, value === undefined ? "" : formatMetric(value)) : null,
    );
    // The whole row opens the version, not only its number.
    row.addEventListener("click", (event) => {
      if ((event.target as Element).closest("a")) return;
      location.hash = artifactHref(version.id);
    });
    return row;
  }

  function moveRow(move: AliasMove): HTMLElement {
    const version = (id: string, number: bigint) => h("a", { href: artifactHref(id) }, `v${number}`);
    const change = !move.fromArtifactId
      ? ["set to ", version(move.toArtifactId, move.toVersion)]
      : !move.toArtifactId
        ? ["removed from ", version(move.fromArtifactId, move.fromVersion)]
        : ["moved from ", version(move.fromArtifactId, move.fromVersion), " to ", version(move.toArtifactId, move.toVersion)];
    return h(
      "tr",
      {
        "data-alias": move.alias,
        "data-from-version": String(move.fromVersion),
        "data-to-version": String(move.toVersion),
        "data-moved-by": move.movedBy,
      },
      h("td", {}, formatTime(move.movedAt)),
      h("td", {}, h("span", { class: "badge alias" }, move.alias)),
      h("td", {}, ...change),
      h("td", {}, move.movedBy),
      h("td", {}, move.reason),
    );
  }

  async function loadVersions(): Promise<void> {
    moreVersions.disabled = true;
    versionsStatus.textContent = "Loading…";
    try {
      const page = await client.rpc.listVersions({ ...request, includeDeleted: true, pageSize: VERSIONS_PAGE_SIZE, pageToken: versionsToken }, { signal });
      for (const version of page.versions) {
        for (const alias of version.aliases) seen.set(alias, { id: version.id, version: version.version });
        rows.append(versionRow(version));
      }
      versionsToken = page.nextPageToken;
      moreVersions.hidden = versionsToken === "";
      versionsStatus.textContent = rows.childElementCount === 0 ? "No versions." : "";
      refreshChoices();
    } catch (error) {
      if (signal.aborted) return;
      versionsStatus.textContent = "";
      versionsStatus.append(h("span", { class: "error" }, `The versions could not be loaded: ${errorMessage(error)}`));
    } finally {
      moreVersions.disabled = false;
    }
  }

  async function loadHistory(): Promise<void> {
    moreHistory.disabled = true;
    historyStatus.textContent = "Loading…";
    try {
      const page = await client.rpc.listAliasHistory({ ...request, pageSize: ALIAS_HISTORY_PAGE_SIZE, pageToken: historyToken }, { signal });
      for (const move of page.moves) {
        // Newest first: an alias's first move met is where it is now (or that it was removed).
        if (!historyAliases.has(move.alias)) {
          historyAliases.add(move.alias);
          if (move.toArtifactId) fromHistory.set(move.alias, { id: move.toArtifactId, version: move.toVersion });
        }
        historyRows.append(moveRow(move));
      }
      historyToken = page.nextPageToken;
      moreHistory.hidden = historyToken === "";
      history.hidden = historyRows.childElementCount === 0;
      historyStatus.textContent = historyRows.childElementCount === 0 ? "No alias has been set yet." : "";
      refreshChoices();
    } catch (error) {
      if (signal.aborted) return;
      historyStatus.textContent = "";
      historyStatus.append(h("span", { class: "error" }, `The alias history could not be loaded: ${errorMessage(error)}`));
    } finally {
      moreHistory.disabled = false;
    }
  }

  /** Where the page last saw `alias`: on a listed version, else in the history loaded; undefined when nowhere. */
  function lastSeen(alias: string): { id: string; version: bigint } | undefined {
    return seen.get(alias) ?? fromHistory.get(alias);
  }

  // ---- The alias actions: a small form, then the in-page confirmation. ----
  type Mode = "move" | "remove";
  const choices = h("datalist", { id: "alias-choices" });
  const aliasInput = h("input", {
    id: "alias-name",
    list: "alias-choices",
    autocomplete: "off",
    spellcheck: "false",
    placeholder: "production",
    maxlength: "64",
  });
  const reasonInput = h("input", { id: "alias-reason", maxlength: "512", placeholder: "optional, kept in the history" });
  const next = h("button", { id: "alias-form-next", type: "submit" }, "Next");
  const cancelForm = h("button", { id: "alias-form-cancel", type: "button", class: "secondary" }, "Cancel");
  const formTitle = h("p", { id: "alias-form-title" });
  const form = h(
    "form",
    { id: "alias-form", class: "confirm", hidden: true },
    formTitle,
    h(
      "div",
      { class: "grid" },
      h("label", {}, "Alias ", aliasInput, choices),
      h("label", {}, "Reason ", reasonInput),
      h("div", { class: "actions" }, next, cancelForm),
    ),
  );
  const question = h("p", { id: "alias-confirm-question" });
  const yes = h("button", { id: "alias-confirm-yes", type: "button" });
  const no = h("button", { id: "alias-confirm-no", type: "button", class: "secondary" }, "Cancel");
  const confirm = h(
    "div",
    { id: "alias-confirm", class: "confirm", role: "alertdialog", "aria-labelledby": "alias-confirm-question", hidden: true },
    question,
    h("div", { class: "actions" }, yes, no),
  );
  const moveButton = h("button", { id: "alias-move", type: "button", class: "secondary" }, "Move alias…");
  const removeButton = h("button", { id: "alias-remove", type: "button", class: "secondary" }, "Remove alias…");
  let mode: Mode = "move";
  let pending: (() => Promise<void>) | undefined;

  function refreshChoices(): void {
    const known = [...new Set([...seen.keys(), ...fromHistory.keys()])].filter(settable).sort((a, b) => a.localeCompare(b));
    choices.replaceChildren(...known.map((alias) => h("option", { value: alias })));
  }

  function say(text: string, failed: boolean): void {
    result.hidden = failed;
    failure.hidden = !failed;
    (failed ? failure : result).textContent = text;
  }

  function openForm(chosen: Mode): void {
    mode = chosen;
    result.hidden = true;
    failure.hidden = true;
    confirm.hidden = true;
    formTitle.textContent =
      chosen === "move"
        ? `Point an alias of ${name} at v${artifact.version}: one it has, or a new one.`
        : `Remove an alias of ${name}: references through it stop resolving.`;
    // Removing starts from an alias of this version, if it has one.
    aliasInput.value = chosen === "remove" ? (artifact.aliases.find(settable) ?? "") : "";
    form.hidden = false;
    aliasInput.focus();
  }
  moveButton.addEventListener("click", () => openForm("move"));
  removeButton.addEventListener("click", () => openForm("remove"));
  cancelForm.addEventListener("click", () => {
    form.hidden = true;
  });

  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const alias = aliasInput.value.trim();
    const reason = reasonInput.value.trim();
    if (alias === "") {
      say("Type the alias's name first.", true);
      return;
    }
    failure.hidden = true;
    const where = lastSeen(alias);
    if (mode === "move") {
      const label = where ? "Move alias" : "Create alias";
      question.textContent =
        where === undefined
          ? `Create alias "${alias}" of ${name}, pointing at v${artifact.version}? This page has not seen it before.`
          : where.id === artifact.id
            ? `Alias "${alias}" of ${name} already points at v${artifact.version}. Keep it there?`
            : `Move alias "${alias}" of ${name} from v${where.version} to v${artifact.version}? ${name}:${alias} will then open v${artifact.version}.`;
      yes.textContent = label;
      pending = () => moveHere(alias, reason, where?.id ?? "");
    } else {
      question.textContent = `Remove alias "${alias}" of ${name}${where ? ` (on v${where.version} now)` : ""}? ${name}:${alias} will no longer resolve.`;
      yes.textContent = "Remove alias";
      pending = () => remove(alias, reason);
    }
    form.hidden = true;
    confirm.dataset.action = mode;
    confirm.hidden = false;
    yes.focus();
  });

  async function moveHere(alias: string, reason: string, expected: string): Promise<void> {
    try {
      const answer = await client.rpc.setAlias({ artifactId: artifact.id, alias, expectedArtifactId: expected, reason });
      if (!answer.artifact || !answer.move) throw new Error(`the server returned no alias move for ${alias}`);
      const from = answer.move.fromArtifactId ? ` (it was on v${answer.move.fromVersion})` : "";
      onChanged(answer.artifact, { text: `Alias "${alias}" now points at v${answer.move.toVersion}${from}.`, failed: false });
    } catch (error) {
      if (ConnectError.from(error).code !== Code.Aborted) throw error;
      // Someone moved (or made) the alias since this page looked: show where it is now rather than move it blindly.
      const fresh = await client.get(artifact.id);
      onChanged(fresh, {
        text:
          `Not moved: alias "${alias}" changed since this page loaded it (${errorMessage(error)}). ` +
          "The versions and the history below are reloaded as they are now; look again before moving it.",
        failed: true,
      });
    }
  }

  async function remove(alias: string, reason: string): Promise<void> {
    const answer = await client.rpc.deleteAlias({ ...request, alias, reason });
    const fresh = await client.get(artifact.id);
    onChanged(fresh, { text: `Alias "${alias}" removed (it was on v${answer.move?.fromVersion ?? "?"}).`, failed: false });
  }

  no.addEventListener("click", () => {
    pending = undefined;
    confirm.hidden = true;
  });
  yes.addEventListener("click", async () => {
    const run = pending;
    if (!run) return;
    for (const button of [yes, no, moveButton, removeButton]) button.disabled = true;
    try {
      await run();
    } catch (error) {
      pending = undefined;
      confirm.hidden = true;
      say(`${yes.textContent} refused: ${errorMessage(error)}`, true);
    } finally {
      for (const button of [yes, no, moveButton, removeButton]) button.disabled = false;
    }
  });

  moreVersions.addEventListener("click", () => void loadVersions());
  moreHistory.addEventListener("click", () => void loadHistory());
  void loadVersions();
  void loadHistory();

  const readable = artifact.deletedAt === undefined;
  return h(
    "div",
    { id: "versions-panel" },
    readable
      ? h("div", { id: "alias-actions", class: "actions" }, moveButton, removeButton)
      : h("p", { class: "muted" }, "Deleted: no alias can point at this version."),
    form,
    confirm,
    result,
    failure,
    table,
    versionsStatus,
    moreVersions,
    h("h4", {}, "Alias history"),
    history,
    historyStatus,
    moreHistory,
  );
}
