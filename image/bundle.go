package image

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// BuildBundle writes an OCI bundle whose rootfs holds one static binary at
// /<base name>, plus the empty directories a container runtime mounts over.
// It returns the bundle's digest. out is replaced.
func BuildBundle(out, binary string, args, env []string) (string, error) {
	if err := os.RemoveAll(out); err != nil {
		return "", err
	}
	rootfs := filepath.Join(out, "rootfs")
	for _, d := range []string{"", "proc", "dev", "sys", "tmp", "etc"} {
		if err := os.MkdirAll(filepath.Join(rootfs, d), 0o755); err != nil {
			return "", err
		}
	}
	if err := os.Chmod(filepath.Join(rootfs, "tmp"), 0o755); err != nil {
		return "", err
	}
	dst := filepath.Join(rootfs, filepath.Base(binary))
	if err := copyFile(binary, dst, 0o755); err != nil {
		return "", fmt.Errorf("bundle %s: %w", out, err)
	}
	if err := os.WriteFile(filepath.Join(rootfs, "etc", "hostname"), []byte("capsec\n"), 0o644); err != nil {
		return "", err
	}
	spec := specs.Spec{
		Version: specs.Version,
		Process: &specs.Process{
			Args: append([]string{"/" + filepath.Base(binary)}, args...),
			Env:  env,
			Cwd:  "/",
		},
		Root:     &specs.Root{Path: "rootfs", Readonly: true},
		Hostname: "capsec",
	}
	b, err := json.MarshalIndent(spec, "", "  ")
	if err != nil {
		return "", err
	}
	if err := os.WriteFile(filepath.Join(out, "config.json"), append(b, '\n'), 0o644); err != nil {
		return "", err
	}
	digest, _, err := Digest(out)
	if err != nil {
		return "", err
	}
	return digest, os.WriteFile(filepath.Join(filepath.Dir(out), filepath.Base(out)+".digest"), []byte(digest+"\n"), 0o644)
}

func copyFile(src, dst string, mode os.FileMode) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	f, err := os.OpenFile(dst, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, mode)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, in); err != nil {
		f.Close()
		return err
	}
	if err := f.Chmod(mode); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
