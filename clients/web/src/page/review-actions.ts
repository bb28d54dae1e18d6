import { LATEST_ALIAS, STATUS_BY_NAME, statusName, type StatusName } from "@artifactd/api";
import type { Artifact } from "@artifactd/api/artifacts/v1/artifact_pb.js";
import { Code, ConnectError } from "@connectrpc/connect";
import type { WebArtifactClient } from "../web-artifact-client.ts";
import { h } from "./dom.ts";
import { errorMessage, versionedName } from "./format.ts";
import { REVIEW_TRANSITIONS } from "./review-transitions.ts";

const STATUS_ACTIONS: Readonly<Record<StatusName, { readonly key: string; readonly label: string; readonly done: string }>> = {
  review: { key: "review", label: "Send to review", done: "Sent to review." },
  approved: { key: "approve", label: "Approve", done: "Approved." },
  rejected: { key: "reject", label: "Reject", done: "Rejected." },
  draft: { key: "draft", label: "Back to draft", done: "Back to draft." },
};

interface Action {
  /** data-action of its button, and the end of its id (`action-approve`). */
  readonly key: string;
  readonly label: string;
  readonly question: string;
  readonly done: string;
  /** Answers the artifact as it is now, and what was done when it says more than `done`. */
  readonly run: () => Promise<{ artifact?: Artifact | undefined; done?: string }>;
}

/**
 * Review and housekeeping on an artifact's view: the status changes its
 * status allows, pin or unpin, delete. Each asks first, in the page (a
 * panel with Confirm and Cancel, not window.confirm), then calls the
 * service and hands its answer to `onChanged`, which redraws the view. A
 * refusal (FAILED_PRECONDITION for a pinned artifact's delete,
 * PERMISSION_DENIED for a read-only token, …) is shown with the server's
 * message.
 *
 * For a version of a versioned name, approving can also point an alias at
 * it (SetStatus.move_alias, in the same transaction), and a delete refused
 * because aliases point at it offers "Delete anyway", which removes them
 * (DeleteArtifact.force) after a second confirmation.
 */
export function reviewActions(
  client: WebArtifactClient,
  artifact: Artifact,
  onChanged: (artifact: Artifact, notice: string) => void,
  notice = "",
): HTMLElement {
  const name = artifact.name || artifact.title || artifact.id;
  const id = artifact.id;
  const versioned = artifact.version > 0n;
  const moveAlias = h("input", {
    id: "action-move-alias",
    autocomplete: "off",
    spellcheck: "false",
    maxlength: "64",
    placeholder: "production (optional)",
  });
  const moveAliasField = h(
    "label",
    { id: "action-move-alias-field", class: "inline", hidden: true },
    "Also point alias ",
    moveAlias,
    ` at v${artifact.version}`,
  );
  const actions: Action[] = [];
  if (!artifact.deletedAt) {
    const current = statusName(artifact.status);
    for (const target of current ? REVIEW_TRANSITIONS[current] : []) {
      const { key, label, done } = STATUS_ACTIONS[target];
      actions.push({
        key,
        label,
        done,
        question: `${label}: ${name} goes from ${current} to ${target}.`,
        run: async () => {
          const alias = versioned && target === "approved" ? moveAlias.value.trim() : "";
          const answer = await client.rpc.setStatus({ id, status: STATUS_BY_NAME[target], moveAlias: alias });
          return alias === ""
            ? answer
            : { artifact: answer.artifact, done: `${done} Alias "${alias}" now points at v${answer.aliasMove?.toVersion ?? artifact.version}.` };
        },
      });
    }
    actions.push(
      artifact.pinned
        ? {
            key: "unpin",
            label: "Unpin",
            done: "Unpinned.",
            question: `Unpin ${name}? Unpinned, it can be deleted and expire.`,
            run: () => client.rpc.setPinned({ id, pinned: false }),
          }
        : {
            key: "pin",
            label: "Pin",
            done: "Pinned.",
            question: `Pin ${name}? Pinned, it is kept past its expiry and cannot be deleted.`,
            run: () => client.rpc.setPinned({ id, pinned: true }),
          },
      {
        key: "delete",
        label: "Delete",
        done: "Deleted.",
        question: `Delete ${name}? Its content can no longer be read.`,
        run: () => client.rpc.deleteArtifact({ id }),
      },
    );
  }

  const result = h("p", { id: "action-result", role: "status", class: "muted", hidden: notice === "" }, notice);
  const failure = h("p", { id: "action-error", class: "error", role: "alert", hidden: true });
  const question = h("p", { id: "action-confirm-question" });
  const forceDelete = h("button", { id: "action-delete-force", type: "button", class: "danger", hidden: true }, "Delete anyway (removes the aliases)");
  const yes = h("button", { id: "action-confirm-yes", type: "button" });
  const no = h("button", { id: "action-confirm-no", type: "button", class: "secondary" }, "Cancel");
  const confirm = h(
    "div",
    { id: "action-confirm", class: "confirm", role: "alertdialog", "aria-labelledby": "action-confirm-question", hidden: true },
    question,
    moveAliasField,
    h("div", { class: "actions" }, yes, no),
  );
  const buttons = actions.map((action) => {
    const button = h(
      "button",
      { id: `action-${action.key}`, type: "button", "data-action": action.key, class: action.key === "delete" ? "danger" : "secondary" },
      action.label,
    );
    button.addEventListener("click", () => ask(action));
    return button;
  });
  let pending: Action | undefined;
  /** Offered after a delete the aliases refused: the same delete, with force. */
  let forcedDelete: Action | undefined;
  forceDelete.addEventListener("click", () => {
    if (forcedDelete) ask(forcedDelete);
  });

  function ask(action: Action): void {
    pending = action;
    failure.hidden = true;
    result.hidden = true;
    forceDelete.hidden = true;
    question.textContent = action.question;
    yes.textContent = action.label;
    moveAliasField.hidden = !(versioned && action.key === STATUS_ACTIONS.approved.key);
    confirm.dataset.action = action.key;
    confirm.hidden = false;
    yes.focus();
  }
  function setBusy(busy: boolean): void {
    for (const button of [...buttons, yes, no, forceDelete]) button.disabled = busy;
  }
  no.addEventListener("click", () => {
    pending = undefined;
    confirm.hidden = true;
  });
  yes.addEventListener("click", async () => {
    const action = pending;
    if (!action) return;
    setBusy(true);
    try {
      const answer = await action.run();
      if (!answer.artifact) throw new Error(`the server returned no artifact for ${id}`);
      onChanged(answer.artifact, answer.done ?? action.done);
    } catch (error) {
      const aliases = action.key === "delete" ? await aliasesInTheWay(error) : [];
      setBusy(false);
      pending = undefined;
      confirm.hidden = true;
      failure.textContent = `${action.label} refused: ${errorMessage(error)}`;
      failure.hidden = false;
      if (aliases.length > 0) offerForcedDelete(aliases);
    }
  });

  /**
   * The aliases that refused a delete: FAILED_PRECONDITION also answers a
   * pinned artifact, so the artifact is read again rather than the message
   * parsed; none when something else refused it.
   */
  async function aliasesInTheWay(error: unknown): Promise<string[]> {
    if (!versioned || ConnectError.from(error).code !== Code.FailedPrecondition) return [];
    try {
      const now = await client.get(id);
      return now.pinned || now.deletedAt ? [] : now.aliases.filter((alias) => alias !== LATEST_ALIAS);
    } catch {
      return [];
    }
  }

  function offerForcedDelete(aliases: readonly string[]): void {
    const listed = aliases.map((alias) => `"${alias}"`).join(", ");
    const removed = `alias${aliases.length > 1 ? "es" : ""} ${listed} of ${versionedName(artifact)}`;
    const forced: Action = {
      key: "delete-force",
      label: "Delete anyway",
      done: `Deleted; ${removed} removed.`,
      question: `Delete ${name} (v${artifact.version}) anyway? This also removes ${removed}; references through them stop resolving, and the alias history records the removal.`,
      run: () => client.rpc.deleteArtifact({ id, force: true }),
    };
    forcedDelete = forced;
    forceDelete.hidden = false;
  }

  return h(
    "div",
    { id: "review-actions", class: "review-actions" },
    actions.length > 0 ? h("div", { class: "actions" }, ...buttons) : h("p", { class: "muted" }, "Deleted: nothing more can be done with it."),
    confirm,
    result,
    failure,
    forceDelete,
  );
}
