package cli

import (
	"bytes"
	"flag"
	"reflect"
	"strings"
	"testing"
)

func TestEveryCommandHelpTeaches(t *testing.T) {
	for _, c := range commands() {
		t.Run(c.name, func(t *testing.T) {
			var out, errb bytes.Buffer
			if code := Run([]string{c.name, "--help"}, &out, &errb); code != 0 {
				t.Fatalf("exit %d: %s", code, errb.String())
			}
			h := out.String()
			for _, want := range []string{"usage: migrate " + c.name, "EXAMPLES", "$ migrate " + c.name, "-socket"} {
				if !strings.Contains(h, want) {
					t.Errorf("help lacks %q:\n%s", want, h)
				}
			}
		})
	}
}

func TestParseInterleaved(t *testing.T) {
	fs := flag.NewFlagSet("x", flag.ContinueOnError)
	to := fs.String("to", "", "")
	pos, err := parseInterleaved(fs, []string{"plc1", "--to", "node-b", "extra"})
	if err != nil || *to != "node-b" || !reflect.DeepEqual(pos, []string{"plc1", "extra"}) {
		t.Fatalf("pos %v to %q err %v", pos, *to, err)
	}
}

func TestBadInvocations(t *testing.T) {
	cases := []struct {
		args []string
		code int
		want string
	}{
		{[]string{"frobnicate"}, 2, "unknown command"},
		{[]string{"move"}, 2, "want 1 argument"},
		{[]string{"move", "plc1"}, 1, "--to is required"},
		{[]string{"run", "plc1"}, 1, "--image and --ip are required"},
		{[]string{"ps", "--socket", "/nonexistent/agent.sock"}, 1, "hint: is the agent running?"},
		{[]string{"ps", "--socket", "/x", "--node", "node-a"}, 2, "not both"},
	}
	for _, tc := range cases {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			var out, errb bytes.Buffer
			code := Run(tc.args, &out, &errb)
			if code != tc.code || !strings.Contains(errb.String(), tc.want) {
				t.Fatalf("exit %d (want %d), stderr %q (want %q)", code, tc.code, errb.String(), tc.want)
			}
		})
	}
}
