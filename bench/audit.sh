#!/usr/bin/env bash
# Audit log benchmark: durable append throughput, Open time, memory per
# record and search latency over a large log.
#
#   bench/audit.sh [-n RECORDS] [-c COUNT] [-t BENCHTIME] [-q SEARCHES] [-k]
#
#   -n  records in the log searched and opened (default 1000000)
#   -c  repetitions of the append benchmarks; the median is reported (default 3)
#   -t  time per append benchmark (default 3s)
#   -q  searches per kind for the latency percentiles (default 2000)
#   -k  keep the scratch folder (the built log; printed at the end)
#
# Steps, all on this machine, in one run (node/audit/bench_test.go):
#   1. durable appends (each Append returns after its record is fsynced;
#      concurrent appends share an fsync) from 1, 8 and 64 goroutines, and
#      the anchor: one goroutine writing frames of the same size to a plain
#      file with an fsync after each, no log around it;
#   2. a log of RECORDS synthetic records (a year of one facility: 50,000
#      patients, 2,000 users, 20 facilities) written as Append writes them
#      but synced once at the end (untimed);
#   3. Open of that log (leaves cache present) and the search index built on
#      the first search: time and heap per record;
#   4. searches with random keys by patient (all ~20 records), by user (the
#      newest 100) and by date range (the first 100 of one day): p50 and p99
#      latency of Log.Search, which includes its own durable "Audit Log
#      Used" record and re-checks each record read against the Merkle tree.
#
# Needs: go. The scratch folder is under $TMPDIR (about 250 MB at 1M records).
set -euo pipefail

records=1000000 count=3 benchtime=3s searches=2000 keep=0
while getopts "n:c:t:q:k" opt; do
	case $opt in
	n) records=$OPTARG ;;
	c) count=$OPTARG ;;
	t) benchtime=$OPTARG ;;
	q) searches=$OPTARG ;;
	k) keep=1 ;;
	*) sed -n '2,12p' "$0"; exit 2 ;;
	esac
done

root=$(cd "$(dirname "$0")/.." && pwd)
scratch=$(mktemp -d "${TMPDIR:-/tmp}/dicomesh-audit-bench.XXXXXX")
if [ "$keep" = 0 ]; then
	trap 'rm -rf "$scratch"' EXIT
fi

cd "$root"
go test -c -o "$scratch/audit.test" ./node/audit/
cd "$scratch" # TempDir of the append benchmarks is under $TMPDIR; the log under $scratch

echo "# $(date -u +%Y-%m-%dT%H:%MZ) $(nproc) CPUs, load $(cut -d' ' -f1 /proc/loadavg), $(go version | cut -d' ' -f3)"
echo "# disk: $(df -h "$scratch" | awk 'NR==2 {print $1}')"

./audit.test -test.run '^$' -test.bench 'AppendDurable|FsyncAnchor' \
	-test.benchtime "$benchtime" -test.count "$count" | tee appends.txt | grep -E '^Benchmark' || true

export DICOMESH_AUDIT_BENCH_RECORDS=$records DICOMESH_AUDIT_BENCH_DIR=$scratch/log
./audit.test -test.run '^$' -test.bench '^BenchmarkOpen$' -test.benchtime 3x -test.v | tee open.txt | grep -E '^Benchmark|built' || true
./audit.test -test.run '^$' -test.bench '^BenchmarkSearch$' -test.benchtime "${searches}x" | tee search.txt | grep -E '^Benchmark' || true

# metric NAME UNIT FILE: the median of the values of UNIT on NAME's lines.
metric() {
	local vals n
	vals=$(grep -E "^$1(-[0-9]+)?[[:space:]]" "$3" |
		awk -v unit="$2" '{ for (i = 3; i < NF; i++) if ($(i+1) == unit) print $i }' | sort -g)
	if [ -z "$vals" ]; then
		echo 0
		return
	fi
	n=$(echo "$vals" | wc -l)
	echo "$vals" | sed -n "$(((n + 1) / 2))p"
}

anchor=$(metric BenchmarkFsyncAnchor records/s appends.txt)
echo
echo "| what | figure | vs anchor |"
echo "|---|---|---|"
printf '| fsync anchor (write+fsync one frame) | %.0f records/s | 1x |\n' "$anchor"
for g in 1 8 64; do
	v=$(metric "BenchmarkAppendDurable/appenders=$g" records/s appends.txt)
	printf '| durable append, %d appenders | %.0f records/s | %.2fx |\n' "$g" "$v" "$(awk -v a="$v" -v b="$anchor" 'BEGIN { print (b > 0 ? a / b : 0) }')"
done
printf '| Open, %d records | %.3f s | |\n' "$records" "$(metric BenchmarkOpen open-s open.txt)"
printf '| first search (index build) | %.3f s | |\n' "$(metric BenchmarkOpen index-s open.txt)"
printf '| heap after Open | %.1f B/record | |\n' "$(metric BenchmarkOpen open-B/record open.txt)"
printf '| heap of the search index | %.1f B/record | |\n' "$(metric BenchmarkOpen index-B/record open.txt)"
for k in patient user daterange; do
	printf '| search by %s | p50 %s ms, p99 %s ms (%s records) | |\n' "$k" \
		"$(metric "BenchmarkSearch/$k" p50-ms search.txt)" "$(metric "BenchmarkSearch/$k" p99-ms search.txt)" \
		"$(metric "BenchmarkSearch/$k" records/search search.txt)"
done
if [ "$keep" = 1 ]; then
	echo "# kept $scratch"
fi
