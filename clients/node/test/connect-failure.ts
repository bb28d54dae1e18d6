import { ConnectError } from "@connectrpc/connect";
import { expect } from "vitest";

/** The ConnectError a call fails with; fails the test if it succeeds or fails with anything else. */
export async function failureOf(call: Promise<unknown>): Promise<ConnectError> {
  try {
    await call;
  } catch (error) {
    expect(error).toBeInstanceOf(ConnectError);
    return error as ConnectError;
  }
  throw new Error("the call succeeded");
}
