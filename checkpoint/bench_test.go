package checkpoint

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"
)

// BenchmarkDumpRestore moves the tiny echo container back and forth between
// two runtimes (as two agents on one host would), with one established TCP
// connection, and reports the mean of each phase the agent's downtime is made
// of: dump-ms (the whole Dump call: freeze, images, tree gone), frozen-ms
// (CRIU's own figure, DumpResult.Frozen) and restore-ms (the whole Restore
// call: until the tree runs). The p50s are logged. Root only:
//
//	CAPSEC_TEST_ROOT=1 go test -run '^$' -bench DumpRestore -benchtime 20x ./checkpoint/
func BenchmarkDumpRestore(b *testing.B) {
	needRoot(b)
	criu := needCRIU(b)
	ctx, cancel := context.WithTimeout(b.Context(), 10*time.Minute)
	defer cancel()

	rootfs := buildRootfs(b)
	netns := newVethNetns(b, "10.199.0.9", "10.199.0.10")
	cg := cgroupPrefix(b)
	// CRIU's details would drown the benchmark's output; warnings still show.
	log := slog.New(slog.NewTextHandler(tWriter{b}, &slog.HandlerOptions{Level: slog.LevelWarn}))
	type node struct {
		rt   *Runtime
		spec Spec
	}
	var nodes [2]node
	for i, n := range []string{"a", "b"} {
		rt, err := NewRuntime(filepath.Join(b.TempDir(), "node-"+n), criu, log)
		if err != nil {
			b.Fatal(err)
		}
		nodes[i] = node{rt, Spec{Name: "bench-" + n, Rootfs: rootfs, Args: []string{"/echoserver"}, NetNS: netns, CgroupPath: cg + "/" + n}}
		cleanupContainer(b, rt, nodes[i].spec.Name)
	}
	_, out, err := nodes[0].rt.Run(ctx, nodes[0].spec)
	if err != nil {
		b.Fatalf("Run: %v", err)
	}
	readLines(b, out).waitFor(b, "listening", 5*time.Second)
	conn, err := net.DialTimeout("tcp", "10.199.0.10:7000", 5*time.Second)
	if err != nil {
		b.Fatalf("dial: %v", err)
	}
	defer conn.Close()
	rd := bufio.NewReader(conn)
	seq := 1
	benchEcho(b, conn, rd, &seq)

	images := mountTmpfs(b) // as the agent does
	work := b.TempDir()
	var dumps, frozens, restores []time.Duration
	cur := 0
	for i := 0; b.Loop(); i++ {
		src, dst := nodes[cur], nodes[1-cur]
		imgDir := filepath.Join(images, fmt.Sprint(i))
		start := time.Now()
		dres, err := src.rt.Dump(ctx, src.spec.Name, DumpOpts{ImageDir: imgDir, WorkDir: filepath.Join(work, fmt.Sprint(i, "-dump"))})
		if err != nil {
			b.Fatalf("move %d: Dump: %v", i, err)
		}
		dumps = append(dumps, time.Since(start))
		frozens = append(frozens, dres.Frozen)

		b.StopTimer()
		if err := src.rt.Delete(ctx, src.spec.Name); err != nil {
			b.Fatalf("move %d: Delete: %v", i, err)
		}
		b.StartTimer()

		start = time.Now()
		_, rout, _, err := dst.rt.Restore(ctx, dst.spec, RestoreOpts{
			ImageDir: imgDir, WorkDir: filepath.Join(work, fmt.Sprint(i, "-restore")),
			NetnsReady: func() error { return nil },
		})
		if err != nil {
			b.Fatalf("move %d: Restore: %v", i, err)
		}
		restores = append(restores, time.Since(start))

		b.StopTimer()
		go func() { _, _ = io.Copy(io.Discard, rout); rout.Close() }()
		benchEcho(b, conn, rd, &seq) // the session and its state survived
		_ = os.RemoveAll(imgDir)
		cur = 1 - cur
		b.StartTimer()
	}
	b.ReportMetric(0, "ns/op") // a move's total is not the figure of interest
	b.ReportMetric(msMean(dumps), "dump-ms")
	b.ReportMetric(msMean(frozens), "frozen-ms")
	b.ReportMetric(msMean(restores), "restore-ms")
	b.Logf("%d moves; p50 dump %.1f ms, frozen %.1f ms, restore %.1f ms; max dump %.1f ms, restore %.1f ms",
		len(dumps), msP50(dumps), msP50(frozens), msP50(restores), msMax(dumps), msMax(restores))
	if testing.Verbose() {
		for i := range dumps {
			b.Logf("move %d: dump %.1f ms, frozen %.1f ms, restore %.1f ms", i, ms(dumps[i]), ms(frozens[i]), ms(restores[i]))
		}
	}
}

func benchEcho(b *testing.B, c net.Conn, rd *bufio.Reader, seq *int) {
	b.Helper()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	line := fmt.Sprint("ping", *seq)
	if _, err := c.Write([]byte(line + "\n")); err != nil {
		b.Fatalf("send: %v", err)
	}
	reply, err := rd.ReadString('\n')
	if want := fmt.Sprintf("%d %s\n", *seq, line); err != nil || reply != want {
		b.Fatalf("reply %q, %v; want %q", reply, err, want)
	}
	*seq++
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func msMean(d []time.Duration) float64 {
	if len(d) == 0 {
		return 0
	}
	var sum time.Duration
	for _, x := range d {
		sum += x
	}
	return float64(sum) / float64(len(d)) / float64(time.Millisecond)
}

func msP50(d []time.Duration) float64 {
	if len(d) == 0 {
		return 0
	}
	s := slices.Clone(d)
	slices.Sort(s)
	return float64(s[len(s)/2]) / float64(time.Millisecond)
}

func msMax(d []time.Duration) float64 {
	if len(d) == 0 {
		return 0
	}
	return float64(slices.Max(d)) / float64(time.Millisecond)
}
