import { createHmac } from "node:crypto";
import { afterEach, describe, expect, it, vi } from "vitest";
import type { Artifact, Caller } from "../../src/artifact.ts";
import { newArtifactId } from "../../src/artifact-id.ts";
import type { MetadataStore } from "../../src/ports/metadata-store.ts";
import { createDownloadUrl, createUrlSigner, DEFAULT_URL_TTL_SECONDS, URL_EXPIRY_SKEW_SECONDS, type DownloadLink } from "../../src/service/download-urls.ts";
import { expectArtifactErrorAsync } from "../support/expect-artifact-error.ts";

const NEW_KEY = { id: "k2", secret: "n".repeat(32) };
const OLD_KEY = { id: "k1", secret: "o".repeat(32) };
const MAX_TTL = 3600;
const NOW = 1_800_000_000;
const LINK: DownloadLink = { tenantId: "alpha team/ü", artifactId: newArtifactId("art"), tokenId: newArtifactId("tok"), expiresAtSeconds: NOW + 600 };

const hmac = (secret: string, text: string) => createHmac("sha256", secret).update(text).digest("base64url");
const unsignedOf = (link: DownloadLink, keyId: string) =>
  `/download/v1/${encodeURIComponent(link.tenantId)}/${link.artifactId}?expires=${link.expiresAtSeconds}&token_id=${link.tokenId}&key_id=${keyId}`;
/** A link as a holder of `secret` would sign it, spelled as given. */
const signedAs = (unsigned: string, secret: string) => `${unsigned}&sig=${hmac(secret, unsigned)}`;

describe("signed download links", () => {
  const signer = createUrlSigner([NEW_KEY, OLD_KEY], { maxTtlSeconds: MAX_TTL });

  it("are the path and query naming tenant, artifact, expiry, token and key, with an HMAC-SHA256 of all that under the newest key", () => {
    const unsigned = unsignedOf(LINK, "k2");
    expect(unsigned).toBe(`/download/v1/alpha%20team%2F%C3%BC/${LINK.artifactId}?expires=${NOW + 600}&token_id=${LINK.tokenId}&key_id=k2`);
    expect(signer.sign(LINK)).toBe(signedAs(unsigned, NEW_KEY.secret));
  });

  it("verify to what they grant, under any listed key", () => {
    expect(signer.verify(signer.sign(LINK), NOW)).toStrictEqual(LINK);
    expect(signer.verify(signedAs(unsignedOf(LINK, "k1"), OLD_KEY.secret), NOW)).toStrictEqual(LINK);
  });

  it("are refused under a key that is not listed, or signed with another key's secret", () => {
    expect(signer.verify(signedAs(unsignedOf(LINK, "k3"), "x".repeat(32)), NOW)).toBeUndefined();
    expect(signer.verify(signedAs(unsignedOf(LINK, "k1"), NEW_KEY.secret), NOW)).toBeUndefined();
    const onlyNew = createUrlSigner([NEW_KEY], { maxTtlSeconds: MAX_TTL });
    expect(onlyNew.verify(signedAs(unsignedOf(LINK, "k1"), OLD_KEY.secret), NOW)).toBeUndefined();
  });

  it("are valid until just before their expiry, and never further ahead than the cap plus the clock skew", () => {
    const at = (expiresAtSeconds: number) => signer.sign({ ...LINK, expiresAtSeconds });
    expect(signer.verify(at(NOW + 1), NOW)).toBeDefined();
    expect(signer.verify(at(NOW), NOW)).toBeUndefined();
    expect(signer.verify(at(NOW - 1), NOW)).toBeUndefined();
    expect(signer.verify(at(NOW + MAX_TTL + URL_EXPIRY_SKEW_SECONDS), NOW)).toBeDefined();
    expect(signer.verify(at(NOW + MAX_TTL + URL_EXPIRY_SKEW_SECONDS + 1), NOW)).toBeUndefined();
    expect(URL_EXPIRY_SKEW_SECONDS).toBe(5);
  });

  it("are refused when any part is changed, even when re-signed, unless it is the one canonical spelling", () => {
    const target = signer.sign(LINK);
    const sig = target.slice(target.indexOf("&sig=") + 5);
    const resigned = (unsigned: string) => signedAs(unsigned, NEW_KEY.secret);
    const query = `?expires=${LINK.expiresAtSeconds}&token_id=${LINK.tokenId}&key_id=k2`;
    const tenant = encodeURIComponent(LINK.tenantId);
    const refused = {
      "another signature": `${target.slice(0, -1)}${sig.endsWith("A") ? "B" : "A"}`,
      "a signature one character short": target.slice(0, -1),
      "a signature one character long": `${target}A`,
      "a signature of other characters": `${target.slice(0, -43)}${"+".repeat(43)}`,
      "no signature": unsignedOf(LINK, "k2"),
      "no query": `/download/v1/${tenant}/${LINK.artifactId}`,
      "another prefix": resigned(`/download/v2/${tenant}/${LINK.artifactId}${query}`),
      "a prefix further in": resigned(`/x/download/v1/${tenant}/${LINK.artifactId}${query}`),
      "an extra path segment": resigned(`/download/v1/${tenant}/x/${LINK.artifactId}${query}`),
      "no tenant": resigned(`/download/v1//${LINK.artifactId}${query}`),
      "a tenant that does not decode": resigned(`/download/v1/%E0%A4%A/${LINK.artifactId}${query}`),
      "a malformed artifact id": resigned(`/download/v1/${tenant}/art_x${query}`),
      "a malformed token id": resigned(unsignedOf({ ...LINK, tokenId: "tok_x" }, "k2")),
      "no token id": resigned(`/download/v1/${tenant}/${LINK.artifactId}?expires=${LINK.expiresAtSeconds}&key_id=k2`),
      "no expiry": resigned(`/download/v1/${tenant}/${LINK.artifactId}?token_id=${LINK.tokenId}&key_id=k2`),
      "an expiry with a leading zero": resigned(unsignedOf(LINK, "k2").replace("expires=", "expires=0")),
      "an expiry of 17 digits": resigned(unsignedOf({ ...LINK, expiresAtSeconds: 10 ** 16 }, "k2")),
      "an expiry in letters": resigned(unsignedOf(LINK, "k2").replace(/expires=\d+/, "expires=1e9")),
      "a key id of 33 characters": resigned(unsignedOf(LINK, "k".repeat(33))),
      "a key id with a dot": resigned(unsignedOf(LINK, "k.2")),
      "no key id": resigned(`/download/v1/${tenant}/${LINK.artifactId}?expires=${LINK.expiresAtSeconds}&token_id=${LINK.tokenId}`),
      "a parameter twice": `${target}&sig=${sig}`,
      "the parameters in another order": `/download/v1/${tenant}/${LINK.artifactId}?sig=${sig}&${query.slice(1)}`,
    };
    for (const [name, variant] of Object.entries(refused)) expect(signer.verify(variant, NOW), name).toBeUndefined();
  });

  it("take an expiry of up to 16 digits and key ids of up to 32 characters", () => {
    const farSigner = createUrlSigner([{ id: "K_-9".padEnd(32, "k"), secret: NEW_KEY.secret }], { maxTtlSeconds: 10 ** 16 });
    const far = { ...LINK, expiresAtSeconds: Number.MAX_SAFE_INTEGER };
    expect(farSigner.verify(farSigner.sign(far), NOW)).toStrictEqual(far);
  });

  it("need a key", () => {
    expect(() => createUrlSigner([], { maxTtlSeconds: MAX_TTL })).toThrow(/^download links need at least one signing key$/);
  });
});

describe("createDownloadUrl", () => {
  afterEach(() => {
    vi.useRealTimers();
  });

  const CALLER: Caller = { tenantId: "alpha", principal: "ci", tokenId: newArtifactId("tok"), scope: "read-only" };
  const live = { id: newArtifactId("art"), deletedAt: undefined } as unknown as Artifact;
  const deleted = { id: newArtifactId("art"), deletedAt: new Date() } as unknown as Artifact;
  /** The one lookup the use case makes: the caller's tenant's artifacts by id. */
  const metadata = {
    getArtifact: async (tenantId: string, id: string) => (tenantId === "alpha" ? [live, deleted].find((a) => a.id === id) : undefined),
  } as unknown as MetadataStore;
  const signer = createUrlSigner([NEW_KEY], { maxTtlSeconds: 7200 });
  const deps = { metadata, signer, maxTtlSeconds: 7200 };
  const make = (request: Partial<{ id: string; ttlSeconds: number; baseUrl: string }>, caller: Caller = CALLER) =>
    createDownloadUrl(deps, caller, { id: live.id, ttlSeconds: 0, baseUrl: "https://files.example.com", ...request });

  it("signs a link for the caller's token, valid the default 15 minutes, after the base URL without its trailing slashes", async () => {
    vi.useFakeTimers({ now: NOW * 1000 + 999, toFake: ["Date"] });
    const { url, expiresAt } = await make({ baseUrl: "https://files.example.com/store//" });
    const expires = NOW + DEFAULT_URL_TTL_SECONDS;
    expect(DEFAULT_URL_TTL_SECONDS).toBe(900);
    expect(expiresAt).toStrictEqual(new Date(expires * 1000));
    const link = { tenantId: "alpha", artifactId: live.id, tokenId: CALLER.tokenId, expiresAtSeconds: expires };
    expect(url).toBe(`https://files.example.com/store${signer.sign(link)}`);
  });

  it("takes a lifetime of 1 second up to the maximum", async () => {
    vi.useFakeTimers({ now: NOW * 1000, toFake: ["Date"] });
    expect((await make({ ttlSeconds: 1 })).expiresAt).toStrictEqual(new Date((NOW + 1) * 1000));
    expect((await make({ ttlSeconds: 7200 })).expiresAt).toStrictEqual(new Date((NOW + 7200) * 1000));
    for (const ttlSeconds of [-1, 7201, 1.5]) {
      await expectArtifactErrorAsync(
        make({ ttlSeconds }),
        "invalid_argument",
        new RegExp(`^ttl_seconds ${ttlSeconds} is not valid: give 1–7200 seconds, or 0 for 900$`),
      );
    }
  });

  it("refuses a malformed id, an artifact of another tenant or deleted, and a caller without a token", async () => {
    await expectArtifactErrorAsync(make({ id: "nope" }), "invalid_argument", /^id "nope" is not an artifact id/);
    await expectArtifactErrorAsync(make({}, { ...CALLER, tenantId: "beta" }), "not_found", new RegExp(`^artifact ${live.id} does not exist$`));
    await expectArtifactErrorAsync(make({ id: deleted.id }), "not_found", new RegExp(`^artifact ${deleted.id} does not exist any more \\(it was deleted\\)$`));
    await expectArtifactErrorAsync(
      make({}, { ...CALLER, tokenId: "" }),
      "permission_denied",
      /^download links are made on behalf of an API token, and this call carries none$/,
    );
  });
});
