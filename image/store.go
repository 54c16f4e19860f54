package image

import (
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// Store keeps images under one directory: by-digest/<hex>/ holds a bundle,
// names/<name> holds the digest a name points at.
type Store struct {
	Dir string
}

func hexOf(digest string) (string, error) {
	h, ok := strings.CutPrefix(digest, "sha256:")
	if !ok || len(h) != 64 || strings.Trim(h, "0123456789abcdef") != "" {
		return "", fmt.Errorf("bad image digest %q", digest)
	}
	return h, nil
}

// Get finds an image by name or by digest.
func (s Store) Get(ref string) (Image, error) {
	name, digest := ref, ""
	if strings.HasPrefix(ref, "sha256:") {
		name, digest = "", ref
	} else {
		b, err := os.ReadFile(filepath.Join(s.Dir, "names", ref))
		if err != nil {
			return Image{}, fmt.Errorf("image %q: %w", ref, ErrNotFound)
		}
		digest = strings.TrimSpace(string(b))
	}
	h, err := hexOf(digest)
	if err != nil {
		return Image{}, err
	}
	dir := filepath.Join(s.Dir, "by-digest", h)
	if _, err := os.Stat(filepath.Join(dir, "config.json")); err != nil {
		return Image{}, fmt.Errorf("image %s: %w", digest, ErrNotFound)
	}
	var size int64
	filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			if fi, err := d.Info(); err == nil {
				size += fi.Size()
			}
		}
		return nil
	})
	return Image{Name: name, Digest: digest, Dir: dir, Size: size}, nil
}

// List returns every named image.
func (s Store) List() ([]Image, error) {
	ents, err := os.ReadDir(filepath.Join(s.Dir, "names"))
	if os.IsNotExist(err) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []Image
	for _, e := range ents {
		img, err := s.Get(e.Name())
		if err != nil {
			continue
		}
		img.Name = e.Name()
		out = append(out, img)
	}
	return out, nil
}

// Import copies a bundle directory into the store under name, after checking
// its digest against want (if want is set). A bundle already held is not
// copied again.
func (s Store) Import(name, bundle, want string) (Image, error) {
	if !ValidName(name) {
		return Image{}, fmt.Errorf("image name %q: use lower-case letters, digits, '-', '_' or '.'", name)
	}
	digest, _, err := Digest(bundle)
	if err != nil {
		return Image{}, err
	}
	if want != "" && want != digest {
		return Image{}, fmt.Errorf("image %s: bundle %s has digest %s, want %s", name, bundle, digest, want)
	}
	h, _ := hexOf(digest)
	dst := filepath.Join(s.Dir, "by-digest", h)
	if _, err := os.Stat(filepath.Join(dst, "config.json")); err != nil {
		if err := os.MkdirAll(filepath.Dir(dst), 0o700); err != nil {
			return Image{}, err
		}
		tmp, err := os.MkdirTemp(filepath.Dir(dst), ".import-")
		if err != nil {
			return Image{}, err
		}
		defer os.RemoveAll(tmp)
		if err := copyTree(bundle, tmp); err != nil {
			return Image{}, fmt.Errorf("import %s: %w", name, err)
		}
		if got, _, err := Digest(tmp); err != nil || got != digest {
			return Image{}, fmt.Errorf("import %s: copy does not match %s (got %s, %v)", name, digest, got, err)
		}
		if err := os.Rename(tmp, dst); err != nil {
			return Image{}, fmt.Errorf("import %s: %w", name, err)
		}
	}
	if err := s.tag(name, digest); err != nil {
		return Image{}, err
	}
	img, err := s.Get(name)
	img.Name = name
	return img, err
}

func (s Store) tag(name, digest string) error {
	dir := filepath.Join(s.Dir, "names")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	tmp := filepath.Join(dir, "."+name+".tmp")
	if err := os.WriteFile(tmp, []byte(digest+"\n"), 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, filepath.Join(dir, name))
}

func copyTree(src, dst string) error {
	return filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		out := filepath.Join(dst, rel)
		info, err := d.Info()
		if err != nil {
			return err
		}
		if d.IsDir() {
			if rel == "." {
				return os.Chmod(dst, info.Mode().Perm())
			}
			return os.Mkdir(out, info.Mode().Perm())
		}
		if !info.Mode().IsRegular() {
			return fmt.Errorf("%s: not a regular file", p)
		}
		in, err := os.Open(p)
		if err != nil {
			return err
		}
		defer in.Close()
		f, err := os.OpenFile(out, os.O_CREATE|os.O_EXCL|os.O_WRONLY, info.Mode().Perm())
		if err != nil {
			return err
		}
		if _, err := io.Copy(f, in); err != nil {
			f.Close()
			return err
		}
		if err := f.Chmod(info.Mode().Perm()); err != nil {
			f.Close()
			return err
		}
		return f.Close()
	})
}
