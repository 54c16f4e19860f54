package bench

import (
	"fmt"
	"strconv"
	"strings"
)

// ParseConfigs reads a comma-separated list of configurations: a name from
// DefaultConfigs ("small", "256MiB", "1GiB+dirty"), or BALLAST[:DIRTY] in
// MiB and MiB/s ("512", "1024:64"), named after its figures.
func ParseConfigs(s string) ([]MoveConfig, error) {
	var out []MoveConfig
	for _, item := range strings.Split(s, ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			continue
		}
		c, err := parseConfig(item)
		if err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no configuration in %q", s)
	}
	return out, nil
}

func parseConfig(item string) (MoveConfig, error) {
	for _, d := range DefaultConfigs() {
		if strings.EqualFold(d.Name, item) {
			return d, nil
		}
	}
	ballast, dirty, hasDirty := strings.Cut(item, ":")
	b, err := strconv.Atoi(ballast)
	if err != nil || b < 0 {
		return MoveConfig{}, fmt.Errorf("configuration %q: want one of small, 256MiB, 1GiB+dirty, or BALLAST_MiB[:DIRTY_MiB_PER_S]", item)
	}
	c := MoveConfig{BallastMiB: b, Name: fmt.Sprintf("%dMiB", b)}
	if b == 0 {
		c.Name = "small"
	}
	if hasDirty {
		d, err := strconv.Atoi(dirty)
		if err != nil || d < 0 {
			return MoveConfig{}, fmt.Errorf("configuration %q: dirty rate %q is not a MiB/s count", item, dirty)
		}
		if d > 0 {
			c.DirtyMiBps = d
			c.Name += fmt.Sprintf("+%dMiB/s", d)
		}
	}
	return c, nil
}
