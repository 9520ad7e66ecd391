#!/usr/bin/env bash
# STOW-RS benchmark: the generated CT posted in one STOW-RS request to a
# running dicomesh node and to Orthanc's DICOMweb plugin, side by side.
#
#   bench/stow.sh [-n REPS] [-s SLICES]
#
# Both store durably (dicomesh: one archive commit per study before the
# answer; Orthanc: SyncStorageArea=true). The ratio is Orthanc's time over
# dicomesh's: above 1, dicomesh is faster.
#
# Needs: go, orthanc, orthanc-dicomweb, python3-requests (/usr/bin/python3).
set -euo pipefail

reps=3 slices=400
while getopts "n:s:h" o; do
	case $o in
	n) reps=$OPTARG ;;
	s) slices=$OPTARG ;;
	*) sed -n '2,12p' "$0"; exit 2 ;;
	esac
done
root=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d /tmp/dicomesh-stow.XXXXXX)
pids=()
cleanup() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
	rm -rf "$work"
}
trap cleanup EXIT
port=${ORTHANC_HTTP_PORT:-28043}

(cd "$root" && go build -o "$work/dicomesh" ./cmd/dicomesh)
dm=$work/dicomesh
"$dm" synth --preset ct --slices "$slices" --out "$work/ct" >/dev/null
mb=$(du -sb "$work/ct" | cut -f1)

median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }

d=() o=()
for i in $(seq "$reps"); do
	h=$work/node$i
	"$dm" --home "$h" init >/dev/null
	"$dm" --home "$h" run --p2p /ip4/127.0.0.1/tcp/0 --http 127.0.0.1:0 >"$h.log" 2>&1 &
	pid=$!
	pids+=("$pid")
	for _ in $(seq 300); do [[ -s $h/node.json ]] && break; sleep 0.1; done
	addr=$(sed -n 's/.*"http": "\(.*\)".*/\1/p' "$h/node.json")
	d+=("$(/usr/bin/python3 "$root/bench/stow_client.py" "http://$addr/dicom-web/studies" "$work/ct")")
	kill "$pid"; wait "$pid" 2>/dev/null || true

	s=$work/orthanc$i
	mkdir -p "$s/storage"
	cat >"$s/orthanc.json" <<-JSON
		{"Name": "bench", "StorageDirectory": "$s/storage", "IndexDirectory": "$s/storage",
		 "StorageCompression": false, "SyncStorageArea": true,
		 "Plugins": ["/usr/share/orthanc/plugins/libOrthancDicomWeb.so"],
		 "HttpPort": $port, "RemoteAccessAllowed": false, "AuthenticationEnabled": false,
		 "DicomServerEnabled": false, "SaveJobs": false, "HttpTimeout": 600,
		 "DicomWeb": {"Enable": true, "Root": "/dicom-web/"}}
	JSON
	Orthanc --logfile="$s/orthanc.log" "$s/orthanc.json" >"$s/stdout.log" 2>&1 &
	pid=$!
	pids+=("$pid")
	for _ in $(seq 300); do curl -sf -o /dev/null "http://127.0.0.1:$port/system" && break; sleep 0.1; done
	o+=("$(/usr/bin/python3 "$root/bench/stow_client.py" "http://127.0.0.1:$port/dicom-web/studies" "$work/ct")")
	kill "$pid"; wait "$pid" 2>/dev/null || true
done
dm_s=$(median "${d[@]}") or_s=$(median "${o[@]}")
mbytes=$(echo "$mb / 1000000" | bc -l)
printf 'CT %d slices, %.1f MB, one STOW-RS request, median of %d, load %s\n\n' "$slices" "$mbytes" "$reps" "$(cut -d' ' -f1-3 /proc/loadavg)"
printf '| what | s | MB/s | vs Orthanc |\n|---|---|---|---|\n'
printf '| dicomesh STOW-RS (durable) | %.2f | %.0f | %.2fx |\n' "$dm_s" "$(echo "$mbytes / $dm_s" | bc -l)" "$(echo "$or_s / $dm_s" | bc -l)"
printf '| Orthanc STOW-RS (SyncStorageArea) | %.2f | %.0f | |\n' "$or_s" "$(echo "$mbytes / $or_s" | bc -l)"
printf '\nsamples (s): dicomesh %s; Orthanc %s\n' "${d[*]}" "${o[*]}"
