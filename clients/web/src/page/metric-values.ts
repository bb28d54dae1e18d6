export interface MetricPoint {
  readonly id: string;
  readonly name: string;
  readonly value: number;
  /** For a name's versions: the version number, which orders the points. */
  readonly version?: number;
}

/** The best value of the points: the highest, or the lowest when lower is better. */
export function bestValue(points: readonly MetricPoint[], lowerIsBetter: boolean): number | undefined {
  if (points.length === 0) return undefined;
  const values = points.map((point) => point.value);
  return lowerIsBetter ? Math.min(...values) : Math.max(...values);
}

/** Short numbers for axis labels and tooltips: 4 significant digits, no trailing zeros. */
export function formatMetric(value: number): string {
  if (value === 0) return "0";
  const magnitude = Math.abs(value);
  if (magnitude >= 1e6 || magnitude < 1e-3) return value.toExponential(3).replace(/\.?0+e/, "e");
  return String(Number(value.toPrecision(4)));
}
