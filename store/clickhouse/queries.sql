-- tenantguard leak history: analyst queries for ClickHouse.
--
-- tenant_leaks is a ReplacingMergeTree: it may hold several versions of a
-- finding (an insert keeps only the newest version of each finding it
-- carries, background merges drop older ones when they like, and a journal
-- shipped again after its cursor was deleted adds copies until they do).
-- So no query here reads tenant_leaks' mutable columns directly:
-- they read tenant_leaks_latest, the view (created by the schema
-- migrations) that keeps, for each leak_id, the values of its highest
-- version with argMax(column, version) ... GROUP BY leak_id. That answer is
-- exact whether or not parts have merged, across partitions and shards, and
-- whatever the session's FINAL and skip-index settings. Filters on the
-- view's columns apply to the latest version only (ClickHouse never pushes
-- them below the GROUP BY), which is the point: a finding whose latest
-- status is "allowed" is not counted because an older version was "open".
--
-- The `tenantguard leaks` command runs these exact texts (store/clickhouse
-- embeds this file; a test fails if Go and this file disagree).
--
-- Parameters are ClickHouse query parameters. In clickhouse-client:
--
--   clickhouse-client --database tenantguard \
--     --param_since='2026-03-01 00:00:00' --param_tenant='' --param_service='' \
--     --param_rule='' --param_include_allowed=0 --param_top=10
--
-- then paste a query. Empty tenant, service and rule match everything;
-- include_allowed=1 also counts findings withdrawn by an allow rule; since
-- compares with last_seen (UTC).

-- name: list_findings
-- The latest version of each matching finding, most recently seen first:
-- what `tenantguard leaks list` prints.
SELECT
    leak_id, version, trace_id, rule, severity, status, allowed_by, tenants, services,
    crossing_edges, mismatches, span_count, first_seen, last_seen, detected_at, collector,
    reason, keys, queries, crossing_edge_details
FROM tenant_leaks_latest
WHERE last_seen >= {since:DateTime64(9)}
    AND ({tenant:String} = '' OR has(tenants, {tenant:String}))
    AND ({service:String} = '' OR has(services, {service:String}))
    AND ({rule:String} = '' OR rule = {rule:String})
    AND ({include_allowed:UInt8} = 1 OR status != 'allowed')
ORDER BY last_seen DESC, leak_id

-- name: show_finding
-- The latest version of one finding. leak_id is the view's GROUP BY key,
-- so the filter is applied before aggregating and uses the primary key.
SELECT
    leak_id, version, trace_id, rule, severity, status, allowed_by, tenants, services,
    crossing_edges, mismatches, span_count, first_seen, last_seen, detected_at, collector,
    reason, keys, queries, crossing_edge_details
FROM tenant_leaks_latest
WHERE leak_id = {leak_id:String}

-- name: findings_of_trace
-- Every finding of one trace (one per rule that fired), latest versions.
-- The trace id is looked up in tenant_leaks (bloom filter index on
-- trace_id), then the leak ids in the view. GLOBAL IN keeps it valid when
-- the tables are Distributed.
SELECT
    leak_id, version, trace_id, rule, severity, status, allowed_by, tenants, services,
    crossing_edges, mismatches, span_count, first_seen, last_seen, detected_at, collector,
    reason, keys, queries, crossing_edge_details
FROM tenant_leaks_latest
WHERE leak_id GLOBAL IN (
    SELECT leak_id FROM tenant_leaks WHERE trace_id = {trace_id:FixedString(32)}
)
ORDER BY rule, leak_id

-- name: finding_spans
-- The evidence spans of some findings: for each (leak_id, span_id) the row
-- of the highest version that recorded it. tenant_leak_spans is a
-- ReplacingMergeTree(version) ordered by (leak_id, span_id), and LIMIT 1 BY
-- does at query time what merges do eventually. The spans of a finding's
-- latest version are the rows whose version equals it.
SELECT
    leak_id, version, evidence_index, span_id, parent_span_id, service, span_name, kind, tenant, tenant_key,
    start_time, duration_ns, status_code, attributes, outcome, data
FROM tenant_leak_spans
WHERE leak_id IN {leak_ids:Array(String)}
ORDER BY leak_id, span_id, version DESC
LIMIT 1 BY leak_id, span_id

-- name: findings_per_tenant_pair_per_day
-- Findings per unordered tenant pair (tenant_a < tenant_b) per UTC day of
-- first_seen. A finding with three tenants counts for each of its pairs.
SELECT
    day,
    tenant_a,
    tenant_b,
    uniqExact(leak_id) AS findings
FROM
(
    SELECT leak_id, toDate(first_seen) AS day, tenants, arrayJoin(tenants) AS tenant_a
    FROM tenant_leaks_latest
    WHERE last_seen >= {since:DateTime64(9)}
        AND ({tenant:String} = '' OR has(tenants, {tenant:String}))
        AND ({service:String} = '' OR has(services, {service:String}))
        AND ({rule:String} = '' OR rule = {rule:String})
        AND ({include_allowed:UInt8} = 1 OR status != 'allowed')
)
ARRAY JOIN tenants AS tenant_b
WHERE tenant_a < tenant_b
GROUP BY day, tenant_a, tenant_b
ORDER BY day, tenant_a, tenant_b

-- name: top_crossing_edges
-- The parent-to-child steps where the tenant changes that appear in the most
-- findings: the code paths to fix first.
SELECT
    tupleElement(edge, 'from_service') AS from_service,
    tupleElement(edge, 'from_span') AS from_span,
    tupleElement(edge, 'to_service') AS to_service,
    tupleElement(edge, 'to_span') AS to_span,
    uniqExact(leak_id) AS findings,
    max(last_seen) AS latest_seen
FROM tenant_leaks_latest
ARRAY JOIN crossing_edges AS edge
WHERE last_seen >= {since:DateTime64(9)}
    AND ({tenant:String} = '' OR has(tenants, {tenant:String}))
    AND ({service:String} = '' OR has(services, {service:String}))
    AND ({rule:String} = '' OR rule = {rule:String})
    AND ({include_allowed:UInt8} = 1 OR status != 'allowed')
GROUP BY from_service, from_span, to_service, to_span
ORDER BY findings DESC, from_service, from_span, to_service, to_span
LIMIT {top:UInt32}

-- name: mean_time_to_detection
-- Mean time from the first span of the trace to the first version of the
-- finding, per rule, in seconds.
SELECT
    rule,
    count() AS findings,
    avg(toUnixTimestamp64Nano(detected_at) - toUnixTimestamp64Nano(first_seen)) / 1e9 AS mean_seconds
FROM tenant_leaks_latest
WHERE last_seen >= {since:DateTime64(9)}
    AND ({tenant:String} = '' OR has(tenants, {tenant:String}))
    AND ({service:String} = '' OR has(services, {service:String}))
    AND ({rule:String} = '' OR rule = {rule:String})
    AND ({include_allowed:UInt8} = 1 OR status != 'allowed')
GROUP BY rule
ORDER BY rule

-- name: open_findings_by_service
-- Findings still open (their trace is in a collector's memory), per service
-- the trace passed through, most first.
SELECT
    service,
    uniqExact(leak_id) AS findings
FROM tenant_leaks_latest
ARRAY JOIN services AS service
WHERE status = 'open'
    AND last_seen >= {since:DateTime64(9)}
    AND ({tenant:String} = '' OR has(tenants, {tenant:String}))
    AND ({service:String} = '' OR has(services, {service:String}))
    AND ({rule:String} = '' OR rule = {rule:String})
    AND ({include_allowed:UInt8} = 1 OR status != 'allowed')
GROUP BY service
ORDER BY findings DESC, service

-- name: coverage_per_tenant_hour
-- Coverage of each tenant per hour from since up to until (UTC), summed
-- over collectors and takes: rows of one (hour, tenant, service) add up
-- whether or not SummingMergeTree has merged them yet. Service '' holds the
-- tenant's own counts, each service's row its share of the tenant's traces;
-- all_collectors names the collectors that counted. What
-- `tenantguard leaks report` reads. Empty tenant matches every tenant.
SELECT
    hour,
    tenant,
    service,
    sum(traces) AS sum_traces,
    sum(spans) AS sum_spans,
    sum(spans_missing_tenant) AS sum_spans_missing_tenant,
    sum(crossings_succeeded) AS sum_crossings_succeeded,
    sum(crossings_refused) AS sum_crossings_refused,
    sum(unscoped_queries) AS sum_unscoped_queries,
    sum(traces_without_tenant) AS sum_traces_without_tenant,
    groupUniqArrayArray(collectors) AS all_collectors
FROM tenant_coverage
WHERE hour >= {since:DateTime64(9)} AND hour < {until:DateTime64(9)}
    AND ({tenant:String} = '' OR tenant = {tenant:String})
GROUP BY hour, tenant, service
ORDER BY hour, tenant, service
