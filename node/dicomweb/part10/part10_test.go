package part10

import (
	"bytes"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/dicomesh/dicomesh/internal/synth"
)

// variants writes one synthetic CT slice with a nested sequence and an FD
// value, and its conversions by dcmtk: implicit VR with undefined lengths,
// big endian, and JPEG lossless.
func variants(t *testing.T) map[string]string {
	t.Helper()
	for _, tool := range []string{"dcmodify", "dcmconv", "dcmcjpeg", "dcm2json"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not installed (apt-get install dcmtk)", tool)
		}
	}
	dir := t.TempDir()
	spec, _ := synth.DefaultSpec("ct")
	spec.Slices, spec.Rows, spec.Cols = 1, 32, 48
	st, err := synth.Write(filepath.Join(dir, "synth"), spec)
	if err != nil {
		t.Fatal(err)
	}
	run := func(name string, args ...string) {
		t.Helper()
		if out, err := exec.Command(name, args...).CombinedOutput(); err != nil {
			t.Fatalf("%s %v: %v\n%s", name, args, err, out)
		}
	}
	base := filepath.Join(dir, "explicit.dcm")
	b, _ := os.ReadFile(st.Files[0].Path)
	os.WriteFile(base, b, 0o644)
	run("dcmodify", "-nb",
		"-i", "(0008,1140)[0].(0008,1150)=1.2.840.10008.5.1.4.1.1.2",
		"-i", "(0008,1140)[0].(0008,1155)=1.2.3.4",
		"-i", "(0008,1140)[1].(0008,1155)=1.2.3.5",
		"-i", "(0018,9087)=0.5",
		"-i", "(0010,1001)=OTHER^NAME\\SECOND^NAME=IDEO",
		base)
	files := map[string]string{"explicit": base}
	for name, args := range map[string][]string{
		"implicit":  {"+ti", "-e"},
		"bigendian": {"+tb"},
	} {
		out := filepath.Join(dir, name+".dcm")
		run("dcmconv", append(args, base, out)...)
		files[name] = out
	}
	out := filepath.Join(dir, "jpegls.dcm")
	run("dcmcjpeg", "+e1", base, out)
	files["jpeg"] = out
	return files
}

// normalize decodes JSON into plain values so that numbers compare as
// numbers however they were written.
func normalize(t *testing.T, v any) any {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	var out any
	json.Unmarshal(b, &out)
	return out
}

// TestMetadataMatchesDcmtk: the DICOM JSON of each variant matches what
// dcmtk's dcm2json makes of the same file, attribute by attribute; binary
// values are inline or referenced; pixel data is referenced.
func TestMetadataMatchesDcmtk(t *testing.T) {
	for name, path := range variants(t) {
		t.Run(name, func(t *testing.T) {
			b, _ := os.ReadFile(path)
			in, err := Parse(b)
			if err != nil {
				t.Fatal(err)
			}
			got := normalize(t, in.JSON("http://x/bulk")).(map[string]any)
			oracle := path
			if name == "jpeg" {
				// dcm2json cannot write compressed pixel data: compare
				// the rest.
				oracle = filepath.Join(t.TempDir(), "nopixels.dcm")
				b, _ := os.ReadFile(path)
				os.WriteFile(oracle, b, 0o644)
				if out, err := exec.Command("dcmodify", "-nb", "-ea", "(7fe0,0010)", oracle).CombinedOutput(); err != nil {
					t.Fatalf("dcmodify: %v\n%s", err, out)
				}
			}
			raw, err := exec.Command("dcm2json", oracle).Output()
			if err != nil {
				t.Fatal(err)
			}
			var want map[string]any
			if err := json.Unmarshal(raw, &want); err != nil {
				t.Fatal(err)
			}
			for k := range want {
				if strings.HasPrefix(k, "0002") {
					delete(want, k)
				}
			}
			if name == "jpeg" {
				want["7FE00010"] = map[string]any{"vr": "OB"}
			}
			if len(got) != len(want) {
				t.Errorf("%d attributes, dcm2json has %d", len(got), len(want))
			}
			for k, w := range want {
				g, ok := got[k]
				if !ok {
					t.Errorf("%s missing", k)
					continue
				}
				compareAttr(t, k, g.(map[string]any), w.(map[string]any))
			}
			pd := got["7FE00010"].(map[string]any)
			if pd["BulkDataURI"] != "http://x/bulk/7FE00010" {
				t.Errorf("pixel data: %v", pd)
			}
			seq := got["00081140"].(map[string]any)["Value"].([]any)
			if len(seq) != 2 {
				t.Fatalf("sequence items: %v", seq)
			}
		})
	}
}

func compareAttr(t *testing.T, k string, g, w map[string]any) {
	t.Helper()
	if g["vr"] != w["vr"] {
		t.Errorf("%s: vr %v, dcm2json %v", k, g["vr"], w["vr"])
		return
	}
	if inline, ok := w["InlineBinary"].(string); ok || k == "7FE00010" {
		if g["BulkDataURI"] != nil {
			return
		}
		a, _ := base64.StdEncoding.DecodeString(inline)
		b, _ := base64.StdEncoding.DecodeString(g["InlineBinary"].(string))
		if !bytes.Equal(a, b) {
			t.Errorf("%s: inline binary differs", k)
		}
		return
	}
	if w["vr"] == "SQ" {
		gi, _ := g["Value"].([]any)
		wi, _ := w["Value"].([]any)
		if len(gi) != len(wi) {
			t.Errorf("%s: %d items, dcm2json %d", k, len(gi), len(wi))
			return
		}
		for i := range wi {
			for kk, wv := range wi[i].(map[string]any) {
				gv, ok := gi[i].(map[string]any)[kk]
				if !ok {
					t.Errorf("%s[%d] %s missing", k, i, kk)
					continue
				}
				compareAttr(t, k+"/"+kk, gv.(map[string]any), wv.(map[string]any))
			}
		}
		return
	}
	if !reflect.DeepEqual(g["Value"], w["Value"]) {
		t.Errorf("%s: %v, dcm2json %v", k, g["Value"], w["Value"])
	}
}

// TestFramesOfVariants: the native frame is the stored pixel data in every
// byte order; the JPEG frame is one whole bitstream.
func TestFramesOfVariants(t *testing.T) {
	files := variants(t)
	b, _ := os.ReadFile(files["explicit"])
	in, err := Parse(b)
	if err != nil {
		t.Fatal(err)
	}
	pd, _ := in.Find(pixelData)
	for name, path := range files {
		b, _ := os.ReadFile(path)
		in, err := Parse(b)
		if err != nil {
			t.Fatal(err)
		}
		fs, err := in.Frames()
		if err != nil || len(fs) != 1 {
			t.Fatalf("%s: %d frames, %v", name, len(fs), err)
		}
		f := fs[0]
		switch name {
		case "bigendian":
			swapped := make([]byte, len(f))
			for i := 0; i+1 < len(f); i += 2 {
				binary.LittleEndian.PutUint16(swapped[i:], binary.BigEndian.Uint16(f[i:]))
			}
			f = swapped
			fallthrough
		case "explicit", "implicit":
			if !bytes.Equal(f, pd.Value) || len(f) != 32*48*2 {
				t.Errorf("%s: frame differs from the pixel data", name)
			}
		case "jpeg":
			if !bytes.HasPrefix(f, []byte{0xFF, 0xD8}) || !bytes.Contains(f[len(f)-4:], []byte{0xFF, 0xD9}) {
				t.Errorf("jpeg: frame is not one bitstream: % x ... % x", f[:4], f[len(f)-4:])
			}
		}
	}
}

func TestSplitFragments(t *testing.T) {
	bot := make([]byte, 8)
	binary.LittleEndian.PutUint32(bot[4:], 8+3+8+1) // frame 2 after fragments of 3 and 1 bytes
	frags := [][]byte{bot, []byte("abc"), []byte("d"), []byte("ef")}
	got, err := splitFragments(frags, 2)
	if err != nil || len(got) != 2 || string(got[0]) != "abcd" || string(got[1]) != "ef" {
		t.Fatalf("with a table: %q %v", got, err)
	}
	got, err = splitFragments([][]byte{nil, []byte("a"), []byte("b")}, 2)
	if err != nil || len(got) != 2 || string(got[1]) != "b" {
		t.Fatalf("one fragment a frame: %q %v", got, err)
	}
	got, err = splitFragments([][]byte{nil, []byte("a"), []byte("b")}, 1)
	if err != nil || len(got) != 1 || string(got[0]) != "ab" {
		t.Fatalf("one frame: %q %v", got, err)
	}
	if _, err := splitFragments([][]byte{nil, []byte("a"), []byte("b"), []byte("c")}, 2); err == nil {
		t.Fatal("3 fragments for 2 frames without a table: no error")
	}
	binary.LittleEndian.PutUint32(bot[4:], 5) // inside a fragment
	if _, err := splitFragments(frags, 2); err == nil {
		t.Fatal("table pointing inside a fragment: no error")
	}
}

// TestMalformedInstances: every truncation of a valid instance is an error
// or a shorter Dataset, never a panic.
func TestMalformedInstances(t *testing.T) {
	b := syntheticInstance(t)
	for n := 0; n < len(b); n += 7 {
		if in, err := Parse(b[:n]); err == nil {
			in.JSON("")
			in.Frames()
		}
	}
}

func syntheticInstance(t testing.TB) []byte {
	spec, _ := synth.DefaultSpec("mr")
	spec.Slices, spec.Rows, spec.Cols = 1, 16, 16
	st, err := synth.Write(t.TempDir(), spec)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(st.Files[0].Path)
	return b
}

func FuzzParseInstance(f *testing.F) {
	f.Add(syntheticInstance(f))
	f.Fuzz(func(t *testing.T, b []byte) {
		in, err := Parse(b)
		if err != nil {
			return
		}
		in.JSON("")
		in.Frames()
		json.Marshal(in.JSON(""))
	})
}
