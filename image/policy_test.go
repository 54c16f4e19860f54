package image

import (
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

func TestPolicy(t *testing.T) {
	p := DefaultPolicy()
	cases := []struct {
		name string
		spec specs.Spec
		want string // "" = allowed
	}{
		{"plcsim", specs.Spec{Process: &specs.Process{Args: []string{"/plcsim"}}}, ""},
		{"proc mount", specs.Spec{Mounts: []specs.Mount{{Destination: "/proc", Type: "proc"}}}, ""},
		{"host bind", specs.Spec{Mounts: []specs.Mount{{Destination: "/data", Source: "/etc", Type: "bind"}}}, "host mount /etc"},
		{"bind option", specs.Spec{Mounts: []specs.Mount{{Destination: "/proc", Source: "/", Options: []string{"rbind"}}}}, "host mount /"},
		{"tmpfs elsewhere", specs.Spec{Mounts: []specs.Mount{{Destination: "/var", Type: "tmpfs"}}}, "mount at /var"},
		{"sys admin", specs.Spec{Process: &specs.Process{Capabilities: &specs.LinuxCapabilities{Bounding: []string{"CAP_NET_BIND_SERVICE", "CAP_SYS_ADMIN"}}}}, "capability CAP_SYS_ADMIN"},
		{"device", specs.Spec{Linux: &specs.Linux{Devices: []specs.LinuxDevice{{Path: "/dev/mem"}}}}, "device /dev/mem"},
		{"host netns", specs.Spec{Linux: &specs.Linux{Namespaces: []specs.LinuxNamespace{{Type: "network", Path: "/proc/1/ns/net"}}}}, "host's network namespace"},
		{"hooks", specs.Spec{Hooks: &specs.Hooks{Prestart: []specs.Hook{{Path: "/bin/sh"}}}}, "runtime hooks"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := p.CheckSpec(&tc.spec)
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("refused: %v", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Fatalf("err %v, want it to name %q", err, tc.want)
			}
		})
	}
}
