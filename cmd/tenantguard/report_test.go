package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"image/png"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"
	"go.yaml.in/yaml/v3"

	"github.com/tenantguard/tenantguard/detector"
	"github.com/tenantguard/tenantguard/store"
)

// chromiumPath is Debian's chromium, which .ci/run installs.
const chromiumPath = "/usr/bin/chromium"

// scenarioProcessorYAML is processors.tenantguard of testdata/config.yaml
// (the config the scenario goldens are judged with), without the keys
// startCollector sets itself.
func scenarioProcessorYAML(t *testing.T) string {
	t.Helper()
	raw, err := os.ReadFile(scanConfigPath)
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Processors map[string]map[string]any `yaml:"processors"`
	}
	if err := yaml.Unmarshal(raw, &doc); err != nil {
		t.Fatal(err)
	}
	tg := doc.Processors["tenantguard"]
	if tg == nil {
		t.Fatalf("%s has no processors.tenantguard", scanConfigPath)
	}
	for _, k := range []string{"idle_window", "instance", "store", "metrics", "alerts", "evidence_attributes"} {
		delete(tg, k)
	}
	out, err := yaml.Marshal(tg)
	if err != nil {
		t.Fatal(err)
	}
	return string(out)
}

// runReport runs `tenantguard leaks report --config CFG ARGS...`.
func (c *collector) report(t *testing.T, args ...string) string {
	t.Helper()
	cmd := exec.Command(c.bin, append([]string{"leaks", "report", "--config", c.cfgPath}, args...)...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("leaks report %v: %v\nstderr: %s", args, err, stderr.String())
	}
	return stdout.String()
}

// TestLeaksReportFromScenarios sends every testdata scenario through the
// built collector (with the scenarios' own config), stops it so that it
// writes its coverage, and checks the report against facts known without
// it: the spans sent, and the goldens' crossings and refused attempts. The
// HTML page is then rendered in headless Chromium: a screenshot that is a
// real picture, the figures in the page's text, and no network request.
func TestLeaksReportFromScenarios(t *testing.T) {
	c := startCollector(t, withProcessorYAML(scenarioProcessorYAML(t)))
	spans := 0
	crossings := map[string]int{} // tenant → succeeded crossings in the goldens
	var wantCrossings, wantBlocked int
	for _, sc := range scenarios(t) {
		for _, td := range sc.reqs {
			spans += td.SpanCount()
			c.postOTLP(t, td)
		}
		for _, g := range sc.golden {
			switch {
			case g.Rule == string(detector.RuleCrossTenantTrace) && g.Status != string(detector.StatusAllowed) && g.Status != string(detector.StatusReclassified):
				wantCrossings++
				for _, tn := range g.Tenants {
					crossings[tn]++
				}
			case g.Rule == string(detector.RuleBlockedAttempt) && g.Status != string(detector.StatusAllowed):
				wantBlocked++
			}
		}
	}
	// The OTLP receiver answers once the pipeline (tenantguard inline) has
	// the request; stopping closes every trace and writes the hour's coverage.
	c.stop(t)

	var r isolationReport
	if err := json.Unmarshal([]byte(c.report(t, "--format", "json")), &r); err != nil {
		t.Fatal(err)
	}
	if r.Totals.SpansChecked != uint64(spans) {
		t.Errorf("spans checked %d, want the %d sent", r.Totals.SpansChecked, spans)
	}
	if r.Totals.CrossingsSucceeded != wantCrossings || r.Totals.BlockedAttempts != wantBlocked {
		t.Errorf("crossings %d, blocked %d; the goldens have %d and %d", r.Totals.CrossingsSucceeded, r.Totals.BlockedAttempts, wantCrossings, wantBlocked)
	}
	if len(r.Collectors) != 1 || r.Collectors[0] != c.instance {
		t.Errorf("collectors %v, want [%s]", r.Collectors, c.instance)
	}
	held := 0
	for _, tr := range r.Tenants {
		if tr.Tenant == detector.NoTenant {
			continue
		}
		if tr.CrossingsSucceeded != crossings[tr.Tenant] {
			t.Errorf("tenant %s: %d crossings, the goldens have %d", tr.Tenant, tr.CrossingsSucceeded, crossings[tr.Tenant])
		}
		if tr.TracesChecked == 0 {
			t.Errorf("tenant %s: no traces checked", tr.Tenant)
		}
		if tr.IsolationHeld {
			held++
		}
	}
	byTenant := map[string]tenantReport{}
	for _, tr := range r.Tenants {
		byTenant[tr.Tenant] = tr
	}
	// Tenant 42 appears only in the clean scenario; orders-svc is
	// tenant-aware and missing_tenant.json sends it spans without one.
	if !byTenant["42"].IsolationHeld || held == 0 {
		t.Errorf("tenant 42 (clean scenario only): %+v", byTenant["42"])
	}
	if r.Totals.SpansMissingTenant == 0 || r.Totals.UnscopedQueries == 0 {
		t.Errorf("totals %+v: the missing_tenant and unscoped_query scenarios count nothing", r.Totals)
	}

	text := c.report(t)
	if !strings.Contains(text, "isolation held") || !strings.Contains(text, fmt.Sprintf("%d crossings succeeded", wantCrossings)) {
		t.Errorf("text report:\n%s", text)
	}
	md := c.report(t, "--format", "markdown")
	if !strings.Contains(md, "| 42 |") || !strings.Contains(md, "isolation held") {
		t.Errorf("markdown report:\n%s", md)
	}

	page := filepath.Join(t.TempDir(), "report.html")
	c.report(t, "--format", "html", "--output", page)
	if st, err := os.Stat(page); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("report file: %v %v", err, st)
	}
	shot, innerText, requests := renderInChromium(t, page)
	img, err := png.Decode(bytes.NewReader(shot))
	if err != nil {
		t.Fatalf("screenshot is not a PNG: %v", err)
	}
	b := img.Bounds()
	if b.Dx() < 800 || b.Dy() < 600 || b.Dx() > 4000 || b.Dy() > 20000 {
		t.Errorf("screenshot %dx%d: not a page-sized picture", b.Dx(), b.Dy())
	}
	colors := map[uint32]bool{}
	for y := b.Min.Y; y < b.Max.Y; y += 7 {
		for x := b.Min.X; x < b.Max.X; x += 7 {
			r, g, bl, _ := img.At(x, y).RGBA()
			colors[r>>8<<16|g>>8<<8|bl>>8] = true
		}
	}
	if len(colors) < 8 {
		t.Errorf("screenshot has %d colours: blank", len(colors))
	}
	for _, want := range []string{
		fmt.Sprintf("%d\nspans checked", spans),
		fmt.Sprintf("%d\ncrossings succeeded", wantCrossings),
		fmt.Sprintf("%d\nattempts refused", wantBlocked),
		"Findings over time by rule", "Tenant pairs", "Coverage per service",
		"isolation held",
	} {
		if !strings.Contains(innerText, want) {
			t.Errorf("page text lacks %q:\n%s", want, innerText)
		}
	}
	for tn, n := range crossings {
		if !strings.Contains(innerText, fmt.Sprintf("%s\t", tn)) || !strings.Contains(innerText, fmt.Sprintf("%d succeeded", n)) {
			t.Errorf("page text lacks tenant %s with %d succeeded crossings", tn, n)
		}
	}
	if len(requests) > 0 {
		t.Errorf("the page made network requests: %v", requests)
	}
	if os.Getenv("TENANTGUARD_UPDATE_REPORT_PNG") != "" {
		// The README's picture: go test ./cmd/tenantguard -run TestLeaksReportFromScenarios with this set.
		if err := os.WriteFile(filepath.Join("..", "..", "docs", "report.png"), shot, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// renderInChromium loads the page in headless Chromium and returns a
// full-page screenshot, the body's innerText and every request the page
// made beyond its own file.
func renderInChromium(t *testing.T, page string) (shot []byte, innerText string, requests []string) {
	t.Helper()
	browser, err := exec.LookPath(chromiumPath)
	if err != nil {
		// As the other tests of outside parts: in CI (which installs it)
		// a missing browser fails the run; elsewhere the test says what
		// to install.
		if os.Getenv("CI") == "true" {
			t.Fatalf("Chromium is required (Debian package chromium, which .ci/run installs): %v", err)
		}
		t.Skipf("Chromium not installed (apt-get install chromium): %v", err)
	}
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(browser),
		chromedp.Headless, chromedp.NoSandbox, chromedp.DisableGPU, chromedp.NoFirstRun,
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1200, 900),
	}
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	defer cancelAlloc()
	ctx, cancel := chromedp.NewContext(actx)
	defer cancel()
	ctx, cancelTimeout := context.WithTimeout(ctx, 60*time.Second)
	defer cancelTimeout()
	var mu sync.Mutex
	if err := chromedp.Listen(ctx, func(ev any) {
		if e, ok := ev.(*network.EventRequestWillBeSent); ok && !strings.HasPrefix(e.Request.URL, "file://") {
			mu.Lock()
			requests = append(requests, e.Request.URL)
			mu.Unlock()
		}
	}); err != nil {
		t.Fatalf("starting Chromium: %v", err)
	}
	// Navigate returns once the page has loaded.
	if err := chromedp.Do(ctx, chromedp.Navigate("file://"+page)); err != nil {
		t.Fatalf("loading %s in Chromium: %v", page, err)
	}
	if innerText, err = chromedp.Run(ctx, chromedp.Evaluate[string](`document.body.innerText`)); err != nil {
		t.Fatalf("reading the page text: %v", err)
	}
	if shot, err = chromedp.Run(ctx, chromedp.FullScreenshot(100)); err != nil {
		t.Fatalf("screenshot: %v", err)
	}
	mu.Lock()
	defer mu.Unlock()
	return shot, innerText, slices.Clone(requests)
}

// A hostile tenant id (markup, a terminal escape, invalid UTF-8, a table
// separator) comes out inert in every format, and the figures stay right.
func TestLeaksReportRendersHostileTenantsInert(t *testing.T) {
	h := time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC)
	evil := "<script>alert(1)</script>|\x1b[31m\xff"
	cov := []store.Coverage{
		{Collector: "a", Hour: h, Tenant: evil, Traces: 3, Spans: 9, Services: map[string]store.ServiceCoverage{"api</svg>": {Traces: 3, TracesWithoutTenant: 2}}},
		{Collector: "b", Hour: h, Tenant: evil, Traces: 1, Spans: 1},
		{Collector: "a", Hour: h.Add(2 * time.Hour), Tenant: "acme", Traces: 2, Spans: 4},
	}
	evs := []store.Evidence{{LeakID: "l1", Rule: string(detector.RuleCrossTenantTrace), Status: "closed", Tenants: []string{"acme", evil},
		DetectedAt: h.Add(time.Minute), CrossingEdges: []store.CrossingEdge{{From: store.EdgeEnd{Tenant: evil}, To: store.EdgeEnd{Tenant: "acme"}}}}}
	r, err := buildReport([]string{"j"}, evs, cov, nil, time.Time{}, time.Time{}, "")
	if err != nil {
		t.Fatal(err)
	}
	if r.Hours != 3 || len(r.QuietHours) != 1 || !r.QuietHours[0].From.Equal(h.Add(time.Hour)) {
		t.Errorf("hours %d, quiet %+v: want 3 hours, 11:00 quiet", r.Hours, r.QuietHours)
	}
	var evilRow tenantReport
	for _, tr := range r.Tenants {
		if tr.Tenant == evil {
			evilRow = tr
		}
	}
	if evilRow.TracesChecked != 4 || evilRow.CrossingsSucceeded != 1 || evilRow.IsolationHeld || len(evilRow.ServicesNotCovered) != 1 {
		t.Errorf("hostile tenant's row %+v", evilRow)
	}
	for format, render := range reportFormats {
		var b bytes.Buffer
		if err := render(&b, r); err != nil {
			t.Fatalf("%s: %v", format, err)
		}
		out := b.String()
		if strings.Contains(out, "\x1b") || !utf8.ValidString(out) {
			t.Errorf("%s: raw escape or invalid UTF-8 in the output", format)
		}
		if format == "html" && (strings.Contains(out, "<script") || strings.Contains(out, "api</svg>")) {
			t.Errorf("html: markup from a tenant or service name came through")
		}
		if format == "markdown" && strings.Contains(out, "</script>|") {
			t.Errorf("markdown: unescaped table separator")
		}
	}
}

func TestLeaksReportRejectsBadArguments(t *testing.T) {
	now := time.Date(2026, 3, 8, 0, 0, 0, 0, time.UTC)
	for in, want := range map[string]time.Time{
		"2026-03-01": time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC), "7d": now.Add(-7 * 24 * time.Hour),
		"90m": now.Add(-90 * time.Minute), "2026-03-01T10:30:00+01:00": time.Date(2026, 3, 1, 9, 30, 0, 0, time.UTC),
	} {
		if got, err := parseWhen("--since", in, now); err != nil || !got.Equal(want) {
			t.Errorf("parseWhen(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	if _, err := parseWhen("--since", "yesterday", now); err == nil || !strings.Contains(err.Error(), `--since "yesterday"`) {
		t.Errorf("bad --since: %v", err)
	}
	h := time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC)
	if _, err := buildReport(nil, nil, nil, nil, h, h, ""); err == nil || !strings.Contains(err.Error(), "is not after") {
		t.Errorf("empty period: %v", err)
	}
	if _, err := buildReport(nil, nil, nil, nil, h, h.Add(2*maxReportHours*time.Hour), ""); err == nil || !strings.Contains(err.Error(), "narrow") {
		t.Errorf("huge period: %v", err)
	}
	err := runLeaksReport(context.Background(), &leaksFlags{}, &reportFlags{format: "pdf"}, io.Discard, io.Discard)
	if err == nil || !strings.Contains(err.Error(), `--format "pdf"`) {
		t.Errorf("bad format: %v", err)
	}
}
