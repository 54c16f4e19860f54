package integration

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/capsec/capsec/api"
	"github.com/capsec/capsec/lab"
	"github.com/capsec/capsec/probe"
)

// Every test here injects one fault into a live move while the HMI polls,
// and checks what an operator needs: the PLC runs on exactly one node, its
// registers are intact, the move says what went wrong, and nothing of the
// failed move is left behind. Whether the HMI's session survived is logged;
// for faults before the network switch it is asserted.

// faultProbeTimeout is the HMI's request timeout in these tests: longer than
// a rollback takes, so that a survivable fault shows as a gap, not an error.
const faultProbeTimeout = "20s"

type moveOutcome struct {
	res api.MoveResult
	err error
}

func startMove(from, to string, timeout time.Duration, progress func(api.MoveEvent)) <-chan moveOutcome {
	ch := make(chan moveOutcome, 1)
	go func() {
		res, err := node(from).Move(context.Background(), "plc1", api.MoveRequest{To: to, Timeout: timeout}, progress)
		ch <- moveOutcome{res, err}
	}()
	return ch
}

func waitLog(t *testing.T, nodeName, substr string, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for time.Now().Before(deadline) {
		b, _ := os.ReadFile(filepath.Join(lab.NodeDir(nodeName), "agent.log"))
		if strings.Contains(string(b), substr) {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("agent of %s never logged %q", nodeName, substr)
}

// crashAtFault waits until node's agent holds at its --test-fault pause,
// then kills it with SIGKILL, as a crash would.
func crashAtFault(t *testing.T, node string) {
	t.Helper()
	waitLog(t, node, "test fault: pausing", 20*time.Second)
	if err := lab.KillAgent(node); err != nil {
		t.Fatal(err)
	}
}

func waitMove(t *testing.T, ch <-chan moveOutcome, within time.Duration) moveOutcome {
	t.Helper()
	select {
	case o := <-ch:
		t.Logf("move: %s (err: %v)", o.res.Summary(), o.err)
		return o
	case <-time.After(within):
		t.Fatalf("move did not end within %v", within)
	}
	return moveOutcome{}
}

// assertRunsOn checks that plc1 runs on `on`, and that `off` keeps nothing
// of it: no record, no namespace, no images on its tmpfs.
func assertRunsOn(t *testing.T, on, off string) {
	t.Helper()
	ctx := context.Background()
	deadline := time.Now().Add(20 * time.Second)
	for {
		c, err := node(on).Container(ctx, "plc1")
		if err == nil && c.Status == "running" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("plc1 on %s: %+v, %v; want running", on, c, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	assertNothingOf(t, off)
	tmpfs := filepath.Join(lab.NodeDir(on), "state", "tmpfs")
	for i := 0; i < 50; i++ {
		if ents, _ := os.ReadDir(tmpfs); len(ents) == 0 {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if ents, _ := os.ReadDir(tmpfs); len(ents) > 0 {
		t.Errorf("%s keeps move images after the move ended: %v", on, names(ents))
	}
}

func assertNothingOf(t *testing.T, n string) {
	t.Helper()
	// A node settles a failed move within its peer timeout; give it that.
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) && leftOn(n) != "" {
		time.Sleep(100 * time.Millisecond)
	}
	if _, err := node(n).Container(context.Background(), "plc1"); !errors.Is(err, api.ErrNotFound) {
		t.Errorf("plc1 is known on %s (err %v); want nothing left there", n, err)
	}
	if _, err := os.Stat("/run/netns/capsec-c-" + n + "-plc1"); err == nil {
		t.Errorf("plc1's network namespace is left on %s", n)
	}
	tmpfs := filepath.Join(lab.NodeDir(n), "state", "tmpfs")
	if ents, _ := os.ReadDir(tmpfs); len(ents) > 0 {
		t.Errorf("move images left on %s: %v", n, names(ents))
	}
}

// leftOn says what of plc1's moves is left on node n, or "".
func leftOn(n string) string {
	if _, err := node(n).Container(context.Background(), "plc1"); !errors.Is(err, api.ErrNotFound) {
		return "record"
	}
	if _, err := os.Stat("/run/netns/capsec-c-" + n + "-plc1"); err == nil {
		return "netns"
	}
	if ents, _ := os.ReadDir(filepath.Join(lab.NodeDir(n), "state", "tmpfs")); len(ents) > 0 {
		return "images"
	}
	return ""
}

func names(ents []os.DirEntry) []string {
	var out []string
	for _, e := range ents {
		out = append(out, e.Name())
	}
	return out
}

// finishProbe lets the HMI poll a little longer, then checks the PLC's
// state survived, logs whether the session did, and returns the report.
func finishProbe(t *testing.T, p *lab.Probe) probe.Report {
	t.Helper()
	time.Sleep(1500 * time.Millisecond)
	rep, err := p.Stop()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("HMI: session kept %v: %d errors, %d reconnects, ports %v, largest gap %.0f ms, violations %d, marker intact %v",
		rep.SessionKept(), rep.Errors, rep.Reconnects, rep.LocalPorts, rep.LargestGapMs, rep.Violations, rep.MarkerIntact)
	if rep.Violations > 0 || !rep.MarkerIntact {
		t.Errorf("PLC state broken: %v", rep.FirstViolations)
	}
	return rep
}

func requireSessionKept(t *testing.T, rep probe.Report) {
	t.Helper()
	if !rep.SessionKept() {
		t.Errorf("the HMI's session did not survive a fault before the network switch: %v", rep.Check())
	}
}

func requireRolledBack(t *testing.T, o moveOutcome, reason string) {
	t.Helper()
	if o.err == nil || o.res.Outcome != "rolled-back" {
		t.Fatalf("outcome %q err %v; want rolled-back", o.res.Outcome, o.err)
	}
	if !strings.Contains(o.res.Error, reason) {
		t.Errorf("reason %q does not say %q", o.res.Error, reason)
	}
}

func withFaults(nodes int, args map[string][]string) func(*lab.Config) {
	return func(c *lab.Config) {
		c.Nodes = nodes
		c.AgentArgs = args
	}
}

func startHMI(t *testing.T, cfg lab.Config) *lab.Probe {
	t.Helper()
	p, err := lab.StartProbe(cfg, plcIP+":502", 10*time.Millisecond, "--timeout", faultProbeTimeout)
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(500 * time.Millisecond)
	return p
}

// TestFaultDestinationKilled kills the destination's agent (SIGKILL) while
// it receives the checkpoint, and again while CRIU restores it there. The
// source must roll back; the restarted destination must tear down what it
// had prepared.
func TestFaultDestinationKilled(t *testing.T) {
	for _, tc := range []struct{ point, reason string }{
		{"receive-checkpoint", "transfer"},
		{"restore", "restore"},
	} {
		t.Run(tc.point, func(t *testing.T) {
			cfg := upLabWith(t, withFaults(2, map[string][]string{
				"node-a": {"--peer-timeout", "2s"},
				"node-b": {"--peer-timeout", "2s", "--test-fault", "pause:" + tc.point + "=30s"},
			}))
			runPLC(t, context.Background())
			p := startHMI(t, cfg)
			ch := startMove("node-a", "node-b", 0, nil)
			crashAtFault(t, "node-b")
			requireRolledBack(t, waitMove(t, ch, 30*time.Second), tc.reason)
			// Both points come before the network switch: the session lives.
			requireSessionKept(t, finishProbe(t, p))
			if err := lab.StartAgent(context.Background(), cfg, "node-b"); err != nil {
				t.Fatal(err)
			}
			assertRunsOn(t, "node-a", "node-b")
		})
	}
}

func TestFaultSourceKilledDuringTransfer(t *testing.T) {
	cfg := upLabWith(t, withFaults(2, map[string][]string{
		"node-a": {"--peer-timeout", "2s", "--test-fault", "pause:send-checkpoint=30s"},
		"node-b": {"--peer-timeout", "2s"},
	}))
	runPLC(t, context.Background())
	p := startHMI(t, cfg)
	startMove("node-a", "node-b", 0, nil)
	crashAtFault(t, "node-a")
	// The destination never committed: the restarted source must resume
	// the container from its own images.
	if err := lab.StartAgent(context.Background(), cfg, "node-a"); err != nil {
		t.Fatal(err)
	}
	assertRunsOn(t, "node-a", "node-b")
	finishProbe(t, p)
	assertNoJournal(t, "node-a")
}

func TestFaultSourceKilledAfterCommit(t *testing.T) {
	cfg := upLabWith(t, withFaults(2, map[string][]string{
		"node-a": {"--test-fault", "pause:cleanup=30s"},
	}))
	runPLC(t, context.Background())
	p := startHMI(t, cfg)
	startMove("node-a", "node-b", 0, nil)
	crashAtFault(t, "node-a")
	// The destination committed: the restarted source must clean up, not
	// resume a second copy.
	if err := lab.StartAgent(context.Background(), cfg, "node-a"); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		if _, err := node("node-a").Container(context.Background(), "plc1"); errors.Is(err, api.ErrNotFound) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	assertRunsOn(t, "node-b", "node-a")
	requireSessionKept(t, finishProbe(t, p))
	assertNoJournal(t, "node-a")
}

func assertNoJournal(t *testing.T, n string) {
	t.Helper()
	ents, _ := os.ReadDir(filepath.Join(lab.NodeDir(n), "state", "moves"))
	if len(ents) > 0 {
		t.Errorf("%s keeps move journals after settling: %v", n, names(ents))
	}
}

func TestFaultRestoreFails(t *testing.T) {
	cfg := upLab(t, 2)
	runPLC(t, context.Background())
	// node-b's copy of the image differs from node-a's: the restored
	// process's executable is not the file it was dumped with.
	bins, _ := filepath.Glob(filepath.Join(lab.NodeDir("node-b"), "state", "images", "by-digest", "*", "rootfs", "plcsim"))
	if len(bins) != 1 {
		t.Fatalf("node-b's plcsim image: %v", bins)
	}
	f, err := os.OpenFile(bins[0], os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.Write([]byte("tampered"))
	f.Close()
	p := startHMI(t, cfg)
	o := waitMove(t, startMove("node-a", "node-b", 0, nil), 60*time.Second)
	requireRolledBack(t, o, "restore")
	rep := finishProbe(t, p)
	if rep.LargestGapMs > 15000 {
		t.Errorf("PLC not serving again within seconds: largest gap %.0f ms", rep.LargestGapMs)
	}
	assertRunsOn(t, "node-a", "node-b")
}

func TestFaultCorruptCheckpoint(t *testing.T) {
	cfg := upLabWith(t, withFaults(2, map[string][]string{"node-a": {"--test-fault", "corrupt-checkpoint"}}))
	runPLC(t, context.Background())
	p := startHMI(t, cfg)
	o := waitMove(t, startMove("node-a", "node-b", 0, nil), 60*time.Second)
	requireRolledBack(t, o, "digest")
	requireSessionKept(t, finishProbe(t, p))
	assertRunsOn(t, "node-a", "node-b")
}

func TestFaultDestinationDiskFull(t *testing.T) {
	cfg := upLabWith(t, withFaults(2, map[string][]string{"node-b": {"--tmpfs-mib", "80"}}))
	ctx := context.Background()
	if _, err := node("node-a").Run(ctx, api.RunRequest{Name: "plc1", Image: "plcsim", IP: plcIP + "/24", Args: []string{"--ballast", "128"}}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Second)
	p := startHMI(t, cfg)
	o := waitMove(t, startMove("node-a", "node-b", 0, nil), 60*time.Second)
	requireRolledBack(t, o, "exceeds the limit")
	requireSessionKept(t, finishProbe(t, p))
	assertRunsOn(t, "node-a", "node-b")
}

func TestFaultNetworkDrop(t *testing.T) {
	cfg := upLabWith(t, withFaults(2, map[string][]string{
		"node-a": {"--peer-timeout", "2s"},
		"node-b": {"--peer-timeout", "2s", "--test-fault", "pause:receive-checkpoint=1s"},
	}))
	ctx := context.Background()
	if _, err := node("node-a").Run(ctx, api.RunRequest{Name: "plc1", Image: "plcsim", IP: plcIP + "/24"}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond)
	p := startHMI(t, cfg)
	// Drop every packet between the nodes once the transfer starts; the
	// user's --timeout bounds the move.
	dropped := make(chan error, 1)
	var once bool
	ch := startMove("node-a", "node-b", 8*time.Second, func(ev api.MoveEvent) {
		if ev.Phase == "transfer" && !once {
			once = true
			dropped <- nft(fmt.Sprintf(`table inet capsec_test {
				chain in { type filter hook input priority 0; policy accept; ip saddr %[1]s drop; }
				chain out { type filter hook output priority 0; policy accept; ip daddr %[1]s drop; }
			}`, lab.NodeIP(0)))
		}
	})
	start := time.Now()
	o := waitMove(t, ch, 60*time.Second)
	select {
	case err := <-dropped:
		if err != nil {
			t.Fatal(err)
		}
	default:
		t.Fatal("the move never reached its transfer")
	}
	if took := time.Since(start); took > 20*time.Second {
		t.Errorf("the move took %v to give up; want within the bound (8s) and a rollback", took)
	}
	if err := nft("delete table inet capsec_test"); err != nil {
		t.Fatal(err)
	}
	requireRolledBack(t, o, "transfer")
	requireSessionKept(t, finishProbe(t, p))
	time.Sleep(3 * time.Second) // node-b's session times out too, and it tears down
	assertRunsOn(t, "node-a", "node-b")
}

// nft applies a ruleset in node-b's namespace.
func nft(ruleset string) error {
	cmd := exec.Command("nsenter", "--net=/run/netns/"+lab.NodeNetns("node-b"), "--", "nft", "-f", "-")
	cmd.Stdin = strings.NewReader(ruleset + "\n")
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("nft %q: %v: %s", ruleset, err, out)
	}
	return nil
}

// TestConcurrentMoves starts two moves of one container at once: one moves
// it, the other is refused, and the container ends up on one node.
func TestConcurrentMoves(t *testing.T) {
	upLab(t, 2)
	runPLC(t, context.Background())
	a := startMove("node-a", "node-b", 0, nil)
	b := startMove("node-a", "node-b", 0, nil)
	oa, ob := <-a, <-b
	ok := 0
	for _, o := range []moveOutcome{oa, ob} {
		if o.err == nil && o.res.Outcome == "moved" {
			ok++
		} else if !errors.Is(o.err, api.ErrFailedPrecondition) && !errors.Is(o.err, api.ErrNotFound) {
			t.Errorf("refused move: err %v; want busy (failed precondition)", o.err)
		}
	}
	if ok != 1 {
		t.Fatalf("%d moves succeeded; want exactly 1 (%v / %v)", ok, oa.err, ob.err)
	}
	assertRunsOn(t, "node-b", "node-a")
}

// TestBadInput gives the API and the CLI bad input: each is refused with a
// clear error and changes nothing.
func TestBadInput(t *testing.T) {
	cfg := upLab(t, 2)
	ctx := context.Background()
	runPLC(t, ctx)
	cases := []struct {
		name string
		req  api.RunRequest
		want error
		says string
	}{
		{"malformed IP", api.RunRequest{Name: "plc2", Image: "plcsim", IP: "10.77.0.500/24"}, api.ErrInvalid, "10.77.0.500"},
		{"IP without prefix", api.RunRequest{Name: "plc2", Image: "plcsim", IP: "10.77.0.51"}, api.ErrInvalid, "CIDR"},
		{"malformed MAC", api.RunRequest{Name: "plc2", Image: "plcsim", IP: "10.77.0.51/24", MAC: "zz:11"}, api.ErrInvalid, "MAC"},
		{"multicast MAC", api.RunRequest{Name: "plc2", Image: "plcsim", IP: "10.77.0.51/24", MAC: "01:00:5e:00:00:01"}, api.ErrInvalid, "MAC"},
		{"IP in use", api.RunRequest{Name: "plc2", Image: "plcsim", IP: plcIP + "/24"}, api.ErrAlreadyExists, "in use"},
		{"name taken", api.RunRequest{Name: "plc1", Image: "plcsim", IP: "10.77.0.51/24"}, api.ErrAlreadyExists, "plc1"},
		{"unknown image", api.RunRequest{Name: "plc2", Image: "nope", IP: "10.77.0.51/24"}, api.ErrNotFound, "nope"},
		{"bad name", api.RunRequest{Name: "PLC/2", Image: "plcsim", IP: "10.77.0.51/24"}, api.ErrInvalid, "name"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := node("node-a").Run(ctx, tc.req)
			if !errors.Is(err, tc.want) || !strings.Contains(strings.ToLower(err.Error()), strings.ToLower(tc.says)) {
				t.Fatalf("err %v; want %v saying %q", err, tc.want, tc.says)
			}
		})
	}
	cs, _ := node("node-a").Containers(ctx)
	if len(cs) != 1 {
		t.Errorf("after bad input node-a has %d containers; want only plc1", len(cs))
	}
	nss, _ := filepath.Glob("/run/netns/capsec-c-*")
	if len(nss) != 1 {
		t.Errorf("container namespaces after bad input: %v; want only plc1's", nss)
	}
	// The CLI says what failed and exits non-zero.
	for _, args := range [][]string{
		{"run", "plc3", "--image", "plcsim", "--ip", "bogus", "--node", "node-a"},
		{"move", "nope", "--to", "node-b", "--node", "node-a"},
		{"move", "plc1", "--to", "node-z", "--node", "node-a"},
		{"logs", "nope", "--node", "node-a"},
	} {
		out, err := exec.Command(filepath.Join(cfg.BinDir, "migrate"), args...).CombinedOutput()
		if err == nil || !strings.Contains(string(out), "migrate "+args[0]+":") {
			t.Errorf("migrate %v: err %v, output %q; want a failure that says what failed", args, err, out)
		}
	}
}

// TestTrustFiles checks what an agent leaves readable: the API socket is
// root's alone, and the state and image directories are 0700.
func TestTrustFiles(t *testing.T) {
	upLab(t, 2)
	sock := lab.NodeDir("node-a") + "/agent.sock"
	checkMode(t, sock, 0o600)
	for _, d := range []string{"state", "state/images", "state/tmpfs", "state/containers", "state/runtime"} {
		checkMode(t, filepath.Join(lab.NodeDir("node-a"), d), 0o700)
	}
}

func checkMode(t *testing.T, p string, want os.FileMode) {
	t.Helper()
	fi, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	if got := fi.Mode().Perm(); got != want {
		t.Errorf("%s has mode %o; want %o", p, got, want)
	}
}
