package transfer

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"slices"
	"strings"
	"sync"
)

// dirWriter creates received files inside one directory and remembers what
// it created so that a failed transfer leaves nothing behind. All access goes
// through an os.Root, so neither a hostile path nor a symlink planted in the
// directory can make it write outside.
type dirWriter struct {
	dir        string
	root       *os.Root
	createdDir bool

	mu    sync.Mutex
	files []string // created files
	dirs  []string // created subdirectories, parents first
}

// openDirWriter opens dir, creating it (and missing parents) 0700.
func openDirWriter(dir string) (*dirWriter, error) {
	created := false
	if _, err := os.Lstat(dir); errors.Is(err, fs.ErrNotExist) {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, fmt.Errorf("create %s: %w", dir, err)
		}
		created = true
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		if created {
			_ = os.Remove(dir)
		}
		return nil, fmt.Errorf("open %s: %w", dir, err)
	}
	return &dirWriter{dir: dir, root: root, createdDir: created}, nil
}

// create makes the file p (slash-separated, validated by the manifest) and
// its missing parent directories. It never opens an existing file.
func (w *dirWriter) create(p string) (*os.File, error) {
	if parent := path.Dir(p); parent != "." {
		if err := w.mkdirs(parent); err != nil {
			return nil, err
		}
	}
	f, err := w.root.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, fmt.Errorf("create %s in %s: %w", p, w.dir, err)
	}
	w.mu.Lock()
	w.files = append(w.files, p)
	w.mu.Unlock()
	return f, nil
}

func (w *dirWriter) mkdirs(dir string) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	elems := strings.Split(dir, "/")
	for i := range elems {
		sub := strings.Join(elems[:i+1], "/")
		err := w.root.Mkdir(sub, 0o700)
		switch {
		case err == nil:
			w.dirs = append(w.dirs, sub)
		case errors.Is(err, fs.ErrExist):
			st, serr := w.root.Lstat(sub)
			if serr != nil || !st.IsDir() {
				return fmt.Errorf("create directory %s in %s: exists and is not a directory", sub, w.dir)
			}
		default:
			return fmt.Errorf("create directory %s in %s: %w", sub, w.dir, err)
		}
	}
	return nil
}

// removeAll deletes what w created: the whole directory if w made it,
// otherwise only its own files and subdirectories.
func (w *dirWriter) removeAll() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.createdDir {
		w.root.Close()
		if err := os.RemoveAll(w.dir); err != nil {
			return fmt.Errorf("clean up %s: %w", w.dir, err)
		}
		return nil
	}
	var errs []error
	for _, f := range w.files {
		if err := w.root.Remove(f); err != nil && !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	for _, d := range slices.Backward(w.dirs) {
		if err := w.root.Remove(d); err != nil && !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	w.files, w.dirs = nil, nil
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("clean up %s: %w", w.dir, err)
	}
	return nil
}

func (w *dirWriter) close() { _ = w.root.Close() }
