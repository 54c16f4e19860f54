package checkpoint

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

func TestParseCRIUVersion(t *testing.T) {
	tests := []struct {
		out     string
		want    int
		wantStr string
		wantErr bool
	}{
		{"Version: 4.2\n", 40200, "4.2.0", false},
		{"Version: 4.2.1\nGitID: v4.2.1\n", 40201, "4.2.1", false},
		{"Version: 3.17.1\n", 31701, "3.17.1", false},
		{"criu: command not found\n", 0, "", true},
	}
	for _, tt := range tests {
		t.Run(strings.TrimSpace(tt.out), func(t *testing.T) {
			s, v, err := parseCRIUVersion([]byte(tt.out))
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v, wantErr %v", err, tt.wantErr)
			}
			if v != tt.want || s != tt.wantStr {
				t.Fatalf("got %q %d, want %q %d", s, v, tt.wantStr, tt.want)
			}
		})
	}
}

// TestFindCRIUBogus: a wrong CRIU gives an error that says what is wrong and
// how to fix it. Runs without root.
func TestFindCRIUBogus(t *testing.T) {
	dir := t.TempDir()
	script := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte("#!/bin/sh\n"+body+"\n"), 0o755); err != nil {
			t.Fatal(err)
		}
		return p
	}
	noExec := filepath.Join(dir, "noexec")
	if err := os.WriteFile(noExec, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		path string
		want []string
	}{
		{"missing", filepath.Join(dir, "nope", "criu"), []string{"no such file", "install CRIU 4.2+", "make deps"}},
		{"directory", dir, []string{"not an executable", "install CRIU 4.2+"}},
		{"not executable", noExec, []string{"not an executable"}},
		{"too old", script("old", `echo "Version: 3.17.1"`), []string{"version 3.17.1, need 4.2.0 or newer", "make deps"}},
		{"garbage version", script("garbage", `echo hello`), []string{"no version", "install CRIU 4.2+"}},
		{"check fails", script("checkfails", `[ "$1" = --version ] && { echo "Version: 4.2.1"; exit 0; }; echo "Error: kernel lacks foo"; exit 1`), []string{"check failed", "kernel lacks foo"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := FindCRIU(t.Context(), tt.path)
			if err == nil {
				t.Fatalf("FindCRIU(%s) = %+v, want error", tt.path, c)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
		})
	}
}

// TestUsePath: a CRIU not named criu is reached through a symlink named criu.
func TestUsePath(t *testing.T) {
	dir := t.TempDir()
	bin := filepath.Join(dir, "my-criu-wrapper")
	if err := os.WriteFile(bin, []byte("#!/bin/sh\necho wrapped\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", os.Getenv("PATH")) // restored after the test
	c := &CRIU{Path: bin}
	linkDir := filepath.Join(dir, "criu-bin")
	for range 2 { // idempotent
		if err := c.UsePath(linkDir); err != nil {
			t.Fatal(err)
		}
	}
	out, err := exec.Command("criu").Output()
	if err != nil || strings.TrimSpace(string(out)) != "wrapped" {
		t.Fatalf("criu via PATH: %q, %v", out, err)
	}
	if n := strings.Count(os.Getenv("PATH"), linkDir); n != 1 {
		t.Fatalf("link dir in PATH %d times", n)
	}
}
