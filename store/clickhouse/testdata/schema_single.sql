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
    status LowCardinality(String) COMMENT 'open, closed, allowed or reclassified',
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
    reason String COMMENT 'the severity or the status explained in a sentence',
    keys Array(Tuple(span_id String, service LowCardinality(String), span String, attribute LowCardinality(String), identifier String, key_tenant LowCardinality(String), span_tenant LowCardinality(String), global Bool)) COMMENT 'spans whose token was verified with the key of another tenant or a global one',
    queries Array(Tuple(span_id String, service LowCardinality(String), span String, tables Array(String))) COMMENT 'unscoped statements: the tables each reached without a tenant predicate',
    crossing_edge_details Array(Tuple(from_trace_id String, to_trace_id String, link Bool, outcome LowCardinality(String))) COMMENT 'per crossing edge, in the same order: the trace ids of the ends of a span link, whether it is a link, succeeded or blocked',
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
    last_seen DateTime64(9, 'UTC') COMMENT 'last_seen of the finding',
    outcome LowCardinality(String) COMMENT 'succeeded or blocked, when the result of the span is known',
    data Bool COMMENT 'the span touched the data of the foreign tenant',
    detected_at DateTime64(9, 'UTC') DEFAULT last_seen COMMENT 'detected_at of the finding: partition and retention (collector time)',
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

-- migration 5: every field of the finding

ALTER TABLE `tenantguard`.tenant_leaks
    ADD COLUMN IF NOT EXISTS reason String COMMENT 'the severity or the status explained in a sentence',
    ADD COLUMN IF NOT EXISTS keys Array(Tuple(span_id String, service LowCardinality(String), span String, attribute LowCardinality(String), identifier String, key_tenant LowCardinality(String), span_tenant LowCardinality(String), global Bool)) COMMENT 'spans whose token was verified with the key of another tenant or a global one',
    ADD COLUMN IF NOT EXISTS queries Array(Tuple(span_id String, service LowCardinality(String), span String, tables Array(String))) COMMENT 'unscoped statements: the tables each reached without a tenant predicate',
    ADD COLUMN IF NOT EXISTS crossing_edge_details Array(Tuple(from_trace_id String, to_trace_id String, link Bool, outcome LowCardinality(String))) COMMENT 'per crossing edge, in the same order: the trace ids of the ends of a span link, whether it is a link, succeeded or blocked';

ALTER TABLE `tenantguard`.tenant_leak_spans
    ADD COLUMN IF NOT EXISTS outcome LowCardinality(String) COMMENT 'succeeded or blocked, when the result of the span is known',
    ADD COLUMN IF NOT EXISTS data Bool COMMENT 'the span touched the data of the foreign tenant',
    ADD COLUMN IF NOT EXISTS detected_at DateTime64(9, 'UTC') DEFAULT last_seen COMMENT 'detected_at of the finding: partition and retention (collector time)';

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
    latest_collector AS collector,
    latest_reason AS reason,
    latest_keys AS keys,
    latest_queries AS queries,
    latest_crossing_edge_details AS crossing_edge_details
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
        argMax(collector, version) AS latest_collector,
        argMax(reason, version) AS latest_reason,
        argMax(keys, version) AS latest_keys,
        argMax(queries, version) AS latest_queries,
        argMax(crossing_edge_details, version) AS latest_crossing_edge_details
    FROM `tenantguard`.tenant_leaks
    GROUP BY leak_id
);

-- migration 6: tenant_leaks by detection time

-- only while this counts more than 0 (a table created before migration 6):
-- SELECT count() FROM system.tables WHERE database = 'tenantguard' AND name = 'tenant_leaks' AND partition_key NOT LIKE '%detected_at%'

DROP TABLE IF EXISTS `tenantguard`.tenant_leaks_rebuild SYNC;

CREATE TABLE `tenantguard`.tenant_leaks_rebuild
(
    leak_id String COMMENT 'stable id of the finding: derived from trace id and rule',
    version UInt64 COMMENT 'strictly increasing per leak_id; the highest is the current state',
    trace_id FixedString(32) COMMENT 'lowercase hex',
    rule LowCardinality(String),
    severity LowCardinality(String),
    status LowCardinality(String) COMMENT 'open, closed, allowed or reclassified',
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
    reason String COMMENT 'the severity or the status explained in a sentence',
    keys Array(Tuple(span_id String, service LowCardinality(String), span String, attribute LowCardinality(String), identifier String, key_tenant LowCardinality(String), span_tenant LowCardinality(String), global Bool)) COMMENT 'spans whose token was verified with the key of another tenant or a global one',
    queries Array(Tuple(span_id String, service LowCardinality(String), span String, tables Array(String))) COMMENT 'unscoped statements: the tables each reached without a tenant predicate',
    crossing_edge_details Array(Tuple(from_trace_id String, to_trace_id String, link Bool, outcome LowCardinality(String))) COMMENT 'per crossing edge, in the same order: the trace ids of the ends of a span link, whether it is a link, succeeded or blocked',
    INDEX trace_id_bloom trace_id TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX tenants_bloom tenants TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX services_bloom services TYPE bloom_filter(0.01) GRANULARITY 1
)
ENGINE = ReplacingMergeTree(version)
PARTITION BY toYYYYMM(detected_at)
ORDER BY (rule, leak_id)
TTL toDateTime(detected_at) + INTERVAL 34560000 SECOND
SETTINGS non_replicated_deduplication_window = 10000;

INSERT INTO `tenantguard`.tenant_leaks_rebuild (leak_id, version, trace_id, rule, severity, status, allowed_by, tenants, services, crossing_edges, mismatches, span_count, first_seen, last_seen, detected_at, collector, reason, keys, queries, crossing_edge_details)
SELECT leak_id, version, trace_id, rule, severity, status, allowed_by, tenants, services, crossing_edges, mismatches, span_count, first_seen, last_seen, detected_at, collector, reason, keys, queries, crossing_edge_details FROM `tenantguard`.tenant_leaks
SETTINGS max_partitions_per_insert_block = 0;

EXCHANGE TABLES `tenantguard`.tenant_leaks AND `tenantguard`.tenant_leaks_rebuild;

-- then, in any case:

DROP TABLE IF EXISTS `tenantguard`.tenant_leaks_rebuild SYNC;

-- migration 7: tenant_leak_spans by detection time

-- only while this counts more than 0 (a table created before migration 7):
-- SELECT count() FROM system.tables WHERE database = 'tenantguard' AND name = 'tenant_leak_spans' AND partition_key NOT LIKE '%detected_at%'

DROP TABLE IF EXISTS `tenantguard`.tenant_leak_spans_rebuild SYNC;

CREATE TABLE `tenantguard`.tenant_leak_spans_rebuild
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
    last_seen DateTime64(9, 'UTC') COMMENT 'last_seen of the finding',
    outcome LowCardinality(String) COMMENT 'succeeded or blocked, when the result of the span is known',
    data Bool COMMENT 'the span touched the data of the foreign tenant',
    detected_at DateTime64(9, 'UTC') DEFAULT last_seen COMMENT 'detected_at of the finding: partition and retention (collector time)',
    INDEX trace_id_bloom trace_id TYPE bloom_filter(0.01) GRANULARITY 1
)
ENGINE = ReplacingMergeTree(version)
PARTITION BY toYYYYMM(detected_at)
ORDER BY (leak_id, span_id)
TTL toDateTime(detected_at) + INTERVAL 34560000 SECOND
SETTINGS non_replicated_deduplication_window = 10000;

INSERT INTO `tenantguard`.tenant_leak_spans_rebuild (leak_id, version, trace_id, evidence_index, span_id, parent_span_id, service, span_name, kind, tenant, tenant_key, start_time, duration_ns, status_code, attributes, first_seen, last_seen, outcome, data, detected_at)
SELECT s.leak_id, s.version, s.trace_id, s.evidence_index, s.span_id, s.parent_span_id, s.service, s.span_name, s.kind, s.tenant, s.tenant_key, s.start_time, s.duration_ns, s.status_code, s.attributes, s.first_seen, s.last_seen, s.outcome, s.data, if(detected > toDateTime64(0, 9, 'UTC'), detected, s.detected_at) AS detected_at
FROM `tenantguard`.tenant_leak_spans AS s
LEFT JOIN (SELECT leak_id, min(detected_at) AS detected FROM `tenantguard`.tenant_leaks GROUP BY leak_id) AS l USING (leak_id)
SETTINGS max_partitions_per_insert_block = 0, join_use_nulls = 0;

EXCHANGE TABLES `tenantguard`.tenant_leak_spans AND `tenantguard`.tenant_leak_spans_rebuild;

-- then, in any case:

DROP TABLE IF EXISTS `tenantguard`.tenant_leak_spans_rebuild SYNC;

-- migration 8: tenant_leaks status comment lists reclassified

ALTER TABLE `tenantguard`.tenant_leaks
    COMMENT COLUMN status 'open, closed, allowed or reclassified';

-- migration 9: tenant_coverage

CREATE TABLE IF NOT EXISTS `tenantguard`.tenant_coverage
(
    hour DateTime('UTC') COMMENT 'start of the hour, by the collector clock',
    tenant LowCardinality(String) COMMENT '_other holds the tenants past the per-hour cap of a collector',
    service LowCardinality(String) COMMENT 'empty on the row of the tenant; a service name on its per-service rows',
    traces UInt64 COMMENT 'traces that touched the tenant (through the service, on a service row)',
    spans UInt64 COMMENT 'spans of the traces the tenant led; tenant row only',
    spans_missing_tenant UInt64 COMMENT 'spans of tenant-aware services with no tenant; tenant row only',
    crossings_succeeded UInt64 COMMENT 'traces whose crossing into another tenant succeeded; tenant row only',
    crossings_refused UInt64 COMMENT 'traces whose crossing was refused (blocked attempts); tenant row only',
    unscoped_queries UInt64 COMMENT 'statements without a tenant predicate; tenant row only',
    traces_without_tenant UInt64 COMMENT 'traces with a span of the service without a tenant; service rows only',
    collectors SimpleAggregateFunction(groupUniqArrayArray, Array(String)) COMMENT 'collector instances whose counts the row holds'
)
ENGINE = SummingMergeTree((traces, spans, spans_missing_tenant, crossings_succeeded, crossings_refused, unscoped_queries, traces_without_tenant, collectors))
PARTITION BY toYYYYMM(hour)
ORDER BY (hour, tenant, service)
TTL hour + INTERVAL 34560000 SECOND
SETTINGS non_replicated_deduplication_window = 10000;
