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

-- The Grafana dashboard (config/grafana/tenantguard.json, for the
-- grafana-clickhouse-datasource plugin) runs the dashboard_ queries below,
-- each the exact text of a panel or a template variable (a test holds them
-- equal, substitutes the plugin's macros and runs them on the engine).
-- $__timeFilter(column) is the dashboard's time range on column;
-- $__timeInterval(column) buckets column by the panel's interval;
-- ${tenant:sqlstring}, ${service:sqlstring} and ${rule:sqlstring} are the
-- template variables, quoted, '*' when All is picked. Findings are dated by
-- detected_at (the collector's clock) and withdrawn ones (allowed) left out.

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

-- name: dashboard_tenants
-- Template variable tenant: every tenant of a finding or of coverage.
SELECT tenant
FROM
(
    SELECT arrayJoin(tenants) AS tenant FROM tenant_leaks_latest
    UNION ALL
    SELECT tenant FROM tenant_coverage
)
GROUP BY tenant
ORDER BY tenant

-- name: dashboard_services
-- Template variable service: every service of a finding or of coverage.
SELECT service
FROM
(
    SELECT arrayJoin(services) AS service FROM tenant_leaks_latest
    UNION ALL
    SELECT service FROM tenant_coverage WHERE service != ''
)
GROUP BY service
ORDER BY service

-- name: dashboard_rules
-- Template variable rule: every rule that raised a finding.
SELECT rule
FROM tenant_leaks_latest
GROUP BY rule
ORDER BY rule

-- name: dashboard_findings_over_time
-- Panel "Findings over time by rule and severity" (time series).
SELECT
    $__timeInterval(detected_at) AS time,
    concat(rule, ' / ', severity) AS rule_severity,
    count() AS findings
FROM tenant_leaks_latest
WHERE $__timeFilter(detected_at)
    AND (${tenant:sqlstring} = '*' OR has(tenants, ${tenant:sqlstring}))
    AND (${service:sqlstring} = '*' OR has(services, ${service:sqlstring}))
    AND (${rule:sqlstring} = '*' OR rule = ${rule:sqlstring})
    AND status != 'allowed'
GROUP BY time, rule_severity
ORDER BY time, rule_severity

-- name: dashboard_open_critical_findings
-- Panel "Open critical findings" (stat): critical findings whose trace is
-- still open in a collector's memory.
SELECT count() AS open_critical
FROM tenant_leaks_latest
WHERE $__timeFilter(detected_at)
    AND (${tenant:sqlstring} = '*' OR has(tenants, ${tenant:sqlstring}))
    AND (${service:sqlstring} = '*' OR has(services, ${service:sqlstring}))
    AND (${rule:sqlstring} = '*' OR rule = ${rule:sqlstring})
    AND status = 'open'
    AND severity = 'critical'

-- name: dashboard_top_tenant_pairs
-- Panel "Top tenant pairs" (table): findings per unordered tenant pair
-- (tenant_a < tenant_b), most first.
SELECT
    tenant_a,
    tenant_b,
    uniqExact(leak_id) AS findings
FROM
(
    SELECT leak_id, tenants, arrayJoin(tenants) AS tenant_a
    FROM tenant_leaks_latest
    WHERE $__timeFilter(detected_at)
        AND (${tenant:sqlstring} = '*' OR has(tenants, ${tenant:sqlstring}))
        AND (${service:sqlstring} = '*' OR has(services, ${service:sqlstring}))
        AND (${rule:sqlstring} = '*' OR rule = ${rule:sqlstring})
        AND status != 'allowed'
)
ARRAY JOIN tenants AS tenant_b
WHERE tenant_a < tenant_b
GROUP BY tenant_a, tenant_b
ORDER BY findings DESC, tenant_a, tenant_b
LIMIT 10

-- name: dashboard_top_crossing_edges
-- Panel "Top crossing edges" (table): the parent-to-child steps where the
-- tenant changes in the most findings.
SELECT
    tupleElement(edge, 'from_service') AS from_service,
    tupleElement(edge, 'from_span') AS from_span,
    tupleElement(edge, 'to_service') AS to_service,
    tupleElement(edge, 'to_span') AS to_span,
    uniqExact(leak_id) AS findings
FROM tenant_leaks_latest
ARRAY JOIN crossing_edges AS edge
WHERE $__timeFilter(detected_at)
    AND (${tenant:sqlstring} = '*' OR has(tenants, ${tenant:sqlstring}))
    AND (${service:sqlstring} = '*' OR has(services, ${service:sqlstring}))
    AND (${rule:sqlstring} = '*' OR rule = ${rule:sqlstring})
    AND status != 'allowed'
GROUP BY from_service, from_span, to_service, to_span
ORDER BY findings DESC, from_service, from_span, to_service, to_span
LIMIT 10

-- name: dashboard_mean_time_to_detection
-- Panel "Mean time to detection" (table): from the first span of the trace
-- to the first version of the finding, per rule, in seconds.
SELECT
    rule,
    count() AS findings,
    avg(toUnixTimestamp64Nano(detected_at) - toUnixTimestamp64Nano(first_seen)) / 1e9 AS mean_seconds
FROM tenant_leaks_latest
WHERE $__timeFilter(detected_at)
    AND (${tenant:sqlstring} = '*' OR has(tenants, ${tenant:sqlstring}))
    AND (${service:sqlstring} = '*' OR has(services, ${service:sqlstring}))
    AND (${rule:sqlstring} = '*' OR rule = ${rule:sqlstring})
    AND status != 'allowed'
GROUP BY rule
ORDER BY rule

-- name: dashboard_coverage
-- Panel "Coverage per tenant and service" (table): traces checked per
-- tenant (service "(all)") and per service, with those that carried no
-- tenant, summed over collectors and hours.
SELECT
    tenant,
    if(service = '', '(all)', service) AS service_name,
    sum(traces) AS traces_checked,
    sum(traces_without_tenant) AS traces_without_tenant,
    sum(spans_missing_tenant) AS spans_missing_tenant,
    sum(crossings_succeeded) AS crossings_succeeded
FROM tenant_coverage
WHERE $__timeFilter(hour)
    AND (${tenant:sqlstring} = '*' OR tenant = ${tenant:sqlstring})
    AND (${service:sqlstring} = '*' OR service IN ('', ${service:sqlstring}))
GROUP BY tenant, service
ORDER BY tenant, service

-- name: dashboard_blocked_attempts
-- Panel "Blocked attempts" (time series): crossings into another tenant
-- that were refused, per tenant, from the coverage counts.
SELECT
    $__timeInterval(hour) AS time,
    tenant,
    sum(crossings_refused) AS blocked
FROM tenant_coverage
WHERE $__timeFilter(hour)
    AND service = ''
    AND (${tenant:sqlstring} = '*' OR tenant = ${tenant:sqlstring})
GROUP BY time, tenant
HAVING blocked > 0
ORDER BY time, tenant
