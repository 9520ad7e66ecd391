#!/usr/bin/env bash
# Ingest and export benchmark: dicomesh against Orthanc, side by side in one run.
#
#   bench/ingest.sh [-n REPS] [-t THREADS] [-s SLICES] [-g] [-k]
#
#   -n  repetitions of every measurement; the median is reported (default 3)
#   -t  Orthanc client threads (default 4, the anchors' fastest durable path)
#   -s  CT slices (default 400: about 210 MB)
#   -g  generate the CT with the anchors' gen_study.py (pydicom) instead of
#       `dicomesh synth` (same phantom shapes and noise level, other UIDs)
#   -k  keep the scratch folder (printed at the end)
#
# Steps, all on this machine, all in one run:
#   1. build ./cmd/dicomesh and generate the CT with `dicomesh synth --preset ct`
#      (internal/synth: 512x512 16-bit slices, about 525 KB each);
#   2. dicomesh: a fresh home per repetition, `init`, then `ingest DIR`, which is
#      durable (every block and the index synced before it returns);
#   3. dicomesh: `export STUDY --to OUT`; every exported file is compared with
#      the generated ones by SHA-256;
#   4. Orthanc (Debian's package): a fresh server per repetition with
#      SyncStorageArea=true and no compression, fed by THREADS keep-alive HTTP
#      clients (POST /instances, the anchors' own post_instances);
#   5. Orthanc: every instance fetched back (GET /instances/{id}/file, THREADS
#      clients) into a folder: the export anchor.
# The ratio column is Orthanc's time over dicomesh's for the same operation:
# above 1 means dicomesh is faster.
#
# Needs: go, orthanc, python3-requests (run by /usr/bin/python3), sha256sum.
#   apt-get install -y orthanc python3-requests
# Ports: Orthanc HTTP on $ORTHANC_HTTP_PORT (default 28042). Orthanc 1.10 has no
# bind-address option: it is configured with RemoteAccessAllowed=false (it
# answers loopback clients only) and its DICOM listener disabled; dicomesh
# listens on nothing here. Every process the script starts is stopped by its
# PID when the script exits, however it exits.
set -euo pipefail

reps=3 threads=4 slices=400 keep=0 gen=synth
while getopts "n:t:s:gkh" o; do
	case $o in
	n) reps=$OPTARG ;;
	t) threads=$OPTARG ;;
	s) slices=$OPTARG ;;
	k) keep=1 ;;
	g) gen=anchors ;;
	*) sed -n '2,/^set -e/p' "$0" | sed 's/^# \{0,1\}//;$d'; exit 2 ;;
	esac
done

root=$(cd "$(dirname "$0")/.." && pwd)
port=${ORTHANC_HTTP_PORT:-28042}
py=/usr/bin/python3
client="$root/bench/orthanc_client.py"
work=$(mktemp -d /tmp/dicomesh-bench.XXXXXX)
export BASELINES_DIR="$work/baselines" # where importing baselines.py may write

orthanc_pid=""
cleanup() {
	if [[ -n $orthanc_pid ]]; then
		kill -TERM "$orthanc_pid" 2>/dev/null || true
		wait "$orthanc_pid" 2>/dev/null || true
	fi
	if ((keep)); then echo "kept $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

for tool in go Orthanc sha256sum; do
	command -v "$tool" >/dev/null || { echo "ingest.sh: $tool not found (see the header)" >&2; exit 1; }
done
"$py" -c 'import requests' 2>/dev/null || { echo "ingest.sh: python3-requests missing" >&2; exit 1; }
if curl -s -o /dev/null "http://127.0.0.1:$port/"; then
	echo "ingest.sh: something already listens on 127.0.0.1:$port (set ORTHANC_HTTP_PORT)" >&2
	exit 1
fi

now() { echo "$EPOCHREALTIME"; }
since() { awk -v a="$1" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.4f", b - a }'; }
median() { printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
sums() { find "$1" -name '*.dcm' -type f -print0 | xargs -0 sha256sum | awk '{ print $1 }' | sort; }

echo "building dicomesh" >&2
(cd "$root" && go build -o "$work/dicomesh" ./cmd/dicomesh)
dm="$work/dicomesh"

study="$work/ct"
t=$(now)
if [[ $gen == synth ]]; then
	"$dm" synth --preset ct --slices "$slices" --out "$study" >&2
else
	"$py" "${ANCHORS:-$root/../shared/anchors}/gen_study.py" --preset ct --slices "$slices" --seed 1 --out "$study"
fi
synth_s=$(since "$t")
nfiles=$(find "$study" -name '*.dcm' -type f | wc -l)
nbytes=$(find "$study" -name '*.dcm' -type f -printf '%s\n' | awk '{ s += $1 } END { print s }')
uid=$(sed -n 's/^ *"study_uid": "\([0-9.]*\)".*/\1/p' "$study/manifest.json")
sums "$study" >"$work/original.sums"
[[ -n $uid && $nfiles == "$slices" ]] || { echo "ingest.sh: synth wrote $nfiles files, study '$uid'" >&2; exit 1; }

start_orthanc() { # $1: folder
	mkdir -p "$1/storage"
	cat >"$1/orthanc.json" <<-EOF
		{
		  "Name": "bench",
		  "StorageDirectory": "$1/storage",
		  "IndexDirectory": "$1/storage",
		  "StorageCompression": false,
		  "SyncStorageArea": true,
		  "Plugins": [],
		  "HttpServerEnabled": true,
		  "HttpPort": $port,
		  "RemoteAccessAllowed": false,
		  "AuthenticationEnabled": false,
		  "DicomServerEnabled": false,
		  "SaveJobs": false,
		  "StableAge": 60,
		  "HttpTimeout": 600
		}
	EOF
	Orthanc --logfile="$1/orthanc.log" "$1/orthanc.json" >"$1/stdout.log" 2>&1 &
	orthanc_pid=$!
	for _ in $(seq 300); do
		curl -sf -o /dev/null "http://127.0.0.1:$port/system" && return 0
		kill -0 "$orthanc_pid" 2>/dev/null || break
		sleep 0.1
	done
	echo "ingest.sh: Orthanc did not start; see $1" >&2
	exit 1
}
stop_orthanc() {
	kill -TERM "$orthanc_pid"
	wait "$orthanc_pid" || true
	orthanc_pid=""
}

di=() de=() oi=() oe=()
for ((r = 1; r <= reps; r++)); do
	echo "repetition $r/$reps" >&2
	home="$work/home$r"
	"$dm" --home "$home" init >/dev/null
	sync
	t=$(now)
	out=$("$dm" --home "$home" ingest "$study")
	di+=("$(since "$t")")
	grep -q "stored $nfiles instances" <<<"$out" || { echo "ingest.sh: dicomesh ingest: $out" >&2; exit 1; }

	sync
	t=$(now)
	"$dm" --home "$home" export "$uid" --to "$work/export$r" >/dev/null
	de+=("$(since "$t")")
	sums "$work/export$r" | cmp -s - "$work/original.sums" || { echo "ingest.sh: dicomesh export differs from the originals" >&2; exit 1; }
	rm -rf "$work/export$r" "$home"

	start_orthanc "$work/orthanc$r"
	sync
	oi+=("$("$py" "$client" post "http://127.0.0.1:$port" "$study" "$threads")")
	got=$("$py" "$client" count "http://127.0.0.1:$port")
	[[ $got == "$nfiles" ]] || { echo "ingest.sh: Orthanc stored $got of $nfiles instances" >&2; exit 1; }
	sync
	oe+=("$("$py" "$client" fetch "http://127.0.0.1:$port" "$work/oexport$r" "$threads")")
	sums "$work/oexport$r" | cmp -s - "$work/original.sums" || { echo "ingest.sh: Orthanc returned different files" >&2; exit 1; }
	stop_orthanc
	rm -rf "$work/oexport$r" "$work/orthanc$r"
done

row() { # label seconds anchor-seconds
	awk -v l="$1" -v s="$2" -v a="$3" -v n="$nfiles" -v b="$nbytes" \
		'BEGIN { printf "| %-48s | %7.2f | %7.0f | %6.0f | %9s |\n", l, s, n / s, b / 1e6 / s, (a == "" ? "" : sprintf("%.2fx", a / s)) }'
}
mi=$(median "${di[@]}") me=$(median "${de[@]}") moi=$(median "${oi[@]}") moe=$(median "${oe[@]}")
echo
echo "CT $nfiles instances, $(awk -v b="$nbytes" 'BEGIN { printf "%.1f", b / 1e6 }') MB (generated by $gen in ${synth_s}s), median of $reps, $(nproc) CPUs, load $(cut -d' ' -f1-3 /proc/loadavg)"
echo "Orthanc $(dpkg-query -W -f '${Version}' orthanc 2>/dev/null || echo '?'): SyncStorageArea=true, $threads keep-alive HTTP clients; dicomesh $(git -C "$root" rev-parse --short HEAD)"
echo
echo "| what                                             |       s |  inst/s |   MB/s | vs Orthanc |"
echo "|---|---|---|---|---|"
row "dicomesh ingest (durable)" "$mi" "$moi"
row "Orthanc POST /instances x$threads (SyncStorageArea)" "$moi" ""
row "dicomesh export (verified)" "$me" "$moe"
row "Orthanc GET /instances/{id}/file x$threads" "$moe" ""
echo
echo "samples (s): dicomesh ingest ${di[*]}; Orthanc ingest ${oi[*]}; dicomesh export ${de[*]}; Orthanc fetch ${oe[*]}"
