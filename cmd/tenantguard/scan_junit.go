package main

// scan's JUnit XML rendering.

import (
	"encoding/xml"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"

	"github.com/tenantguard/tenantguard/detector"
	"github.com/tenantguard/tenantguard/store"
)

// ---------------------------------------------------------------- JUnit

// JUnit XML as Jenkins, GitLab and the GitHub test-report actions read it:
// testsuites > testsuite > testcase > failure|error, plus system-out.
type junitSuites struct {
	XMLName  xml.Name     `xml:"testsuites"`
	Name     string       `xml:"name,attr"`
	Tests    int          `xml:"tests,attr"`
	Failures int          `xml:"failures,attr"`
	Errors   int          `xml:"errors,attr"`
	Time     string       `xml:"time,attr"`
	Suites   []junitSuite `xml:"testsuite"`
}

type junitSuite struct {
	Name      string      `xml:"name,attr"`
	Tests     int         `xml:"tests,attr"`
	Failures  int         `xml:"failures,attr"`
	Errors    int         `xml:"errors,attr"`
	Skipped   int         `xml:"skipped,attr"`
	Time      string      `xml:"time,attr"`
	Timestamp string      `xml:"timestamp,attr"`
	Hostname  string      `xml:"hostname,attr,omitempty"`
	Cases     []junitCase `xml:"testcase"`
}

type junitCase struct {
	Name      string        `xml:"name,attr"`
	Classname string        `xml:"classname,attr"`
	File      string        `xml:"file,attr,omitempty"`
	Time      string        `xml:"time,attr"`
	Failure   *junitProblem `xml:"failure,omitempty"`
	Error     *junitProblem `xml:"error,omitempty"`
	SystemOut *junitText    `xml:"system-out,omitempty"`
}

type junitText struct {
	Text string `xml:",cdata"`
}

type junitProblem struct {
	Message string `xml:"message,attr"`
	Type    string `xml:"type,attr"`
	Body    string `xml:",cdata"`
}

// xmlText replaces what XML 1.0 cannot carry (control characters, invalid
// UTF-8; span names are user data) with U+FFFD, as encoding/xml does in
// attributes but not in CDATA.
func xmlText(s string) string {
	return strings.Map(func(r rune) rune {
		switch {
		case r == '\t' || r == '\n' || r == '\r',
			r >= 0x20 && r <= 0xd7ff, r >= 0xe000 && r <= 0xfffd, r >= 0x10000 && r <= 0x10ffff:
			return r
		}
		return '\ufffd'
	}, strings.ToValidUTF8(s, "\ufffd"))
}

// writeJUnit writes one suite per rule (classname tenantguard.RULE): a
// failing test case per finding at or above --fail-on, a passing one (the
// finding in system-out) per finding below it, and a passing "no finding"
// case for a rule nothing tripped, so that a clean scan still reports tests.
// Input errors are error test cases in the suite tenantguard.input.
func (r *scanReport) writeJUnit(w io.Writer) error {
	host, _ := os.Hostname()
	stamp := r.started.UTC().Format("2006-01-02T15:04:05")
	var rules []string
	for _, rule := range detector.Rules {
		rules = append(rules, string(rule))
	}
	for _, f := range r.findings { // rules of a newer build
		if !slices.Contains(rules, f.ev.Rule) {
			rules = append(rules, f.ev.Rule)
		}
	}
	doc := junitSuites{Name: "tenantguard scan", Time: fmt.Sprintf("%.3f", r.elapsed.Seconds())}
	for _, rule := range rules {
		suite := junitSuite{Name: "tenantguard." + rule, Time: "0", Timestamp: stamp, Hostname: host}
		for i := range r.findings {
			f := &r.findings[i]
			if f.ev.Rule != rule {
				continue
			}
			c := junitCase{
				Name:      fmt.Sprintf("trace %s (%s)", f.ev.TraceID, strings.Join(f.ev.Tenants, ", ")),
				Classname: suite.Name,
				File:      f.at.input,
				Time:      "0",
			}
			if f.failing {
				c.Failure = &junitProblem{Message: f.ev.Message(store.Plain), Type: f.ev.Severity, Body: xmlText(f.details(""))}
				suite.Failures++
			} else {
				c.SystemOut = &junitText{xmlText(f.verdict(r.failOn) + "\n" + f.details(""))}
			}
			suite.Cases = append(suite.Cases, c)
		}
		if len(suite.Cases) == 0 {
			suite.Cases = append(suite.Cases, junitCase{
				Name:      fmt.Sprintf("no %s finding in %s", rule, plural(int(r.traces), "trace", "traces")),
				Classname: suite.Name,
				Time:      "0",
			})
		}
		suite.Tests = len(suite.Cases)
		doc.Suites = append(doc.Suites, suite)
	}
	if len(r.errs) > 0 {
		suite := junitSuite{Name: "tenantguard.input", Time: "0", Timestamp: stamp, Hostname: host}
		for _, e := range r.errs {
			suite.Cases = append(suite.Cases, junitCase{
				Name: "read " + e.input, Classname: suite.Name, File: e.input, Time: "0",
				Error: &junitProblem{Message: e.Error(), Type: "input", Body: xmlText(e.Error())},
			})
		}
		suite.Tests, suite.Errors = len(suite.Cases), len(suite.Cases)
		doc.Suites = append(doc.Suites, suite)
	}
	for _, s := range doc.Suites {
		doc.Tests += s.Tests
		doc.Failures += s.Failures
		doc.Errors += s.Errors
	}
	if _, err := io.WriteString(w, xml.Header); err != nil {
		return err
	}
	enc := xml.NewEncoder(w)
	enc.Indent("", "  ")
	if err := enc.Encode(doc); err != nil {
		return err
	}
	_, err := io.WriteString(w, "\n")
	return err
}
