import { describe, expect, it } from "vitest";
import { presignGet } from "../../src/adapters/blob/s3-presign.ts";

const AWS_EXAMPLE = {
  accessKey: "AKIAIOSFODNN7EXAMPLE",
  secretKey: "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
  region: "us-east-1",
  now: new Date("2013-05-24T00:00:00Z"),
};

describe("presigned S3 GETs (SigV4 query signing)", () => {
  it("reproduces the presigned URL of AWS's worked example", () => {
    // https://docs.aws.amazon.com/AmazonS3/latest/API/sigv4-query-string-auth.html, "An example": GET test.txt of
    // examplebucket (virtual-hosted), valid 86,400 s from 2013-05-24T00:00:00Z, only host signed.
    const url = presignGet({
      ...AWS_EXAMPLE,
      endpoint: new URL("https://examplebucket.s3.amazonaws.com"),
      bucket: undefined,
      key: "test.txt",
      expiresSeconds: 86_400,
    });
    expect(url).toBe(
      "https://examplebucket.s3.amazonaws.com/test.txt?X-Amz-Algorithm=AWS4-HMAC-SHA256" +
        "&X-Amz-Credential=AKIAIOSFODNN7EXAMPLE%2F20130524%2Fus-east-1%2Fs3%2Faws4_request&X-Amz-Date=20130524T000000Z" +
        "&X-Amz-Expires=86400&X-Amz-SignedHeaders=host&X-Amz-Signature=aeeed9bbccd4d02ee5c0109b86d86835f995330da4c265957d157751f604d404",
    );
  });

  it("signs given headers in, lowercased and sorted beside host, and changes the signature with their values", () => {
    const base = { ...AWS_EXAMPLE, endpoint: new URL("http://127.0.0.1:9000"), bucket: "artifacts", key: "tenant/k", expiresSeconds: 60 };
    const ranged = new URL(presignGet({ ...base, headers: { Range: "bytes=0-9" } }));
    expect(ranged.searchParams.get("X-Amz-SignedHeaders")).toBe("host;range");
    const other = new URL(presignGet({ ...base, headers: { range: "bytes=0-10" } }));
    expect(other.searchParams.get("X-Amz-Signature")).not.toBe(ranged.searchParams.get("X-Amz-Signature"));
    const none = new URL(presignGet(base));
    expect(none.searchParams.get("X-Amz-SignedHeaders")).toBe("host");
    expect(none.searchParams.get("X-Amz-Signature")).not.toBe(ranged.searchParams.get("X-Amz-Signature"));
  });

  it("addresses the object path-style with each key segment encoded, and keeps a non-default port", () => {
    const url = presignGet({ ...AWS_EXAMPLE, endpoint: new URL("http://store.example:9000"), bucket: "b", key: "ten ant/a+b(1)", expiresSeconds: 60 });
    expect(url.startsWith("http://store.example:9000/b/ten%20ant/a%2Bb%281%29?")).toBe(true);
  });

  it("refuses lifetimes S3 refuses", () => {
    const base = { ...AWS_EXAMPLE, endpoint: new URL("http://127.0.0.1:9000"), bucket: "b", key: "k" };
    expect(() => presignGet({ ...base, expiresSeconds: 0 })).toThrow(RangeError);
    expect(() => presignGet({ ...base, expiresSeconds: 604_801 })).toThrow(RangeError);
    expect(() => presignGet({ ...base, expiresSeconds: 1.5 })).toThrow(RangeError);
  });
});
