import { afterAll, afterEach } from "vitest";
import { unexpectedServerErrors } from "./server-log.ts";

/**
 * Runs in every test file: a test during which an in-process server logged
 * an error it could only answer INTERNAL fails, even if every assertion
 * passed. Whatever such a server logs outside a test (in beforeAll or
 * afterAll) fails the file.
 */
function failOnUnexpected(where: string): void {
  const found = unexpectedServerErrors();
  if (found.length > 0) {
    throw new Error(`the server logged ${found.length} unexpected internal error(s) ${where}:\n${found.join("\n")}`);
  }
}

afterEach(() => failOnUnexpected("during this test"));
afterAll(() => failOnUnexpected("outside the tests (setup or teardown)"));
