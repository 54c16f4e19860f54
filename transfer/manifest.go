package transfer

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// Manifest sanity bounds, independent of a receiver's Limits.
const (
	maxPathLen  = 1024
	maxFileSize = 1 << 40 // 1 TiB: larger than any checkpoint image, small enough to sum safely
	maxFiles    = 1 << 20
)

// Manifest lists the files of a directory tree with their digests. A receiver
// trusts a file only when its size and SHA-256 match its entry.
type Manifest struct {
	Files []File `json:"files"`
}

// File is one regular file. Path is relative and slash-separated; Mode holds
// permission bits only; SHA256 is lowercase hex.
type File struct {
	Path   string `json:"path"`
	Size   int64  `json:"size"`
	Mode   uint32 `json:"mode"`
	SHA256 string `json:"sha256"`
}

// TotalBytes is the sum of all file sizes.
func (m *Manifest) TotalBytes() int64 {
	var n int64
	for _, f := range m.Files {
		n += f.Size
	}
	return n
}

// BuildManifest hashes every regular file under dir. Symlinks, devices,
// sockets and pipes are refused rather than skipped: a checkpoint that holds
// one is not what the caller thinks it is. Empty directories are not kept.
func BuildManifest(dir string) (*Manifest, error) {
	root, err := os.OpenRoot(dir)
	if err != nil {
		return nil, fmt.Errorf("build manifest: %w", err)
	}
	defer root.Close()
	m := &Manifest{}
	err = fs.WalkDir(root.FS(), ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		switch t := d.Type(); {
		case t.IsDir():
			return nil
		case !t.IsRegular():
			return fmt.Errorf("%s is a %s, only regular files can be sent", p, describeType(t))
		}
		f, err := hashFile(root, p)
		if err != nil {
			return err
		}
		m.Files = append(m.Files, f)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("build manifest of %s: %w", dir, err)
	}
	slices.SortFunc(m.Files, func(a, b File) int { return strings.Compare(a.Path, b.Path) })
	if err := m.validate(); err != nil {
		return nil, fmt.Errorf("build manifest of %s: %w", dir, err)
	}
	return m, nil
}

func hashFile(root *os.Root, p string) (File, error) {
	fh, err := root.Open(p)
	if err != nil {
		return File{}, err
	}
	defer fh.Close()
	st, err := fh.Stat()
	if err != nil {
		return File{}, err
	}
	if !st.Mode().IsRegular() {
		return File{}, fmt.Errorf("%s is a %s, only regular files can be sent", p, describeType(st.Mode().Type()))
	}
	h := sha256.New()
	n, err := io.Copy(h, fh)
	if err != nil {
		return File{}, fmt.Errorf("hash %s: %w", p, err)
	}
	return File{Path: p, Size: n, Mode: uint32(st.Mode().Perm()), SHA256: hex.EncodeToString(h.Sum(nil))}, nil
}

func describeType(t fs.FileMode) string {
	switch {
	case t&fs.ModeSymlink != 0:
		return "symlink"
	case t&fs.ModeDevice != 0:
		return "device"
	case t&fs.ModeNamedPipe != 0:
		return "named pipe"
	case t&fs.ModeSocket != 0:
		return "socket"
	}
	return "special file (" + t.String() + ")"
}

// ParseManifest decodes and validates a manifest received from a peer.
func ParseManifest(data []byte) (*Manifest, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var m Manifest
	if err := dec.Decode(&m); err != nil {
		return nil, fmt.Errorf("decode manifest: %v: %w", err, ErrBadManifest)
	}
	if dec.More() {
		return nil, fmt.Errorf("decode manifest: trailing data: %w", ErrBadManifest)
	}
	if err := m.validate(); err != nil {
		return nil, err
	}
	return &m, nil
}

// validate checks everything a receiver relies on before writing a byte:
// every path stays inside the target directory, no path is listed twice or
// is both a file and a directory, sizes are sane, digests are well formed.
func (m *Manifest) validate() error {
	if len(m.Files) > maxFiles {
		return fmt.Errorf("manifest lists %d files, at most %d: %w", len(m.Files), maxFiles, ErrBadManifest)
	}
	seen := make(map[string]bool, len(m.Files))
	var total int64
	for i, f := range m.Files {
		if err := validPath(f.Path); err != nil {
			return fmt.Errorf("manifest entry %d: %w", i, err)
		}
		if seen[f.Path] {
			return fmt.Errorf("manifest entry %d: %q listed twice: %w", i, f.Path, ErrBadManifest)
		}
		seen[f.Path] = true
		if f.Size < 0 || f.Size > maxFileSize {
			return fmt.Errorf("manifest entry %q: size %d out of range: %w", f.Path, f.Size, ErrBadManifest)
		}
		total += f.Size // cannot overflow: maxFiles * maxFileSize < 2^63
		if f.Mode&^0o777 != 0 {
			return fmt.Errorf("manifest entry %q: mode %#o has more than permission bits: %w", f.Path, f.Mode, ErrBadManifest)
		}
		if !validDigest(f.SHA256) {
			return fmt.Errorf("manifest entry %q: sha256 %q is not 64 lowercase hex digits: %w", f.Path, f.SHA256, ErrBadManifest)
		}
	}
	// A path that is a file must not also be a parent directory of another.
	for _, f := range m.Files {
		for dir := parentDir(f.Path); dir != ""; dir = parentDir(dir) {
			if seen[dir] {
				return fmt.Errorf("manifest entry %q: %q is listed as a file: %w", f.Path, dir, ErrBadManifest)
			}
		}
	}
	return nil
}

func validPath(p string) error {
	switch {
	case p == "" || p == ".":
		return fmt.Errorf("empty path: %w", ErrBadManifest)
	case len(p) > maxPathLen:
		return fmt.Errorf("path of %d bytes, at most %d: %w", len(p), maxPathLen, ErrBadManifest)
	case strings.ContainsAny(p, "\\\x00"):
		return fmt.Errorf("path %q contains a backslash or NUL: %w", p, ErrBadManifest)
	case !fs.ValidPath(p):
		// fs.ValidPath rejects absolute paths, "." and ".." elements, empty
		// elements and trailing slashes: everything that could leave the root.
		return fmt.Errorf("path %q is not a clean relative path: %w", p, ErrBadManifest)
	}
	return nil
}

func validDigest(s string) bool {
	if len(s) != 2*sha256.Size {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}

func parentDir(p string) string {
	i := strings.LastIndexByte(p, '/')
	if i < 0 {
		return ""
	}
	return p[:i]
}

// VerifyDir re-hashes every file of m under dir and fails with
// ErrDigestMismatch naming the first file whose size or digest differs.
// Files in dir that m does not list are ignored.
func VerifyDir(dir string, m *Manifest) error {
	if err := m.validate(); err != nil {
		return fmt.Errorf("verify %s: %w", dir, err)
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		return fmt.Errorf("verify: %w", err)
	}
	defer root.Close()
	for _, want := range m.Files {
		got, err := hashFile(root, filepath.FromSlash(want.Path))
		if err != nil {
			return fmt.Errorf("verify %s: %w", dir, err)
		}
		if err := compareFile(want, got.Size, got.SHA256); err != nil {
			return fmt.Errorf("verify %s: %w", dir, err)
		}
	}
	return nil
}

// compareFile is the one place that decides whether received or stored bytes
// match a manifest entry.
func compareFile(want File, size int64, digest string) error {
	if size != want.Size {
		return fmt.Errorf("file %s: %d bytes, manifest says %d: %w", want.Path, size, want.Size, ErrDigestMismatch)
	}
	if digest != want.SHA256 {
		return fmt.Errorf("file %s: sha256 %s, manifest says %s: %w", want.Path, digest, want.SHA256, ErrDigestMismatch)
	}
	return nil
}
