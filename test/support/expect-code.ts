import { Code, ConnectError } from "@connectrpc/connect";
import { expect } from "vitest";

/** Asserts that a call fails with this gRPC code, and a message matching `message` if given. */
export async function expectCode(promise: Promise<unknown>, code: Code, message?: RegExp): Promise<ConnectError> {
  const error = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(error, "expected the call to fail").toBeInstanceOf(ConnectError);
  expect(Code[(error as ConnectError).code]).toBe(Code[code]);
  if (message) expect((error as ConnectError).rawMessage).toMatch(message);
  return error as ConnectError;
}
