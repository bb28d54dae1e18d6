/** A run used an artifact without producing it (RecordUsage). */
export interface ArtifactUsage {
  readonly artifactId: string;
  readonly runId: string;
  /** Empty when the use has no role. */
  readonly role: string;
  readonly recordedAt: Date;
  /** The name of the API token that recorded it. */
  readonly recordedBy: string;
}

/** One tenant's records of runs using artifacts: every method takes the tenant and sees nothing of any other. */
export interface ArtifactUsageStore {
  /**
   * Records the use once: when the same artifact, run and role is already
   * recorded, the recorded use is returned unchanged. A new use is recorded
   * only while the artifact exists and is not deleted, checked in the same
   * statement; undefined when it is not (and no use was recorded before).
   */
  recordUsage(tenantId: string, usage: ArtifactUsage): Promise<ArtifactUsage | undefined>;
  /** The uses of one artifact, oldest first, at most `limit` of them. */
  listUsages(tenantId: string, artifactId: string, limit: number): Promise<ArtifactUsage[]>;
}
