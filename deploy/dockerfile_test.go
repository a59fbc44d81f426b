package deploy

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"debug/elf"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
)

// stage is one FROM … AS name block of the Dockerfile.
type stage struct {
	name, base string
	workdir    string
	runs       []string
	copies     []copyInstr
	user       string
	expose     []string
	entrypoint []string
	cmd        []string
}

type copyInstr struct{ from, src, dst string }

type dockerfile struct {
	stages      []*stage
	healthcheck bool
}

func (d *dockerfile) stage(name string) *stage {
	for _, s := range d.stages {
		if s.name == name {
			return s
		}
	}
	return nil
}

// parseDockerfile reads the instructions this kit's Dockerfile uses; an
// instruction it does not know is an error, so the checks below cannot
// silently miss one.
func parseDockerfile(data []byte) (*dockerfile, error) {
	d := &dockerfile{}
	var cur *stage
	var logical strings.Builder
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if cont, ok := strings.CutSuffix(line, `\`); ok {
			logical.WriteString(cont + " ")
			continue
		}
		logical.WriteString(line)
		instr, rest, _ := strings.Cut(logical.String(), " ")
		logical.Reset()
		rest = strings.TrimSpace(rest)
		if strings.ToUpper(instr) != "FROM" && strings.ToUpper(instr) != "ARG" && cur == nil {
			return nil, fmt.Errorf("%s before the first FROM", instr)
		}
		switch strings.ToUpper(instr) {
		case "ARG":
		case "FROM":
			f := strings.Fields(rest)
			cur = &stage{base: f[0], workdir: "/"}
			if len(f) == 3 && strings.EqualFold(f[1], "AS") {
				cur.name = f[2]
			}
			d.stages = append(d.stages, cur)
		case "WORKDIR":
			cur.workdir = path.Join(cur.workdir, rest)
		case "RUN":
			cur.runs = append(cur.runs, rest)
		case "COPY":
			var c copyInstr
			var args []string
			for _, f := range strings.Fields(rest) {
				switch {
				case strings.HasPrefix(f, "--from="):
					c.from = strings.TrimPrefix(f, "--from=")
				case strings.HasPrefix(f, "--"):
				default:
					args = append(args, f)
				}
			}
			if len(args) < 2 {
				return nil, fmt.Errorf("COPY %s: want a source and a destination", rest)
			}
			c.src, c.dst = strings.Join(args[:len(args)-1], " "), args[len(args)-1]
			cur.copies = append(cur.copies, c)
		case "USER":
			cur.user = rest
		case "EXPOSE":
			cur.expose = append(cur.expose, strings.Fields(rest)...)
		case "ENTRYPOINT", "CMD":
			var argv []string
			if err := json.Unmarshal([]byte(rest), &argv); err != nil {
				return nil, fmt.Errorf("%s %s: use the exec (JSON array) form: %v", instr, rest, err)
			}
			if strings.EqualFold(instr, "ENTRYPOINT") {
				cur.entrypoint = argv
			} else {
				cur.cmd = argv
			}
		case "HEALTHCHECK":
			d.healthcheck = true
		default:
			return nil, fmt.Errorf("instruction %s is not one this test checks", instr)
		}
	}
	return d, sc.Err()
}

// goBuild is the stage's `go build` command and the path it writes.
func (s *stage) goBuild() (cmd, out string, ok bool) {
	for _, r := range s.runs {
		if !strings.Contains(r, "go build") {
			continue
		}
		f := strings.Fields(r)
		if i := slices.Index(f, "-o"); i >= 0 && i+1 < len(f) {
			return r, f[i+1], true
		}
	}
	return "", "", false
}

// imageStages are the Dockerfile's runtime stages by the image name the
// manifests run (the repository's last path element).
func imageStages(t *testing.T, d *dockerfile, c *cluster) map[*stage][]workload {
	t.Helper()
	out := map[*stage][]workload{}
	for _, w := range c.workloads() {
		for _, ctr := range w.pod.Spec.Containers {
			repo, _, _ := strings.Cut(ctr.Image, ":")
			s := d.stage(path.Base(repo))
			if s == nil {
				t.Errorf("%s runs image %s, which no Dockerfile stage named %s builds", w, ctr.Image, path.Base(repo))
				continue
			}
			out[s] = append(out[s], w)
		}
	}
	return out
}

func readDockerfile(t *testing.T) *dockerfile {
	t.Helper()
	data, err := os.ReadFile("Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	d, err := parseDockerfile(data)
	if err != nil {
		t.Fatalf("Dockerfile: %v", err)
	}
	return d
}

// The images are what collectors' images are: a static binary on
// distroless/static (or scratch), run as a non-root user, no HEALTHCHECK,
// the binary as ENTRYPOINT and the config the manifests mount as CMD.
func TestDockerfileImages(t *testing.T) {
	d := readDockerfile(t)
	c := loadCluster(t)
	if d.healthcheck {
		t.Error("the Dockerfile has a HEALTHCHECK; collectors are probed by the orchestrator on their OTLP port")
	}
	if last := d.stages[len(d.stages)-1]; last.name != "tenantguard" {
		t.Errorf("the default target (last stage) is %q, want tenantguard", last.name)
	}
	stages := imageStages(t, d, c)
	if len(stages) != 2 {
		t.Fatalf("want the tenantguard and tenantguard-lb images, the manifests run %d", len(stages))
	}
	for s, ws := range stages {
		if !strings.HasPrefix(s.base, "gcr.io/distroless/static") && s.base != "scratch" {
			t.Errorf("stage %s is FROM %s, want distroless/static or scratch", s.name, s.base)
		}
		uid, _, _ := strings.Cut(s.user, ":")
		if n, err := strconv.Atoi(uid); s.user == "" || uid == "root" || (err == nil && n == 0) {
			t.Errorf("stage %s runs as %q, want a non-root user", s.name, s.user)
		}
		if len(s.entrypoint) != 1 {
			t.Fatalf("stage %s: ENTRYPOINT %v, want the binary", s.name, s.entrypoint)
		}
		i := slices.IndexFunc(s.copies, func(c copyInstr) bool { return c.dst == s.entrypoint[0] && c.from != "" })
		if i < 0 {
			t.Fatalf("stage %s: no COPY --from puts %s in place", s.name, s.entrypoint[0])
		}
		cp := s.copies[i]
		b := d.stage(cp.from)
		if b == nil {
			t.Fatalf("stage %s copies from %s, which is no stage", s.name, cp.from)
		}
		cmd, out, ok := b.goBuild()
		if !ok || out != cp.src {
			t.Errorf("stage %s copies %s from %s, whose go build writes %q", s.name, cp.src, b.name, out)
		}
		if !strings.HasPrefix(cmd, "CGO_ENABLED=0 ") {
			t.Errorf("stage %s builds with %q: want CGO_ENABLED=0, a static binary", b.name, cmd)
		}
		for _, w := range ws {
			for _, ctr := range w.pod.Spec.Containers {
				if !slices.Equal(ctr.Args, s.cmd) || len(ctr.Command) != 0 {
					t.Errorf("%s runs %v %v; the image runs %v %v", w, ctr.Command, ctr.Args, s.entrypoint, s.cmd)
				}
				for _, p := range ctr.Ports {
					if !slices.Contains(s.expose, strconv.Itoa(int(p.ContainerPort))) {
						t.Errorf("%s serves port %d, which stage %s does not EXPOSE (%v)", w, p.ContainerPort, s.name, s.expose)
					}
				}
			}
		}
	}
}

// The Dockerfile's build commands, run here as docker would run them (from
// the stage's WORKDIR, with VERSION set): each gives a static binary that
// reports the version it was built with and accepts the config the
// manifests give it, through the collector's own `validate` command, the
// code path it starts with. A config with a bad field is refused.
func TestDockerfileBuildsWhatTheManifestsRun(t *testing.T) {
	if testing.Short() {
		t.Skip("builds both collector binaries")
	}
	d := readDockerfile(t)
	c := loadCluster(t)
	configs, errs := collectorConfigs(c)
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	const version = "9.9.9-deploytest"
	for s, ws := range imageStages(t, d, c) {
		t.Run(s.name, func(t *testing.T) {
			cp := s.copies[slices.IndexFunc(s.copies, func(c copyInstr) bool { return c.dst == s.entrypoint[0] })]
			b := d.stage(cp.from)
			cmd, out, _ := b.goBuild()
			bin := filepath.Join(t.TempDir(), path.Base(out))
			build := exec.Command("sh", "-c", strings.Replace(cmd, out, bin, 1))
			build.Dir = filepath.Join(root, strings.TrimPrefix(b.workdir, "/src"))
			build.Env = append(os.Environ(), "VERSION="+version)
			if msg, err := build.CombinedOutput(); err != nil {
				t.Fatalf("%s (in %s): %v\n%s", cmd, build.Dir, err, msg)
			}
			checkStatic(t, bin)

			got, err := exec.Command(bin, "--version").CombinedOutput()
			if want := path.Base(out) + " version " + version; err != nil || strings.TrimSpace(string(got)) != want {
				t.Errorf("%s --version: %q, %v; want %q", path.Base(out), got, err, want)
			}

			for _, cc := range configs {
				if !slices.ContainsFunc(ws, func(w workload) bool { return w.String() == cc.w.String() }) {
					continue
				}
				if msg, err := validate(t, bin, cc, cc.text); err != nil {
					t.Errorf("%s validate %s: %v\n%s", path.Base(out), cc, err, msg)
				}
				// A bad value must be refused, or the check above proves nothing.
				bad, field := breakConfig(t, cc)
				if msg, err := validate(t, bin, cc, bad); err == nil || !strings.Contains(string(msg), field) {
					t.Errorf("%s validate accepted %s with a bad %s (%v):\n%s", path.Base(out), cc, field, err, msg)
				}
			}
		})
	}
}

// breakConfig spoils one field the binary validates.
func breakConfig(t *testing.T, cc collectorConfig) (string, string) {
	t.Helper()
	for _, b := range []struct{ from, to, field string }{
		{"idle_window: 60s", "idle_window: -1s", "idle_window"},
		{"routing_key: traceID", "routing_key: tenant", "routing_key"},
	} {
		if strings.Contains(cc.text, b.from) {
			return strings.Replace(cc.text, b.from, b.to, 1), b.field
		}
	}
	t.Fatalf("%s: nothing to break", cc)
	return "", ""
}

// validate runs `bin validate` on a config with the container's
// environment: the pod IP, and a fresh random value for each secret.
func validate(t *testing.T, bin string, cc collectorConfig, text string) ([]byte, error) {
	t.Helper()
	file := filepath.Join(t.TempDir(), cc.key)
	if err := os.WriteFile(file, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "validate", "--config="+file)
	cmd.Env = []string{"HOME=" + t.TempDir(), "PATH=" + os.Getenv("PATH")}
	for _, e := range cc.ctr.Env {
		cmd.Env = append(cmd.Env, e.Name+"="+envValue(t, e))
	}
	return cmd.CombinedOutput()
}

func envValue(t *testing.T, e corev1.EnvVar) string {
	switch {
	case e.ValueFrom == nil:
		return e.Value
	case e.ValueFrom.FieldRef != nil && e.ValueFrom.FieldRef.FieldPath == "status.podIP":
		return "127.0.0.1"
	case e.ValueFrom.SecretKeyRef != nil:
		b := make([]byte, 24)
		rand.Read(b)
		return hex.EncodeToString(b)
	}
	t.Fatalf("env %s: no test value for its source", e.Name)
	return ""
}

// checkStatic fails unless bin is a statically linked ELF executable: no
// program interpreter and no shared libraries, so it runs on
// distroless/static or scratch.
func checkStatic(t *testing.T, bin string) {
	t.Helper()
	f, err := elf.Open(bin)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			t.Errorf("%s has a program interpreter: dynamically linked", bin)
		}
	}
	if libs, err := f.ImportedLibraries(); err != nil || len(libs) > 0 {
		t.Errorf("%s needs shared libraries %v (%v)", bin, libs, err)
	}
}
