#!/usr/bin/env bash
# Runs every benchmark of BENCHMARKS.md and writes the raw outputs to
# results/*.txt and benchstat summaries to results/*.stat. About 45 minutes
# on the 2-core development machine under other engineers' load (less on a
# quiet one). COUNT (default 6) sets the repetitions, OUT (default results)
# the directory written. Arguments pick sections (./run.sh 3 4 runs live
# heap and latency); none runs them all.
set -euo pipefail
cd "$(dirname "$0")"
COUNT=${COUNT:-6}
out=${OUT:-results}
mkdir -p "$out"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
benchstat() { go run golang.org/x/perf/cmd/benchstat@v0.0.0-20260908200009-22c9c6c9d4da "$@"; }
tg() { "$tmp/tg.test" -test.run '^$' "$@"; }
peers() { (cd peers && "$tmp/peers.test" -test.run '^$' "$@"); }

want() { [ $# -eq 0 ] || [[ " $SECTIONS " == *" $1 "* ]]; }
SECTIONS="${*:-1 2 3 4 5 6 7 9 11 cov}"

echo "== build"
go test -c -o "$tmp/tg.test" .
(cd peers && go test -c -o "$tmp/peers.test" .)
benchstat -h >/dev/null 2>&1 || true # fetch benchstat once

if want 1; then
echo "== 1. compare: tenantguard, tail_sampling, groupbytrace on the same load, runs interleaved"
# bench/ also runs the floor, read and prototype experiments (floor_test.go).
for _ in $(seq "$COUNT"); do
  tg -test.bench '^BenchmarkCompare$' -test.benchtime 2000x -test.count 1
  peers -test.bench '^BenchmarkCompare$' -test.benchtime 300x -test.count 1
done | grep --line-buffered -v '^pkg:' | tee "$out/compare.txt"
echo "== 1. compare on the fresh-state load: a new processor per iteration of 200,000 spans"
for _ in $(seq "$COUNT"); do
  tg -test.bench '^BenchmarkCompareFresh$' -test.benchtime 5x -test.count 1
  peers -test.bench '^BenchmarkCompareFresh$' -test.benchtime 2x -test.count 1
done | grep --line-buffered -v '^pkg:' | tee "$out/compare-fresh.txt"
fi

if want 2; then
echo "== 2. tenantguard: traffic parameters and optional rules"
tg -test.bench '^BenchmarkTenantguard$' -test.benchtime 1000x -test.count "$COUNT" | tee "$out/tenantguard.txt"
echo "== 2. the optional rules paired: each round runs the reference load with default rules and with each rule"
for _ in $(seq $((COUNT + 2))); do
  tg -test.bench '^BenchmarkTenantguard$/^rules=/^spt=10$/^req=100$/tenants=1000/^leak=0.01$/^il=2$/semconv' -test.benchtime 1000x -test.count 1
done | grep --line-buffered '^Benchmark' | tee "$out/rules.txt"
fi

if want 3; then
echo "== 3. live heap per in-flight trace (reference load's spans, semconv and bare, and the fresh load's)"
{
  tg -test.bench '^BenchmarkLiveHeap$' -test.benchtime 1x -test.count "$COUNT"
  # The peers' heap is deterministic (spread under 1%) and slow to fill.
  peers -test.bench '^BenchmarkLiveHeap$' -test.benchtime 1x -test.count 3
} | grep --line-buffered -v '^pkg:' | tee "$out/liveheap.txt"
fi

if want 4; then
echo "== 4. detection latency"
{
  tg -test.bench '^BenchmarkDetectionLatency$' -test.benchtime 20x -test.count "$COUNT"
  peers -test.bench '^BenchmarkDetectionLatency$' -test.benchtime 3x -test.count 3
} | grep --line-buffered -v '^pkg:' | tee "$out/latency.txt"
fi

if want 5; then
echo "== 5. concurrency: GOMAXPROCS 1 and 2"
# The ceiling (one private processor per core, nothing shared) runs in the
# same session, so the two ratios can be compared.
for _ in $(seq "$COUNT"); do
  tg -test.bench '^BenchmarkParallel$|^BenchmarkScalingCeiling$' -test.benchtime 2000x -test.count 1 -test.cpu 1,2
  tg -test.bench '^BenchmarkParallelFresh$|^BenchmarkScalingCeilingFresh$' -test.benchtime 5x -test.count 1 -test.cpu 1,2
done | grep --line-buffered -v '^pkg:' | tee "$out/parallel.txt"
tg -test.bench '^BenchmarkRenew$' -test.benchtime 2000x -test.count "$COUNT" | tee -a "$out/parallel.txt"
fi

if want 6; then
echo "== 6. memory budget under unique trace ids"
tg -test.bench '^BenchmarkMemoryBudget$' -test.benchtime 1x -test.count 3 | tee "$out/budget.txt"
echo "== 6. what the state costs the garbage collector per collection (100,000 traces held, against none)"
tg -test.bench '^BenchmarkGCMark$' -test.benchtime 20x -test.count "$COUNT" | tee "$out/gcmark.txt"
fi

if want 7; then
  echo "== 7. whole collector, with and without tenantguard"
  go run ./load -spans 1000000 -rate 50000 -reps 3 -experiment bounded | tee "$out/load.txt" # and the bounded prototype where tenantguard stands
fi

if want 9; then
echo "== 9. durable acknowledgement: clean and 1% leaking, 1 and 8 senders"
tg -test.bench '^BenchmarkDurableAck$' -test.benchtime 400x -test.count "$COUNT" | tee "$out/durable.txt"
fi

if want 11; then
echo "== 11. what the disk adds to a leaking request: the journal on tmpfs, then idling as for an fsync, then on the disk"
for _ in $(seq "$COUNT"); do
  tg -test.bench '^BenchmarkDurabilityCost$' -test.benchtime 2000x -test.count 1
done | grep --line-buffered -v '^pkg:' | tee "$out/durability.txt"
echo "== 11. what the state's cache misses cost: the reference load with max_traces 100,000, 20,000 and 2,000"
for _ in $(seq "$COUNT"); do
  tg -test.bench '^BenchmarkStateSize$' -test.benchtime 2000x -test.count 1
done | grep --line-buffered -v '^pkg:' | tee "$out/statesize.txt"
fi

if want cov; then
echo "== cov. per-tenant coverage counting, on vs off in one run, and the harness' own bias (A/A), interleaved"
: > "$out/coverage.txt"; : > "$out/coverage-aa.txt"
for _ in $(seq "$COUNT"); do
  # -count 2: the two runs build the sides in opposite orders.
  tg -test.bench '^BenchmarkCoverageOverhead$' -test.benchtime 2000x -test.count 2 | grep --line-buffered -E '^(Benchmark|goos|goarch|cpu)' | tee -a "$out/coverage.txt"
  TENANTGUARD_BENCH_AA=1 tg -test.bench '^BenchmarkCoverageOverhead$' -test.benchtime 2000x -test.count 2 | grep --line-buffered -E '^(Benchmark|goos|goarch|cpu)' | tee -a "$out/coverage-aa.txt"
done
fi

echo "== summaries"
stat() { if [ -s "$out/$1.txt" ]; then benchstat "${@:2}" "$out/$1.txt" > "$out/$1.stat"; fi; }
stat compare -col /proc
stat compare-fresh -col /proc
stat tenantguard
stat liveheap -col /proc
stat latency
stat parallel
stat budget
stat load -col /collector
stat durable
stat durability
stat statesize
stat coverage
stat coverage-aa
ls -l "$out"
