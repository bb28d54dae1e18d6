/** A setting with a bad value (or a bad combination): start-up stops with this message, naming the variable. */
export class ConfigError extends Error {
  override readonly name = "ConfigError";
}
