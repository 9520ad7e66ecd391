#!/usr/bin/env bash
# Transfer benchmark: a 400-slice CT pulled from one hospital's node to
# another's, against Orthanc-to-Orthanc transfer of the same files, side by
# side in one run.
#
#   bench/transfer.sh [-n REPS] [-k]
#
#   -n  repetitions (default 3); medians are reported
#   -k  keep the scratch folder (printed at the end)
#
# Steps, all on this machine, all in one run:
#   1. the anchors' gen_study.py writes the CT (400 x 512x512 16-bit, about
#      210 MB) under $BASELINES_DIR/data/ct400;
#   2. Orthanc (the anchor): ../shared/anchors/baselines.py `peer --quick`
#      starts Orthanc A and B, C-STOREs the CT into A, and times
#      POST A/peers/b/store (synchronous HTTP push), the fastest Orthanc path
#      measured here (HTTP: Orthanc's TcpNoDelay default, on);
#   3. dicomesh: a rural node founds a federation and ingests the CT; per
#      repetition a fresh tertiary node joins by invitation and runs, and
#      `dicomesh pull MANIFEST --purpose TREAT` is timed end to end: the
#      signed request, the owner's consent check and audit record, the
#      grant, fetching every block over libp2p (verified against its CID),
#      decrypting and checking every instance against the manifest, and the
#      durable commit. The command's process start is inside the time.
# The ratio is Orthanc's time over dicomesh's: above 1, dicomesh is faster.
#
# Needs: go, orthanc, dcmtk, python3-pydicom, python3-numpy, python3-requests
# (run by /usr/bin/python3). Orthanc listens on the anchors' ports
# (18042/18043, 14242/14243); dicomesh on ephemeral loopback ports. Every
# process is stopped by its PID when the script exits.
set -euo pipefail

reps=3 keep=0
while getopts "n:kh" o; do
	case $o in
	n) reps=$OPTARG ;;
	k) keep=1 ;;
	*) sed -n '2,30p' "$0"; exit 2 ;;
	esac
done

root=$(cd "$(dirname "$0")/.." && pwd)
anchors=$root/../shared/anchors
work=$(mktemp -d /tmp/dicomesh-transfer.XXXXXX)
export BASELINES_DIR=$work/baselines
pids=()
cleanup() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	/usr/bin/python3 "$anchors/baselines.py" stop >/dev/null 2>&1 || true
	if [[ $keep == 0 ]]; then rm -rf "$work"; else echo "kept $work"; fi
}
trap cleanup EXIT

echo "building dicomesh"
(cd "$root" && go build -o "$work/dicomesh" ./cmd/dicomesh)
dm=$work/dicomesh

echo "generating the CT"
/usr/bin/python3 "$anchors/baselines.py" gen >/dev/null
ct=$BASELINES_DIR/data/ct400
bytes=$(du -sb "$ct" | cut -f1)

echo "Orthanc A -> B (peers HTTP push), $reps repetitions"
/usr/bin/python3 "$anchors/baselines.py" peer -n "$reps" --quick --only "peers HTTP push (POST" >"$work/orthanc.log" 2>&1 ||
	{ cat "$work/orthanc.log"; exit 1; }
/usr/bin/python3 "$anchors/baselines.py" stop >/dev/null 2>&1 || true

# waitfile FILE: wait for a running node's node.json.
waitfile() { for _ in $(seq 300); do [[ -s $1 ]] && return 0; sleep 0.1; done; echo "timeout: $1"; exit 1; }

run() { # run HOME: start a node in the background
	"$dm" --home "$1" run --p2p /ip4/127.0.0.1/tcp/0 --http 127.0.0.1:0 >"$1.log" 2>&1 &
	pids+=($!)
	waitfile "$1/node.json"
}

echo "dicomesh: the rural node founds the federation and ingests the CT"
rural=$work/rural
"$dm" --home "$rural" init --facility Rural >/dev/null
"$dm" --home "$rural" federation create --name Bench >/dev/null
run "$rural"
"$dm" --home "$rural" ingest "$ct" >/dev/null

# The patient, as the searching physician knows them.
read -r pname pdob psex < <(/usr/bin/python3 -c "import json; s=json.load(open('$ct/manifest.json'))['studies'][0]; print('^'.join(s['name'].split('^')[:2]), s['dob'], s['sex'])")
samples=()
for i in $(seq "$reps"); do
	t=$work/tertiary$i
	"$dm" --home "$t" init --facility "Tertiary $i" >/dev/null
	"$dm" --home "$t" federation join "$("$dm" --home "$rural" federation invite --name "Tertiary $i")" >/dev/null
	run "$t"
	man=""
	for _ in $(seq 300); do
		man=$("$dm" --home "$t" find --name "$pname" --birth-date "$pdob" --sex "$psex" -o json 2>/dev/null |
			/usr/bin/python3 -c 'import json,sys; d=json.load(sys.stdin); print(d[0]["manifest_id"] if d else "")' 2>/dev/null || true)
		[[ -n $man ]] && break
		sleep 0.1
	done
	[[ -n $man ]] || { echo "the manifest did not reach the tertiary node"; exit 1; }
	s=$(date +%s.%N)
	"$dm" --home "$t" pull "$man" --purpose TREAT --user bench >/dev/null
	e=$(date +%s.%N)
	samples+=("$(echo "$e - $s" | bc)")
done

median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
d=$(median "${samples[@]}")
o=$(/usr/bin/python3 - "$BASELINES_DIR/results" <<'EOF'
import json, glob, sys
for f in glob.glob(sys.argv[1] + "/*.json"):
    r = json.load(open(f))
    if "peers HTTP push (POST" in r["name"] and r["name"].endswith("time"):
        print(r["median"])
        break
EOF
)
mb=$(echo "$bytes / 1000000" | bc -l)
printf '\nCT 400 instances, %.1f MB, median of %d, 2 CPUs, load %s\n\n' "$mb" "$reps" "$(cut -d' ' -f1-3 /proc/loadavg)"
printf '| what | s | MB/s | vs Orthanc |\n|---|---|---|---|\n'
printf '| dicomesh pull (request, consent, grant, fetch, verify, durable commit) | %.2f | %.0f | %.2fx |\n' "$d" "$(echo "$mb / $d" | bc -l)" "$(echo "$o / $d" | bc -l)"
printf '| Orthanc A->B peers HTTP push (synchronous) | %.2f | %.0f | |\n' "$o" "$(echo "$mb / $o" | bc -l)"
printf '\nsamples (s): dicomesh pull %s\n' "${samples[*]}"
