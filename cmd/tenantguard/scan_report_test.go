package main

// tenantguard scan's report formats: JUnit (checked with xmllint), SARIF
// and the text report.

import (
	"encoding/json"
	"encoding/xml"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"go.opentelemetry.io/collector/pdata/ptrace"

	"github.com/tenantguard/tenantguard/detector"
)

// junitDoc is the JUnit report as a consumer reads it.
type junitDoc struct {
	Tests    int `xml:"tests,attr"`
	Failures int `xml:"failures,attr"`
	Errors   int `xml:"errors,attr"`
	Suites   []struct {
		Name     string `xml:"name,attr"`
		Tests    int    `xml:"tests,attr"`
		Failures int    `xml:"failures,attr"`
		Errors   int    `xml:"errors,attr"`
		Cases    []struct {
			Name      string `xml:"name,attr"`
			Classname string `xml:"classname,attr"`
			File      string `xml:"file,attr"`
			Failure   *struct {
				Message string `xml:"message,attr"`
				Type    string `xml:"type,attr"`
				Body    string `xml:",chardata"`
			} `xml:"failure"`
			Error *struct {
				Message string `xml:"message,attr"`
			} `xml:"error"`
			SystemOut string `xml:"system-out"`
		} `xml:"testcase"`
	} `xml:"testsuite"`
}

// xmllint validates path against the JUnit schema. Without xmllint the test
// is skipped on a developer machine and fails in CI (CI=true), which must
// install it (Debian: libxml2-utils).
func xmllint(t *testing.T, path string) {
	t.Helper()
	bin, err := exec.LookPath("xmllint")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("xmllint is not installed: CI must install it (apt-get install -y libxml2-utils) to validate the JUnit report")
		}
		t.Skip("xmllint not installed (apt-get install -y libxml2-utils); the JUnit report is not validated against the schema")
	}
	out, err := exec.Command(bin, "--noout", "--schema", scanJUnitXSDPath, path).CombinedOutput()
	if err != nil {
		t.Fatalf("%s does not validate against %s: %v\n%s", path, scanJUnitXSDPath, err, out)
	}
}

// noUnscoped turns the unscoped-query rule off for the report-format tests,
// whose counts are about crossings and mismatches.
const noUnscoped = "--set=processors.tenantguard.unscoped_query.tables=[]"

func TestScanJUnit(t *testing.T) {
	dir := t.TempDir()
	bad := writeFile(t, filepath.Join(dir, "bad.jsonl"), []byte("{not json\n"))
	report := filepath.Join(dir, "junit.xml")
	out := runScanArgs(t, nil, "--config", scanConfigPath, noUnscoped, "--format", "junit", "--output", report, "--fail-on", "critical",
		filepath.Join(scanScenarioDir, "shared_inventory.json"), filepath.Join(scanScenarioDir, "header_mismatch.json"),
		filepath.Join(scanScenarioDir, "clean.json"), bad)
	if out.code != exitInput || out.stdout != "" {
		t.Errorf("exit %d (want 2: one input is bad), stdout %q (want the report in --output)", out.code, out.stdout)
	}
	if !strings.Contains(out.stderr, "2 findings (1 critical, 1 high; 1 at or above --fail-on critical)") {
		t.Errorf("the summary goes to stderr when the report goes to a file; stderr:\n%s", out.stderr)
	}

	raw, err := os.ReadFile(report)
	if err != nil {
		t.Fatal(err)
	}
	var doc junitDoc
	if err := xml.Unmarshal(raw, &doc); err != nil {
		t.Fatal(err)
	}
	if doc.Tests != 7 || doc.Failures != 1 || doc.Errors != 1 {
		t.Errorf("testsuites tests=%d failures=%d errors=%d, want 7 (a case per rule, and the input error), 1, 1\n%s",
			doc.Tests, doc.Failures, doc.Errors, raw)
	}
	var names []string
	for _, s := range doc.Suites {
		names = append(names, s.Name)
		for _, c := range s.Cases {
			if c.Classname != s.Name {
				t.Errorf("test case %q: classname %q, want its suite's %q", c.Name, c.Classname, s.Name)
			}
		}
	}
	var want []string
	for _, r := range detector.Rules {
		want = append(want, "tenantguard."+string(r))
	}
	if want = append(want, "tenantguard.input"); !slices.Equal(names, want) {
		t.Fatalf("suites %q, want %q", names, want)
	}
	// A rule nothing tripped has one passing case that says so.
	for _, i := range []int{1, 3, 4, 5} {
		cs := doc.Suites[i].Cases
		if wantName := "no " + string(detector.Rules[i]) + " finding in 6 traces"; len(cs) != 1 || cs[0].Name != wantName || cs[0].Failure != nil {
			t.Errorf("suite %s: want one passing case %q, got %+v", doc.Suites[i].Name, wantName, cs)
		}
	}
	cross := doc.Suites[0].Cases
	if len(cross) != 1 || cross[0].Failure == nil || cross[0].Failure.Type != "critical" ||
		!strings.Contains(cross[0].Name, traceSharedInventory) ||
		!strings.Contains(cross[0].Failure.Message, "reached tenant globex at inventory-svc `SELECT stock`") ||
		!strings.Contains(cross[0].Failure.Body, "crossing  gateway `GET /inventory` (acme) → inventory-svc `SELECT stock` (globex)") ||
		!strings.HasSuffix(cross[0].File, "shared_inventory.json") {
		t.Errorf("cross_tenant_trace: want one failing case for the shared inventory trace, got %+v", cross)
	}
	mm := doc.Suites[2].Cases
	if len(mm) != 1 || mm[0].Failure != nil || !strings.Contains(mm[0].SystemOut, "below --fail-on critical") {
		t.Errorf("tenant_mismatch below --fail-on: want a passing case with the finding in system-out, got %+v", mm)
	}
	in := doc.Suites[6].Cases
	if len(in) != 1 || in[0].Error == nil || !strings.Contains(in[0].Error.Message, bad+":1: invalid OTLP JSON") {
		t.Errorf("input errors are error cases: %+v", in)
	}

	// A clean scan still reports a passing case per rule.
	clean := runScanArgs(t, nil, "--config", scanConfigPath, noUnscoped, "--format", "junit", filepath.Join(scanScenarioDir, "clean.json"))
	cleanPath := writeFile(t, filepath.Join(dir, "clean.xml"), []byte(clean.stdout))
	var cdoc junitDoc
	if err := xml.Unmarshal([]byte(clean.stdout), &cdoc); err != nil {
		t.Fatal(err)
	}
	if clean.code != exitClean || cdoc.Tests != len(detector.Rules) || cdoc.Failures != 0 || cdoc.Suites[0].Cases[0].Name != "no cross_tenant_trace finding in 4 traces" {
		t.Errorf("clean scan: exit %d, JUnit %s", clean.code, clean.stdout)
	}

	// Span names are user data: markup in them must survive.
	td, err := (&ptrace.JSONUnmarshaler{}).UnmarshalTraces(compact(t, "shared_inventory.json"))
	if err != nil {
		t.Fatal(err)
	}
	const odd = "GET /a?x=1&y=<b>]]></failure>\"é\x01"
	renamed := 0
	for i := 0; i < td.ResourceSpans().Len(); i++ {
		for j := 0; j < td.ResourceSpans().At(i).ScopeSpans().Len(); j++ {
			spans := td.ResourceSpans().At(i).ScopeSpans().At(j).Spans()
			for k := 0; k < spans.Len(); k++ {
				if spans.At(k).Name() == "SELECT stock" {
					spans.At(k).SetName(odd)
					renamed++
				}
			}
		}
	}
	if renamed != 1 {
		t.Fatalf("renamed %d spans, want the one SELECT stock", renamed)
	}
	oddPath := writeFile(t, filepath.Join(dir, "odd.json"), jsonOf(t, td))
	oddReport := filepath.Join(dir, "odd.xml")
	if out := runScanArgs(t, nil, "--config", scanConfigPath, noUnscoped, "--format", "junit", "--output", oddReport, oddPath); out.code != exitFindings {
		t.Errorf("odd names: exit %d\n%s", out.code, out.stderr)
	}
	raw, err = os.ReadFile(oddReport)
	if err != nil {
		t.Fatal(err)
	}
	var odoc junitDoc
	if err := xml.Unmarshal(raw, &odoc); err != nil {
		t.Fatalf("%v\n%s", err, raw)
	}
	if f := odoc.Suites[0].Cases[0].Failure; f == nil || !strings.Contains(f.Message, "GET /a?x=1&y=<b>]]></failure>\"é") ||
		!strings.Contains(f.Body, "GET /a?x=1&y=<b>]]></failure>\"é") {
		t.Errorf("the span name did not survive the XML: %+v\n%s", f, raw)
	}

	// Last, as it may skip: the reports validate against the schema.
	xmllint(t, report)
	xmllint(t, cleanPath)
	xmllint(t, oddReport)
}

func TestScanSARIF(t *testing.T) {
	out := runScanArgs(t, nil, "--config", scanConfigPath, noUnscoped, "--format", "sarif",
		filepath.Join(scanScenarioDir, "shared_inventory.json"), filepath.Join(scanScenarioDir, "split_requests.jsonl"),
		filepath.Join(scanScenarioDir, "header_mismatch.json"))
	if out.code != exitFindings {
		t.Errorf("exit %d\n%s", out.code, out.stderr)
	}
	var log struct {
		Version string `json:"version"`
		Runs    []struct {
			Tool struct {
				Driver struct {
					Name  string `json:"name"`
					Rules []struct {
						ID string `json:"id"`
					} `json:"rules"`
				} `json:"driver"`
			} `json:"tool"`
			Results []struct {
				RuleID    string `json:"ruleId"`
				RuleIndex int    `json:"ruleIndex"`
				Level     string `json:"level"`
				Message   struct {
					Text string `json:"text"`
				} `json:"message"`
				Locations []struct {
					PhysicalLocation struct {
						ArtifactLocation struct {
							URI string `json:"uri"`
						} `json:"artifactLocation"`
						Region struct {
							StartLine int `json:"startLine"`
						} `json:"region"`
					} `json:"physicalLocation"`
				} `json:"locations"`
				PartialFingerprints map[string]string `json:"partialFingerprints"`
			} `json:"results"`
		} `json:"runs"`
	}
	if err := json.Unmarshal([]byte(out.stdout), &log); err != nil {
		t.Fatalf("SARIF does not parse: %v\n%s", err, out.stdout)
	}
	if log.Version != "2.1.0" || len(log.Runs) != 1 || log.Runs[0].Tool.Driver.Name != "tenantguard" {
		t.Fatalf("SARIF header: %s", out.stdout)
	}
	run := log.Runs[0]
	var got []string
	for _, r := range run.Results {
		if run.Tool.Driver.Rules[r.RuleIndex].ID != r.RuleID || r.PartialFingerprints["tenantguardLeakId/v1"] == "" {
			t.Errorf("result %s: ruleIndex %d or fingerprint wrong", r.RuleID, r.RuleIndex)
		}
		loc := r.Locations[0].PhysicalLocation
		got = append(got, fmt.Sprintf("%s %s %s:%d", r.RuleID, r.Level, filepath.Base(loc.ArtifactLocation.URI), loc.Region.StartLine))
	}
	slices.Sort(got)
	want := []string{
		"cross_tenant_trace error shared_inventory.json:1",
		"cross_tenant_trace error split_requests.jsonl:2", // the crossing appears with line 2
		"tenant_mismatch error header_mismatch.json:1",
	}
	if !slices.Equal(got, want) {
		t.Errorf("results %q, want %q", got, want)
	}
}

func TestScanTextReport(t *testing.T) {
	out := runScanArgs(t, nil, "--config", scanConfigPath, noUnscoped, filepath.Join(scanScenarioDir, "shared_inventory.json"))
	for _, want := range []string{
		"critical cross_tenant_trace FAIL\n",
		"  trace 286f490d… from tenant acme reached tenant globex at inventory-svc `SELECT stock`, from gateway `GET /inventory` through 1 span without a tenant\n",
		"  tenants   acme, globex\n",
		"  crossing  gateway `GET /inventory` (acme) → inventory-svc `SELECT stock` (globex), through 1 span without a tenant\n",
		"  spans     fa034f5180477414 gateway `GET /inventory`, tenant acme (tenant.id)\n",
		"  leak id   4b4e31208f82bdbc04fe135839a48c0f (closed, 3 spans)\n",
		"tenantguard scan: 1 finding (1 critical; 1 at or above --fail-on high) in 1 trace (3 spans) from 1 input\n",
	} {
		if !strings.Contains(out.stdout, want) {
			t.Errorf("text report lacks %q:\n%s", want, out.stdout)
		}
	}
}
