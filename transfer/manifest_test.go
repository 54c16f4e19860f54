package transfer

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

const digestA = "ca978112ca1bbdcafac231b39a23dc4da786eff8147c4e72b9807785afee48bb" // sha256("a")

func manifestJSON(t *testing.T, files ...File) []byte {
	t.Helper()
	b, err := json.Marshal(Manifest{Files: files})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestParseManifest(t *testing.T) {
	ok := File{Path: "a", Size: 1, Mode: 0o644, SHA256: digestA}
	with := func(edit func(*File)) File {
		f := ok
		edit(&f)
		return f
	}
	tests := []struct {
		name    string
		data    []byte
		wantErr string // "" = valid
	}{
		{"valid", manifestJSON(t, ok, with(func(f *File) { f.Path = "sub/dir/b" })), ""},
		{"empty", manifestJSON(t), ""},
		{"parent traversal", manifestJSON(t, with(func(f *File) { f.Path = "../etc/passwd" })), "not a clean relative path"},
		{"inner traversal", manifestJSON(t, with(func(f *File) { f.Path = "a/../../b" })), "not a clean relative path"},
		{"absolute", manifestJSON(t, with(func(f *File) { f.Path = "/etc/passwd" })), "not a clean relative path"},
		{"dot element", manifestJSON(t, with(func(f *File) { f.Path = "./a" })), "not a clean relative path"},
		{"empty element", manifestJSON(t, with(func(f *File) { f.Path = "a//b" })), "not a clean relative path"},
		{"trailing slash", manifestJSON(t, with(func(f *File) { f.Path = "a/" })), "not a clean relative path"},
		{"empty path", manifestJSON(t, with(func(f *File) { f.Path = "" })), "empty path"},
		{"backslash", manifestJSON(t, with(func(f *File) { f.Path = `..\x` })), "backslash"},
		{"NUL", manifestJSON(t, with(func(f *File) { f.Path = "a\x00b" })), "NUL"},
		{"long path", manifestJSON(t, with(func(f *File) { f.Path = strings.Repeat("a", 2000) })), "at most"},
		{"duplicate", manifestJSON(t, ok, ok), "listed twice"},
		{"file is also a directory", manifestJSON(t, ok, with(func(f *File) { f.Path = "a/b" })), "is listed as a file"},
		{"negative size", manifestJSON(t, with(func(f *File) { f.Size = -1 })), "out of range"},
		{"huge size", manifestJSON(t, with(func(f *File) { f.Size = 1 << 50 })), "out of range"},
		{"setuid mode", manifestJSON(t, with(func(f *File) { f.Mode = 0o4755 })), "permission bits"},
		{"short digest", manifestJSON(t, with(func(f *File) { f.SHA256 = digestA[:63] })), "64 lowercase hex"},
		{"uppercase digest", manifestJSON(t, with(func(f *File) { f.SHA256 = strings.ToUpper(digestA) })), "64 lowercase hex"},
		{"non-hex digest", manifestJSON(t, with(func(f *File) { f.SHA256 = "z" + digestA[1:] })), "64 lowercase hex"},
		{"unknown field", []byte(`{"files":[],"extra":1}`), "unknown field"},
		{"trailing data", []byte(`{"files":[]} {}`), "trailing data"},
		{"not JSON", []byte(`files`), "decode manifest"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m, err := ParseManifest(tc.data)
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("ParseManifest: %v", err)
				}
				if m == nil {
					t.Fatal("nil manifest")
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) || !errors.Is(err, ErrBadManifest) {
				t.Fatalf("ParseManifest = %v, want ErrBadManifest containing %q", err, tc.wantErr)
			}
		})
	}
}

func TestBuildManifest(t *testing.T) {
	dir := t.TempDir()
	for p, content := range map[string]string{"b": "bb", "a.txt": "a", "a/z": "", "a/y/x": "xyz"} {
		full := filepath.Join(dir, filepath.FromSlash(p))
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, []byte(content), 0o640); err != nil {
			t.Fatal(err)
		}
	}
	m, err := BuildManifest(dir)
	if err != nil {
		t.Fatal(err)
	}
	var paths []string
	for _, f := range m.Files {
		paths = append(paths, f.Path)
	}
	if got, want := strings.Join(paths, " "), "a.txt a/y/x a/z b"; got != want {
		t.Errorf("paths %q, want %q (sorted, slash-separated)", got, want)
	}
	if m.TotalBytes() != 6 {
		t.Errorf("TotalBytes = %d, want 6", m.TotalBytes())
	}
	if m.Files[0].SHA256 != digestA || m.Files[0].Mode != 0o640 {
		t.Errorf("a.txt: %+v", m.Files[0])
	}
	if err := VerifyDir(dir, m); err != nil {
		t.Fatalf("VerifyDir of an unchanged dir: %v", err)
	}
	if err := os.WriteFile(filepath.Join(dir, "b"), []byte("bx"), 0o640); err != nil {
		t.Fatal(err)
	}
	if err := VerifyDir(dir, m); !errors.Is(err, ErrDigestMismatch) || !strings.Contains(err.Error(), "file b") {
		t.Fatalf("VerifyDir after a change = %v, want ErrDigestMismatch naming b", err)
	}

	refused := []struct {
		name string
		make func(path string) error
		want string
	}{
		{"symlink", func(p string) error { return os.Symlink("/etc/passwd", p) }, "symlink"},
		{"named pipe", func(p string) error { return syscall.Mkfifo(p, 0o600) }, "named pipe"},
	}
	for _, tc := range refused {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			if err := tc.make(filepath.Join(dir, "special")); err != nil {
				t.Fatal(err)
			}
			if _, err := BuildManifest(dir); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("BuildManifest = %v, want error naming a %s", err, tc.want)
			}
		})
	}
}

func FuzzParseManifest(f *testing.F) {
	f.Add([]byte(`{"files":[{"path":"a","size":1,"mode":420,"sha256":"` + digestA + `"}]}`))
	f.Add([]byte(`{"files":[{"path":"../a","size":1,"mode":420,"sha256":"` + digestA + `"}]}`))
	f.Add([]byte(`{"files":[]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := ParseManifest(data)
		if err != nil {
			return
		}
		// Whatever is accepted must be safe to write under a directory.
		seen := map[string]bool{}
		for _, f := range m.Files {
			if !filepath.IsLocal(f.Path) || strings.Contains(f.Path, "\\") || seen[f.Path] {
				t.Fatalf("accepted unsafe or duplicate path %q", f.Path)
			}
			seen[f.Path] = true
			if f.Size < 0 || len(f.SHA256) != 64 {
				t.Fatalf("accepted bad entry %+v", f)
			}
		}
		if m.TotalBytes() < 0 {
			t.Fatal("total overflowed")
		}
	})
}
