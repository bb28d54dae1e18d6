import { expect } from "vitest";
import { ArtifactError, type ArtifactErrorCode } from "../../src/artifact-error.ts";

/** Asserts that `run` throws an ArtifactError with this code and a message matching `message`. */
export function expectArtifactError(run: () => unknown, code: ArtifactErrorCode, message: RegExp): ArtifactError {
  let thrown: unknown;
  try {
    run();
  } catch (error) {
    thrown = error;
  }
  return checkArtifactError(thrown, code, message);
}

/** As expectArtifactError, for a promise. */
export async function expectArtifactErrorAsync(promise: Promise<unknown>, code: ArtifactErrorCode, message: RegExp): Promise<ArtifactError> {
  const thrown = await promise.then(
    () => undefined,
    (error: unknown) => error,
  );
  return checkArtifactError(thrown, code, message);
}

function checkArtifactError(thrown: unknown, code: ArtifactErrorCode, message: RegExp): ArtifactError {
  expect(thrown, "expected an ArtifactError").toBeInstanceOf(ArtifactError);
  const error = thrown as ArtifactError;
  expect(error.code).toBe(code);
  expect(error.message).toMatch(message);
  return error;
}
