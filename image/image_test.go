package image

import (
	"archive/tar"
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"
)

func bundle(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "plc")
	if err := os.WriteFile(bin, []byte("\x7fELF not really"), 0o755); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "plc")
	if _, err := BuildBundle(out, bin, []string{"--listen", ":502"}, nil); err != nil {
		t.Fatal(err)
	}
	return out
}

func TestImportAndDigest(t *testing.T) {
	b := bundle(t)
	d1, _, err := Digest(b)
	if err != nil {
		t.Fatal(err)
	}
	s := Store{Dir: t.TempDir()}
	img, err := s.Import("plc", b, d1)
	if err != nil {
		t.Fatal(err)
	}
	if img.Digest != d1 {
		t.Fatalf("imported digest %s, bundle %s", img.Digest, d1)
	}
	if d2, _, _ := Digest(img.Dir); d2 != d1 {
		t.Fatalf("store copy digest %s != %s", d2, d1)
	}
	args, _, err := img.Process()
	if err != nil || len(args) != 3 || args[0] != "/plc" {
		t.Fatalf("process %v %v", args, err)
	}
	if _, err := s.Get(d1); err != nil {
		t.Fatalf("get by digest: %v", err)
	}
	if _, err := s.Get("nope"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("get unknown: %v", err)
	}
}

func TestTamperChangesDigest(t *testing.T) {
	b := bundle(t)
	d1, _, _ := Digest(b)
	if err := os.WriteFile(filepath.Join(b, "rootfs", "plc"), []byte("\x7fELF evil"), 0o755); err != nil {
		t.Fatal(err)
	}
	s := Store{Dir: t.TempDir()}
	if _, err := s.Import("plc", b, d1); err == nil {
		t.Fatal("import of a tampered bundle against its old digest succeeded")
	}
}

func TestDigestRefusesSymlinks(t *testing.T) {
	b := bundle(t)
	os.Symlink("/etc/passwd", filepath.Join(b, "rootfs", "etc", "passwd"))
	if _, _, err := Digest(b); err == nil {
		t.Fatal("symlink in an image accepted")
	}
}

func TestValidName(t *testing.T) {
	for s, want := range map[string]bool{"plc1": true, "node-a": true, "": false, "-x": false, "A": false, "a/b": false, "..": false} {
		if ValidName(s) != want {
			t.Errorf("ValidName(%q) = %v", s, !want)
		}
	}
}

func TestPackUnpackKeepsDigest(t *testing.T) {
	b := bundle(t)
	want, _, _ := Digest(b)
	pr, pw := io.Pipe()
	go func() { pw.CloseWithError(Pack(b, pw)) }()
	out := filepath.Join(t.TempDir(), "x")
	if err := Unpack(pr, out); err != nil {
		t.Fatal(err)
	}
	if got, _, err := Digest(out); err != nil || got != want {
		t.Fatalf("digest after pack/unpack %s (%v), want %s", got, err, want)
	}
}

func TestUnpackRefusesEscapes(t *testing.T) {
	for _, name := range []string{"../evil", "/etc/evil", "a/../../evil"} {
		t.Run(name, func(t *testing.T) {
			var buf bytes.Buffer
			tw := tar.NewWriter(&buf)
			tw.WriteHeader(&tar.Header{Name: name, Typeflag: tar.TypeReg, Size: 1, Mode: 0o644})
			tw.Write([]byte("x"))
			tw.Close()
			if err := Unpack(&buf, filepath.Join(t.TempDir(), "b")); err == nil {
				t.Fatal("escaping path accepted")
			}
		})
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	tw.WriteHeader(&tar.Header{Name: "l", Typeflag: tar.TypeSymlink, Linkname: "/etc/passwd"})
	tw.Close()
	if err := Unpack(&buf, filepath.Join(t.TempDir(), "b")); err == nil {
		t.Fatal("symlink accepted")
	}
}
