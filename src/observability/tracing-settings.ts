import { ConfigError } from "../config-error.ts";

/**
 * Tracing is configured with OpenTelemetry's own environment variables, so
 * the same settings that configure every other service in a deployment
 * configure this one. Unlike OpenTelemetry's SDK defaults, nothing is
 * exported unless asked for: a server started without OTEL_* settings sends
 * no spans anywhere (and pays nothing per call).
 *
 * On when OTEL_TRACES_EXPORTER names `otlp` or `console`, or, left unset,
 * when an OTLP endpoint is set (OTEL_EXPORTER_OTLP_TRACES_ENDPOINT or
 * OTEL_EXPORTER_OTLP_ENDPOINT); off with OTEL_SDK_DISABLED=true or
 * OTEL_TRACES_EXPORTER=none. OTLP goes over HTTP, protobuf (the default) or
 * JSON (OTEL_EXPORTER_OTLP_TRACES_PROTOCOL / OTEL_EXPORTER_OTLP_PROTOCOL).
 * The rest (endpoint, headers, timeout, compression, OTEL_TRACES_SAMPLER,
 * OTEL_BSP_*, OTEL_RESOURCE_ATTRIBUTES, OTEL_SERVICE_NAME) is read by the
 * SDK itself, as its documentation says.
 */
export interface TracingSettings {
  readonly exporters: readonly ("otlp" | "console")[];
  readonly protocol: "http/protobuf" | "http/json";
}

type Env = Readonly<Record<string, string | undefined>>;

const PROTOCOLS = ["http/protobuf", "http/json"] as const;

export function readTracingSettings(env: Env): TracingSettings | undefined {
  if (env.OTEL_SDK_DISABLED?.trim().toLowerCase() === "true") return undefined;
  const named = env.OTEL_TRACES_EXPORTER?.trim();
  const endpoint = env.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT?.trim() || env.OTEL_EXPORTER_OTLP_ENDPOINT?.trim();
  const exporters: ("otlp" | "console")[] = [];
  if (named === undefined || named === "") {
    if (!endpoint) return undefined;
    exporters.push("otlp");
  } else {
    for (const name of named.split(",").map((n) => n.trim().toLowerCase())) {
      if (name === "none") return undefined;
      if (name !== "otlp" && name !== "console") {
        throw new ConfigError(`OTEL_TRACES_EXPORTER: ${JSON.stringify(name)} is not an exporter artifactd has; use otlp, console or none`);
      }
      if (!exporters.includes(name)) exporters.push(name);
    }
  }
  const protocolVariable = env.OTEL_EXPORTER_OTLP_TRACES_PROTOCOL?.trim() ? "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL" : "OTEL_EXPORTER_OTLP_PROTOCOL";
  const protocol = env[protocolVariable]?.trim() || "http/protobuf";
  if (!(PROTOCOLS as readonly string[]).includes(protocol)) {
    throw new ConfigError(`${protocolVariable}: ${JSON.stringify(protocol)} is not supported; artifactd sends OTLP over HTTP: http/protobuf or http/json`);
  }
  return { exporters, protocol: protocol as TracingSettings["protocol"] };
}
