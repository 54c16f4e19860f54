package checkpoint

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
)

// Version numbers are major*10000 + minor*100 + sublevel, as CRIU's RPC reports them.
const (
	// MinCRIUVersion is 4.2.0: older CRIU fails on this kernel (vdso, 3.x) or on
	// established TCP sockets (4.1.1).
	MinCRIUVersion = 40200

	// DefaultCRIUPath is the wrapper `make deps` installs.
	DefaultCRIUPath = "/opt/capsec/criu/bin/criu"
)

// CRIU is a probed CRIU binary. Probe it once with FindCRIU and pass the value
// around; nothing here is global.
type CRIU struct {
	Path          string // absolute path of the binary or wrapper
	Version       int    // e.g. 40201 for 4.2.1
	VersionString string // as printed by `criu --version`, e.g. "4.2.1"

	// NftablesLock: `criu check --feature network_lock_nftables` passed; the
	// runtime's CRIU config file asks for `network-lock nftables` (there is no
	// iptables binary here).
	NftablesLock bool
	// ExternalNetNS: CRIU can leave the container's netns out of the images
	// and restore into a netns we give it (feature external_net_ns).
	ExternalNetNS bool
	// LazyPages: userfaultfd post-copy restore is possible (feature uffd-noncoop).
	LazyPages bool
	// DirtyTracking: the kernel tracks dirty pages (soft-dirty), so iterative
	// pre-dumps work (feature mem_dirty_track without "Dirty tracking is OFF").
	DirtyTracking bool
}

// FindCRIU locates and checks CRIU. path "" means DefaultCRIUPath, falling back
// to `criu` on PATH if that one is new enough. It runs `criu --version` and
// `criu check` and says how to fix what is wrong.
func FindCRIU(ctx context.Context, path string) (*CRIU, error) {
	if path == "" {
		c, err := probeCRIU(ctx, DefaultCRIUPath)
		if err == nil {
			return c, nil
		}
		onPath, lerr := exec.LookPath("criu")
		if lerr != nil {
			return nil, fmt.Errorf("%w (and no criu on PATH): run `make deps` to install CRIU 4.2+ into /opt/capsec/criu", err)
		}
		c, perr := probeCRIU(ctx, onPath)
		if perr != nil {
			return nil, fmt.Errorf("%w; criu on PATH: %w: run `make deps` to install CRIU 4.2+ into /opt/capsec/criu", err, perr)
		}
		return c, nil
	}
	c, err := probeCRIU(ctx, path)
	if err != nil {
		return nil, fmt.Errorf("%w: install CRIU 4.2+ there or pass no path to use %s (run `make deps`)", err, DefaultCRIUPath)
	}
	return c, nil
}

func probeCRIU(ctx context.Context, path string) (*CRIU, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("criu %s: %w", path, err)
	}
	fi, err := os.Stat(abs)
	if err != nil {
		return nil, fmt.Errorf("criu %s: %w", abs, err)
	}
	if fi.IsDir() || fi.Mode().Perm()&0o111 == 0 {
		return nil, fmt.Errorf("criu %s: not an executable file", abs)
	}
	out, err := exec.CommandContext(ctx, abs, "--version").CombinedOutput()
	if err != nil {
		return nil, fmt.Errorf("criu %s --version: %w: %s", abs, err, firstLine(out))
	}
	vs, v, err := parseCRIUVersion(out)
	if err != nil {
		return nil, fmt.Errorf("criu %s --version: %w", abs, err)
	}
	if v < MinCRIUVersion {
		return nil, fmt.Errorf("criu %s is version %s, need %s or newer", abs, vs, versionString(MinCRIUVersion))
	}
	if out, err := exec.CommandContext(ctx, abs, "check").CombinedOutput(); err != nil {
		return nil, fmt.Errorf("criu %s check failed (%w): %s", abs, err, lastLines(out, 3))
	}
	c := &CRIU{Path: abs, Version: v, VersionString: vs}
	c.NftablesLock = c.hasFeature(ctx, "network_lock_nftables")
	c.ExternalNetNS = c.hasFeature(ctx, "external_net_ns")
	c.LazyPages = c.hasFeature(ctx, "uffd-noncoop")
	c.DirtyTracking = c.hasFeature(ctx, "mem_dirty_track")
	return c, nil
}

// hasFeature runs `criu check --feature name`. CRIU exits 0 but warns for some
// missing features (mem_dirty_track prints "Dirty tracking is OFF"), so a
// warning counts as missing.
func (c *CRIU) hasFeature(ctx context.Context, name string) bool {
	out, err := exec.CommandContext(ctx, c.Path, "check", "--feature", name).CombinedOutput()
	return err == nil && !bytes.Contains(out, []byte("Warn")) && !bytes.Contains(out, []byte("Error"))
}

// UsePath makes `criu` on PATH resolve to c.Path, because libcontainer runs
// exec.Command("criu", "swrk", "3") and offers no way to name the binary. This
// is the one process-wide setting libcontainer forces on us: it prepends a
// directory to the process's PATH. If c.Path is not named "criu", a symlink
// named criu is made in linkDir (under the runtime root) and that is used.
func (c *CRIU) UsePath(linkDir string) error {
	dir := filepath.Dir(c.Path)
	if filepath.Base(c.Path) != "criu" {
		if err := os.MkdirAll(linkDir, 0o700); err != nil {
			return fmt.Errorf("criu symlink dir %s: %w", linkDir, err)
		}
		link := filepath.Join(linkDir, "criu")
		if cur, err := os.Readlink(link); err != nil || cur != c.Path {
			_ = os.Remove(link)
			if err := os.Symlink(c.Path, link); err != nil {
				return fmt.Errorf("criu symlink %s -> %s: %w", link, c.Path, err)
			}
		}
		dir = linkDir
	}
	path := os.Getenv("PATH")
	if first, _, _ := strings.Cut(path, string(os.PathListSeparator)); first != dir {
		if err := os.Setenv("PATH", dir+string(os.PathListSeparator)+path); err != nil {
			return fmt.Errorf("set PATH for criu: %w", err)
		}
	}
	got, err := exec.LookPath("criu")
	if err != nil {
		return fmt.Errorf("criu not on PATH after adding %s: %w", dir, err)
	}
	if filepath.Dir(got) != dir {
		return fmt.Errorf("criu on PATH resolves to %s, not %s", got, filepath.Join(dir, "criu"))
	}
	return nil
}

// versionRE matches "Version: 4.2" or "Version: 4.2.1" in `criu --version`.
var versionRE = regexp.MustCompile(`Version:\s*(\d+)\.(\d+)(?:\.(\d+))?`)

func parseCRIUVersion(out []byte) (string, int, error) {
	m := versionRE.FindSubmatch(out)
	if m == nil {
		return "", 0, fmt.Errorf("no version in %q", firstLine(out))
	}
	var parts [3]int
	for i := range 3 {
		if len(m[i+1]) == 0 {
			continue
		}
		n, err := strconv.Atoi(string(m[i+1]))
		if err != nil {
			return "", 0, fmt.Errorf("version part %q: %w", m[i+1], err)
		}
		parts[i] = n
	}
	v := parts[0]*10000 + parts[1]*100 + parts[2]
	return versionString(v), v, nil
}

func versionString(v int) string {
	return fmt.Sprintf("%d.%d.%d", v/10000, v/100%100, v%100)
}

func firstLine(b []byte) string {
	line, _, _ := bytes.Cut(bytes.TrimSpace(b), []byte("\n"))
	return string(line)
}

func lastLines(b []byte, n int) string {
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, " | ")
}

// errNoCRIU is returned by Dump and Restore on a Runtime made without CRIU.
var errNoCRIU = errors.New("runtime has no CRIU: call FindCRIU and pass it to NewRuntime (run `make deps` to install CRIU 4.2+)")
