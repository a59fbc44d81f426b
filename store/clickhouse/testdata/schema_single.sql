-- bootstrap: database and migration record

CREATE DATABASE IF NOT EXISTS `tenantguard`;

CREATE TABLE IF NOT EXISTS `tenantguard`.schema_migrations
(
    version UInt32,
    name String,
    checksum String,
    applied_at DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree(applied_at)
ORDER BY version;

-- migration 1: tenant_leaks

CREATE TABLE IF NOT EXISTS `tenantguard`.tenant_leaks
(
    leak_id String COMMENT 'stable id of the finding: derived from trace id and rule',
    version UInt64 COMMENT 'strictly increasing per leak_id; the highest is the current state',
    trace_id FixedString(32) COMMENT 'lowercase hex',
    rule LowCardinality(String),
    severity LowCardinality(String),
    status LowCardinality(String) COMMENT 'open, closed or allowed',
    allowed_by LowCardinality(String) COMMENT 'the allow rule that withdrew the finding',
    tenants Array(LowCardinality(String)) COMMENT 'sorted',
    services Array(LowCardinality(String)) COMMENT 'every service seen in the trace, sorted',
    crossing_edges Array(Tuple(from_span_id String, from_service LowCardinality(String), from_span String, from_tenant LowCardinality(String), to_span_id String, to_service LowCardinality(String), to_span String, to_tenant LowCardinality(String), hops UInt16)) COMMENT 'parent to child steps where the tenant changes',
    mismatches Array(Tuple(span_id String, service LowCardinality(String), span String, sources Array(Tuple(tenant_key String, tenant String, resource Bool)))) COMMENT 'spans whose own tenant values disagree',
    span_count UInt32,
    first_seen DateTime64(9, 'UTC') COMMENT 'first span of the trace',
    last_seen DateTime64(9, 'UTC') COMMENT 'latest span of the trace',
    detected_at DateTime64(9, 'UTC') COMMENT 'when the first version was emitted',
    collector LowCardinality(String) COMMENT 'collector instance that recorded the finding',
    INDEX trace_id_bloom trace_id TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX tenants_bloom tenants TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX services_bloom services TYPE bloom_filter(0.01) GRANULARITY 1
)
ENGINE = ReplacingMergeTree(version)
PARTITION BY toYYYYMM(first_seen)
ORDER BY (rule, leak_id)
TTL toDateTime(last_seen) + INTERVAL 34560000 SECOND
SETTINGS non_replicated_deduplication_window = 10000;

-- migration 2: tenant_leak_spans

CREATE TABLE IF NOT EXISTS `tenantguard`.tenant_leak_spans
(
    leak_id String,
    version UInt64,
    trace_id FixedString(32),
    evidence_index UInt16 COMMENT 'position in the evidence list of this version',
    span_id String,
    parent_span_id String,
    service LowCardinality(String),
    span_name String,
    kind LowCardinality(String) COMMENT 'not recorded by the detector yet: empty',
    tenant LowCardinality(String),
    tenant_key LowCardinality(String) COMMENT 'attribute the tenant was read from',
    start_time DateTime64(9, 'UTC') COMMENT 'not recorded by the detector yet: 1970-01-01',
    duration_ns UInt64 COMMENT 'not recorded by the detector yet: 0',
    status_code LowCardinality(String) COMMENT 'not recorded by the detector yet: empty',
    attributes Map(LowCardinality(String), String) COMMENT 'redacted span attributes; not recorded by the detector yet: empty',
    first_seen DateTime64(9, 'UTC') COMMENT 'first_seen of the finding, for partitioning',
    last_seen DateTime64(9, 'UTC') COMMENT 'last_seen of the finding, for retention',
    INDEX trace_id_bloom trace_id TYPE bloom_filter(0.01) GRANULARITY 1
)
ENGINE = ReplacingMergeTree(version)
PARTITION BY toYYYYMM(first_seen)
ORDER BY (leak_id, span_id)
TTL toDateTime(last_seen) + INTERVAL 34560000 SECOND
SETTINGS non_replicated_deduplication_window = 10000;

-- migration 3: tenant_leaks_latest

CREATE OR REPLACE VIEW `tenantguard`.tenant_leaks_latest AS
SELECT
    leak_id,
    latest_version AS version,
    latest_trace_id AS trace_id,
    latest_rule AS rule,
    latest_severity AS severity,
    latest_status AS status,
    latest_allowed_by AS allowed_by,
    latest_tenants AS tenants,
    latest_services AS services,
    latest_crossing_edges AS crossing_edges,
    latest_mismatches AS mismatches,
    latest_span_count AS span_count,
    latest_first_seen AS first_seen,
    latest_last_seen AS last_seen,
    latest_detected_at AS detected_at,
    latest_collector AS collector
FROM
(
    SELECT
        leak_id,
        max(version) AS latest_version,
        argMax(trace_id, version) AS latest_trace_id,
        argMax(rule, version) AS latest_rule,
        argMax(severity, version) AS latest_severity,
        argMax(status, version) AS latest_status,
        argMax(allowed_by, version) AS latest_allowed_by,
        argMax(tenants, version) AS latest_tenants,
        argMax(services, version) AS latest_services,
        argMax(crossing_edges, version) AS latest_crossing_edges,
        argMax(mismatches, version) AS latest_mismatches,
        argMax(span_count, version) AS latest_span_count,
        argMax(first_seen, version) AS latest_first_seen,
        argMax(last_seen, version) AS latest_last_seen,
        argMax(detected_at, version) AS latest_detected_at,
        argMax(collector, version) AS latest_collector
    FROM `tenantguard`.tenant_leaks
    GROUP BY leak_id
);

-- migration 4: tenant_leak_spans details recorded

ALTER TABLE `tenantguard`.tenant_leak_spans
    COMMENT COLUMN kind 'server, client, producer, consumer or internal; empty when the request that raised or updated the finding did not carry the span',
    COMMENT COLUMN start_time 'span start; 1970-01-01 when not carried (see kind)',
    COMMENT COLUMN duration_ns 'span duration; 0 when not carried (see kind)',
    COMMENT COLUMN status_code 'ok, error or unset; empty when not carried (see kind)',
    COMMENT COLUMN attributes 'span attributes: tenant and clear-listed values as sent, every other value as hmac-sha256:<hex> under the collector key, or [redacted] without one';
