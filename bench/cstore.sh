#!/usr/bin/env bash
# C-STORE benchmark: the generated CT sent by dcmtk's storescu over one
# association to a running dicomesh node, to dcmtk's storescp and to
# Orthanc's DICOM server, side by side.
#
#   bench/cstore.sh [-n REPS] [-s SLICES] [-p ASSOCIATIONS]
#
# -p splits the CT over that many storescu processes sending at once, one
# association each (as PACS do to send faster); the time is the last one's.
#
# dicomesh answers each C-STORE once the instance is encrypted and synced
# in its spool (durable), and commits the study to the archive after the
# association; the time is storescu's, then the study is checked in the
# archive, exported and its datasets compared by SHA-256 with the generated
# files (untimed; the file meta is the receiver's own, so it is left out).
# Orthanc runs with SyncStorageArea=true. storescp writes files and syncs
# nothing: its figure is the ceiling of the sender and the link. A fourth
# receiver, where /dev/shm is writable, is dicomesh with its home on tmpfs,
# where a sync costs nothing: not durable, it shows what the syncs cost.
# TCP_NODELAY=1 is set for dcmtk. The ratios are the anchor's time over
# dicomesh's: above 1, dicomesh is faster.
#
# Needs: go, dcmtk, orthanc, curl, sha256sum.
set -euo pipefail

reps=3 slices=400 par=1
while getopts "n:s:p:h" o; do
	case $o in
	n) reps=$OPTARG ;;
	s) slices=$OPTARG ;;
	p) par=$OPTARG ;;
	*) sed -n '2,23p' "$0"; exit 2 ;;
	esac
done
root=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d /tmp/dicomesh-cstore.XXXXXX)
pids=()
cleanup() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
	rm -rf "$work" ${shm:+"$shm"}
}
trap cleanup EXIT
# stop: end the receiver started last, by its PID, and forget it.
stop() { kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; pids=(); }
http=${ORTHANC_HTTP_PORT:-28044}
dport=${DICOM_PORT:-28104}
export TCP_NODELAY=1

(cd "$root" && go build -o "$work/dicomesh" ./cmd/dicomesh)
dm=$work/dicomesh
"$dm" synth --preset ct --slices "$slices" --out "$work/ct" >/dev/null
files=("$work"/ct/*/*.dcm)
mb=$(cat "${files[@]}" | wc -c)
uid=$(sed -n 's/^ *"study_uid": "\([0-9.]*\)".*/\1/p' "$work/ct/manifest.json")
# dsums FILE...: the sorted SHA-256 of each file's dataset, after the preamble
# and the file meta group (whose length is the UL at byte 140).
dsums() {
	local f gl
	for f in "$@"; do
		gl=$(od -An -tu4 -j140 -N4 "$f" | tr -d ' ')
		tail -c +$((144 + gl + 1)) "$f" | sha256sum | cut -c1-64
	done | sort
}
dsums "${files[@]}" >"$work/original.sums"

median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
now() { date +%s.%N; }
send() { # send AET PORT LOG: seconds taken by storescu (par of them at once)
	local t0 t1 i k=$((${#files[@]} / par)) ps=() failed=0
	t0=$(now)
	for ((i = 0; i < par; i++)); do
		local part=("${files[@]:i*k:k}")
		((i < par - 1)) || part=("${files[@]:i*k}")
		storescu -aet BENCH -aec "$1" 127.0.0.1 "$2" "${part[@]}" >"$3.$i" 2>&1 &
		ps+=($!)
	done
	for i in "${!ps[@]}"; do
		wait "${ps[$i]}" || { failed=1; echo "storescu to $1 failed:" >&2; tail "$3.$i" >&2; }
	done
	t1=$(now)
	((failed == 0)) || return 1
	printf '%.2f\n' "$(echo "$t1 - $t0" | bc -l)"
}
waitport() { for _ in $(seq 300); do (echo >"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return; sleep 0.1; done; echo "port $1 never opened" >&2; exit 1; }

# dmrun HOME: sets t to storescu's seconds to a fresh node whose home is
# HOME; the study is then checked in the archive and its export compared.
dmrun() {
	local h=$1 n
	"$dm" --home "$h" init >/dev/null
	"$dm" --home "$h" run --p2p /ip4/127.0.0.1/tcp/0 --http 127.0.0.1:0 --dicom "127.0.0.1:$dport" --aet DICOMESH >"$h.log" 2>&1 &
	pid=$!
	pids+=("$pid")
	waitport "$dport"
	t=$(send DICOMESH "$dport" "$h.scu.log") || { tail "$h.log" >&2; exit 1; }
	# The study is in the archive once the association's commit is done.
	for _ in $(seq 600); do
		n=$("$dm" --home "$h" studies -o json 2>/dev/null | grep -o '"instances": *[0-9]*' | head -1 | grep -o '[0-9]*$' || true)
		[[ ${n:-0} -eq $slices ]] && break
		sleep 0.1
	done
	[[ ${n:-0} -eq $slices ]] || { echo "dicomesh holds ${n:-0} of $slices instances" >&2; tail "$h.log" >&2; exit 1; }
	stop
	"$dm" --home "$h" export "$uid" --to "$work/export" >/dev/null
	dsums "$work/export"/*/*.dcm | cmp -s - "$work/original.sums" ||
		{ echo "dicomesh export differs from the generated datasets" >&2; exit 1; }
	rm -rf "$work/export" "$h" "$h.log" "$h.scu.log".*
}

# With its home on tmpfs a node's syncs cost nothing: not durable, run to
# show what the syncs cost (skipped where /dev/shm is not writable).
shm=
if [[ -d /dev/shm && -w /dev/shm ]]; then shm=$(mktemp -d /dev/shm/dicomesh-cstore.XXXXXX); fi

d=() m=() s=() o=()
for i in $(seq "$reps"); do
	dmrun "$work/node$i"
	d+=("$t")
	if [[ -n $shm ]]; then
		dmrun "$shm/node$i"
		m+=("$t")
	fi

	out=$work/scp$i
	mkdir -p "$out"
	storescp -od "$out" "$dport" >/dev/null 2>&1 &
	pid=$!
	pids+=("$pid")
	waitport "$dport"
	t=$(send ANY "$dport" "$out.scu.log") || exit 1
	s+=("$t")
	stop
	dsums "$out"/* | cmp -s - "$work/original.sums" ||
		{ echo "storescp wrote $(ls "$out" | wc -l) files, not the generated datasets" >&2; exit 1; }
	rm -rf "$out"

	st=$work/orthanc$i
	mkdir -p "$st/storage"
	cat >"$st/orthanc.json" <<-JSON
		{"Name": "bench", "StorageDirectory": "$st/storage", "IndexDirectory": "$st/storage",
		 "StorageCompression": false, "SyncStorageArea": true, "Plugins": [],
		 "HttpPort": $http, "RemoteAccessAllowed": false, "AuthenticationEnabled": false,
		 "DicomServerEnabled": true, "DicomAet": "ORTHANC", "DicomPort": $dport,
		 "DicomCheckCalledAet": false, "DicomAlwaysAllowStore": true, "SaveJobs": false}
	JSON
	Orthanc --logfile="$st/orthanc.log" "$st/orthanc.json" >"$st/stdout.log" 2>&1 &
	pid=$!
	pids+=("$pid")
	for _ in $(seq 300); do curl -sf -o /dev/null "http://127.0.0.1:$http/system" && break; sleep 0.1; done
	waitport "$dport"
	t=$(send ORTHANC "$dport" "$st.scu.log") || { tail "$st/orthanc.log" >&2; exit 1; }
	o+=("$t")
	got=$(curl -sf "http://127.0.0.1:$http/statistics" | grep -o '"CountInstances" : [0-9]*' | grep -o '[0-9]*$' || true)
	stop
	[[ ${got:-0} -eq $slices ]] || { echo "Orthanc holds ${got:-no} instances" >&2; tail "$st/orthanc.log" >&2; exit 1; }
	rm -rf "$st"
done
dm_s=$(median "${d[@]}") scp_s=$(median "${s[@]}") or_s=$(median "${o[@]}")
mbytes=$(echo "$mb / 1000000" | bc -l)
printf 'CT %d slices, %.1f MB, storescu over %d association(s) at once, median of %d, load %s\n\n' "$slices" "$mbytes" "$par" "$reps" "$(cut -d' ' -f1-3 /proc/loadavg)"
printf '| receiver | s | MB/s | dicomesh vs it |\n|---|---|---|---|\n'
printf '| dicomesh (each instance synced before success; export verified) | %.2f | %.0f | |\n' "$dm_s" "$(echo "$mbytes / $dm_s" | bc -l)"
printf '| storescp (writes, never syncs) | %.2f | %.0f | %.2fx |\n' "$scp_s" "$(echo "$mbytes / $scp_s" | bc -l)" "$(echo "$scp_s / $dm_s" | bc -l)"
printf '| Orthanc (SyncStorageArea) | %.2f | %.0f | %.2fx |\n' "$or_s" "$(echo "$mbytes / $or_s" | bc -l)" "$(echo "$or_s / $dm_s" | bc -l)"
if [[ -n $shm ]]; then
	shm_s=$(median "${m[@]}")
	printf '| dicomesh, home on tmpfs (syncs cost nothing: not durable) | %.2f | %.0f | %.2fx |\n' "$shm_s" "$(echo "$mbytes / $shm_s" | bc -l)" "$(echo "$shm_s / $dm_s" | bc -l)"
fi
printf '\nsamples (s): dicomesh %s; storescp %s; Orthanc %s' "${d[*]}" "${s[*]}" "${o[*]}"
[[ -z $shm ]] || printf '; dicomesh on tmpfs %s' "${m[*]}"
printf '\n'
echo 'storescp never syncs what it writes; dicomesh and Orthanc sync every instance;'
echo 'dicomesh on tmpfs shows its receiving path without the cost of its syncs.'
