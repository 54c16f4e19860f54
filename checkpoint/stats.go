package checkpoint

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/checkpoint-restore/go-criu/v7/stats"
	"google.golang.org/protobuf/proto"
)

// maxStatsSize caps what is read of a stats file before it is parsed: the
// real one is a few dozen bytes.
const maxStatsSize = 64 * 1024

// readCRIUStats parses CRIU's stats file (stats-dump or stats-restore) from
// the first of dirs that has it. CRIU writes it into its work directory.
// go-criu's own reader indexes the file without checking its length, so a
// truncated file would panic; this one checks.
func readCRIUStats(name string, dirs ...string) (*stats.StatsEntry, error) {
	var b []byte
	var err error
	for _, d := range dirs {
		b, err = os.ReadFile(filepath.Join(d, name))
		if err == nil {
			break
		}
	}
	if err != nil {
		return nil, fmt.Errorf("CRIU %s: %w", name, err)
	}
	if len(b) < stats.PayloadOffset || len(b) > maxStatsSize {
		return nil, fmt.Errorf("CRIU %s: %d bytes, not a stats image", name, len(b))
	}
	if binary.LittleEndian.Uint32(b[stats.PrimaryMagicOffset:]) != stats.ImgServiceMagic ||
		binary.LittleEndian.Uint32(b[stats.SecondaryMagicOffset:]) != stats.StatsMagic {
		return nil, fmt.Errorf("CRIU %s: bad magic", name)
	}
	n := int(binary.LittleEndian.Uint32(b[stats.SizeOffset:]))
	if n > len(b)-stats.PayloadOffset {
		return nil, fmt.Errorf("CRIU %s: entry of %d bytes in a %d-byte file", name, n, len(b))
	}
	st := &stats.StatsEntry{}
	if err := proto.Unmarshal(b[stats.PayloadOffset:stats.PayloadOffset+n], st); err != nil {
		return nil, fmt.Errorf("CRIU %s: %w", name, err)
	}
	return st, nil
}

// dumpTimes returns CRIU's freezing and frozen times from stats-dump.
func dumpTimes(dirs ...string) (freezing, frozen time.Duration, err error) {
	st, err := readCRIUStats(stats.StatsDump, dirs...)
	if err != nil {
		return 0, 0, err
	}
	d := st.GetDump()
	if d == nil {
		return 0, 0, errors.New("CRIU stats-dump has no dump entry")
	}
	// CRIU counts in microseconds.
	return time.Duration(d.GetFreezingTime()) * time.Microsecond,
		time.Duration(d.GetFrozenTime()) * time.Microsecond, nil
}
