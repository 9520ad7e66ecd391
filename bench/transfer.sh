#!/usr/bin/env bash
# Transfer benchmark: a 400-slice CT pulled from one hospital's node to
# another's, against Orthanc-to-Orthanc transfer of the same files, side by
# side in one run.
#
#   bench/transfer.sh [-n REPS] [-l RATE,RTT] [-k]
#
#   -n  repetitions (default 3); medians are reported
#   -l  shape the link between the two sides, e.g. -l 100mbit,40ms: each
#       node (and Orthanc B) sits behind bench/shape, a proxy that limits
#       each direction to RATE and adds RTT, and announces the proxy's
#       address; the times are also compared with the line-rate time of the
#       study's bytes
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
#      The tertiary node leaves the federation and stops after its pull,
#      so that every repetition pulls from the rural node alone.
# The ratio is Orthanc's time over dicomesh's: above 1, dicomesh is faster.
#
# Needs: go, orthanc, dcmtk, python3-pydicom, python3-numpy, python3-requests
# (run by /usr/bin/python3). Orthanc listens on the anchors' ports
# (18042/18043, 14242/14243); dicomesh on ephemeral loopback ports. Every
# process is stopped by its PID when the script exits.
set -euo pipefail

reps=3 keep=0 link=""
while getopts "n:l:kh" o; do
	case $o in
	n) reps=$OPTARG ;;
	l) link=$OPTARG ;;
	k) keep=1 ;;
	*) sed -n '2,/^set -euo/p' "$0" | sed '$d'; exit 2 ;;
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
(cd "$root" && go build -o "$work/dicomesh" ./cmd/dicomesh && go build -o "$work/shape" ./bench/shape)
dm=$work/dicomesh
rate="" rtt=""
if [[ -n $link ]]; then
	IFS=, read -r rate rtt <<<"$link"
	[[ -n $rate && -n $rtt ]] || { echo "-l wants RATE,RTT such as 100mbit,40ms"; exit 2; }
fi
freeport() { /usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
# shape NAME LISTEN_PORT TO_PORT: start a shaped proxy in the background.
shapers=()
shape() {
	"$work/shape" -listen "127.0.0.1:$2" -to "127.0.0.1:$3" -rate "$rate" -rtt "$rtt" >/dev/null 2>"$work/shape-$1.log" &
	pids+=($!)
	shapers+=("$1")
}

echo "generating the CT"
/usr/bin/python3 "$anchors/baselines.py" gen >/dev/null
ct=$BASELINES_DIR/data/ct400
bytes=$(du -sb "$ct" | cut -f1)

osamples=()
if [[ -z $link ]]; then
	echo "Orthanc A -> B (peers HTTP push), $reps repetitions"
	/usr/bin/python3 "$anchors/baselines.py" peer -n "$reps" --quick --only "peers HTTP push (POST" >"$work/orthanc.log" 2>&1 ||
		{ cat "$work/orthanc.log"; exit 1; }
	/usr/bin/python3 "$anchors/baselines.py" stop >/dev/null 2>&1 || true
else
	echo "Orthanc A -> B (peers HTTP push) through a $rate, $rtt link, $reps repetitions"
	sp=$(freeport)
	shape orthanc "$sp" 18043
	ANCHORS=$anchors /usr/bin/python3 "$root/bench/orthanc_shaped.py" "$ct" "$sp" "$reps" >"$work/orthanc.log" 2>&1 ||
		{ cat "$work/orthanc.log"; exit 1; }
	mapfile -t osamples <"$work/orthanc.log"
fi

# waitfile FILE: wait for a running node's node.json.
waitfile() { for _ in $(seq 300); do [[ -s $1 ]] && return 0; sleep 0.1; done; echo "timeout: $1"; exit 1; }

run() { # run HOME: start a node in the background (behind a shaped proxy with -l)
	local p2p=(--p2p /ip4/127.0.0.1/tcp/0)
	if [[ -n $link ]]; then
		local lp sp
		lp=$(freeport) sp=$(freeport)
		shape "$(basename "$1")" "$sp" "$lp"
		p2p=(--p2p "/ip4/127.0.0.1/tcp/$lp" --announce "/ip4/127.0.0.1/tcp/$sp")
	fi
	"$dm" --home "$1" run "${p2p[@]}" --http 127.0.0.1:0 >"$1.log" 2>&1 &
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
	# This node now holds the study, and the next repetition would pull
	# from it too: it leaves the federation (no longer a holder, nor a
	# voter the quorum needs) and stops. Each repetition has one source.
	"$dm" --home "$t" federation leave >/dev/null
	for _ in $(seq 300); do
		"$dm" --home "$rural" federation members -o json | /usr/bin/python3 -c "import json,sys; sys.exit(any(m['name'] == 'Tertiary $i' and m['status'] == 'active' for m in json.load(sys.stdin)))" && break
		sleep 0.1
	done
	kill "$(/usr/bin/python3 -c "import json; print(json.load(open('$t/node.json'))['pid'])")"
	for _ in $(seq 100); do [[ -e $t/node.json ]] || break; sleep 0.1; done
done

median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
d=$(median "${samples[@]}")
if [[ -z $link ]]; then
	o=$(/usr/bin/python3 - "$BASELINES_DIR/results" <<'EOF'
import json, glob, sys
for f in glob.glob(sys.argv[1] + "/*.json"):
    r = json.load(open(f))
    if "peers HTTP push (POST" in r["name"] and r["name"].endswith("time"):
        print(r["median"])
        break
EOF
	)
else
	o=$(median "${osamples[@]}")
fi
mb=$(echo "$bytes / 1000000" | bc -l)
printf '\nCT 400 instances, %.1f MB, median of %d, 2 CPUs, load %s\n\n' "$mb" "$reps" "$(cut -d' ' -f1-3 /proc/loadavg)"
if [[ -z $link ]]; then
	printf '| what | s | MB/s | vs Orthanc |\n|---|---|---|---|\n'
	printf '| dicomesh pull (request, consent, grant, fetch, verify, durable commit) | %.2f | %.0f | %.2fx |\n' "$d" "$(echo "$mb / $d" | bc -l)" "$(echo "$o / $d" | bc -l)"
	printf '| Orthanc A->B peers HTTP push (synchronous) | %.2f | %.0f | |\n' "$o" "$(echo "$mb / $o" | bc -l)"
	printf '\nsamples (s): dicomesh pull %s\n' "${samples[*]}"
	exit 0
fi
# The study's bytes at the link's rate: what a perfect transfer of the
# original files would take.
bps=$(/usr/bin/python3 -c 'import sys; s=sys.argv[1].lower(); m={"gbit":1e9,"mbit":1e6,"kbit":1e3}; u=[k for k in m if s.endswith(k)]; print(float(s[:-len(u[0])])*m[u[0]] if u else float(s.rstrip("bit")))' "$rate")
line=$(echo "$bytes * 8 / $bps" | bc -l)
for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
wait 2>/dev/null || true
printf '| what, through a %s %s link | s | MB/s | vs line rate | vs Orthanc |\n|---|---|---|---|---|\n' "$rate" "$rtt"
printf '| dicomesh pull (request, consent, grant, fetch, verify, durable commit) | %.2f | %.1f | %.2fx | %.2fx |\n' "$d" "$(echo "$mb / $d" | bc -l)" "$(echo "$line / $d" | bc -l)" "$(echo "$o / $d" | bc -l)"
printf '| Orthanc A->B peers HTTP push (synchronous) | %.2f | %.1f | %.2fx | |\n' "$o" "$(echo "$mb / $o" | bc -l)" "$(echo "$line / $o" | bc -l)"
printf '| line rate: %.1f MB at %s | %.2f | | | |\n' "$mb" "$rate" "$line"
printf '\nsamples (s): dicomesh pull %s; Orthanc %s\n' "${samples[*]}" "${osamples[*]}"
echo "carried by the shaped links:"
for n in "${shapers[@]}"; do echo "  $n: $(tail -1 "$work/shape-$n.log")"; done
