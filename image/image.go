// Package image is capsec's registry-less image store. An image is an OCI
// bundle directory (config.json plus rootfs/) named by a content digest, so
// two agents agree that they hold the same image without trusting names.
package image

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// ErrNotFound is returned for an image the store does not hold.
var ErrNotFound = errors.New("image not found")

// Image is one image in a store.
type Image struct {
	Name   string
	Digest string // "sha256:<hex>"
	Dir    string // bundle directory: config.json and rootfs/
	Size   int64
}

// Rootfs is the image's root filesystem.
func (i Image) Rootfs() string { return filepath.Join(i.Dir, "rootfs") }

// Process reads the process the image's OCI config asks for.
func (i Image) Process() (args, env []string, err error) {
	b, err := os.ReadFile(filepath.Join(i.Dir, "config.json"))
	if err != nil {
		return nil, nil, fmt.Errorf("image %s: %w", i.Name, err)
	}
	var s specs.Spec
	if err := json.Unmarshal(b, &s); err != nil {
		return nil, nil, fmt.Errorf("image %s: config.json: %w", i.Name, err)
	}
	if s.Process == nil || len(s.Process.Args) == 0 {
		return nil, nil, fmt.Errorf("image %s: config.json has no process args", i.Name)
	}
	return s.Process.Args, s.Process.Env, nil
}

// Digest computes a bundle's content digest: SHA-256 over every regular
// file's path, mode and content and every directory's path, in sorted order.
// Symlinks and devices are refused: a capsec image holds plain files only.
func Digest(dir string) (digest string, size int64, err error) {
	type entry struct {
		rel  string
		line string
	}
	var entries []entry
	err = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil {
			return err
		}
		rel = filepath.ToSlash(rel)
		if rel == "." {
			return nil
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		switch {
		case d.IsDir():
			entries = append(entries, entry{rel, fmt.Sprintf("d %s %o\n", rel, info.Mode().Perm())})
		case info.Mode().IsRegular():
			h, err := hashFile(p)
			if err != nil {
				return err
			}
			size += info.Size()
			entries = append(entries, entry{rel, fmt.Sprintf("f %s %o %d %s\n", rel, info.Mode().Perm(), info.Size(), h)})
		default:
			return fmt.Errorf("%s: %s is neither a file nor a directory", dir, rel)
		}
		return nil
	})
	if err != nil {
		return "", 0, fmt.Errorf("digest of %s: %w", dir, err)
	}
	sort.Slice(entries, func(a, b int) bool { return entries[a].rel < entries[b].rel })
	h := sha256.New()
	for _, e := range entries {
		io.WriteString(h, e.line)
	}
	return "sha256:" + hex.EncodeToString(h.Sum(nil)), size, nil
}

func hashFile(p string) (string, error) {
	f, err := os.Open(p)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", fmt.Errorf("read %s: %w", p, err)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// ValidName reports whether s can name an image or container.
func ValidName(s string) bool {
	if s == "" || len(s) > 48 {
		return false
	}
	for i, r := range s {
		ok := r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || i > 0 && strings.ContainsRune("-_.", r)
		if !ok {
			return false
		}
	}
	return true
}
