package main

// scan's SARIF 2.1.0 rendering.

import (
	"encoding/json"
	"io"
	"net/url"
	"path/filepath"

	"github.com/tenantguard/tenantguard/detector"
	"github.com/tenantguard/tenantguard/store"
)

// ---------------------------------------------------------------- SARIF

type sarifLog struct {
	Schema  string     `json:"$schema"`
	Version string     `json:"version"`
	Runs    []sarifRun `json:"runs"`
}

type sarifRun struct {
	Tool        sarifTool         `json:"tool"`
	Results     []sarifResult     `json:"results"`
	Invocations []sarifInvocation `json:"invocations"`
}

type sarifTool struct {
	Driver sarifDriver `json:"driver"`
}

type sarifDriver struct {
	Name    string      `json:"name"`
	Version string      `json:"version"`
	Rules   []sarifRule `json:"rules"`
}

type sarifText struct {
	Text string `json:"text"`
}

type sarifRule struct {
	ID                   string         `json:"id"`
	ShortDescription     sarifText      `json:"shortDescription"`
	DefaultConfiguration map[string]any `json:"defaultConfiguration"`
}

type sarifResult struct {
	RuleID              string            `json:"ruleId"`
	RuleIndex           int               `json:"ruleIndex"`
	Level               string            `json:"level"`
	Message             sarifText         `json:"message"`
	Locations           []sarifLocation   `json:"locations,omitempty"`
	PartialFingerprints map[string]string `json:"partialFingerprints"`
	Properties          map[string]any    `json:"properties"`
}

type sarifLocation struct {
	PhysicalLocation sarifPhysical `json:"physicalLocation"`
}

type sarifPhysical struct {
	ArtifactLocation struct {
		URI string `json:"uri"`
	} `json:"artifactLocation"`
	Region *sarifRegion `json:"region,omitempty"`
}

type sarifRegion struct {
	StartLine  int    `json:"startLine,omitempty"`
	ByteOffset *int64 `json:"byteOffset,omitempty"`
}

type sarifInvocation struct {
	ExecutionSuccessful bool                `json:"executionSuccessful"`
	Notifications       []sarifNotification `json:"toolExecutionNotifications,omitempty"`
}

type sarifNotification struct {
	Level   string    `json:"level"`
	Message sarifText `json:"message"`
}

// sarifLevel maps a severity onto SARIF's levels.
func sarifLevel(severity string) string {
	switch detector.Severity(severity) {
	case detector.SeverityLow:
		return "note"
	case detector.SeverityMedium:
		return "warning"
	}
	return "error"
}

// ruleLevel is the severity a rule's served finding gets at most: the
// default level of its SARIF rule.
var ruleLevel = map[detector.Rule]detector.Severity{
	detector.RuleCrossTenantTrace:  detector.SeverityCritical,
	detector.RuleBlockedAttempt:    detector.SeverityLow,
	detector.RuleTenantMismatch:    detector.SeverityHigh,
	detector.RuleForeignSigningKey: detector.SeverityCritical,
	detector.RuleUnscopedQuery:     detector.SeverityHigh,
	detector.RuleMissingTenant:     detector.SeverityMedium,
}

// writeSARIF writes a SARIF 2.1.0 log: one result per finding, ruleId the
// rule, level from the severity, located at the input the finding was
// detected in.
func (r *scanReport) writeSARIF(w io.Writer) error {
	run := sarifRun{
		Tool:        sarifTool{Driver: sarifDriver{Name: "tenantguard", Version: version}},
		Results:     []sarifResult{},
		Invocations: []sarifInvocation{{ExecutionSuccessful: len(r.errs) == 0}},
	}
	ruleIndex := map[string]int{}
	addRule := func(rule, severity string) int {
		if i, ok := ruleIndex[rule]; ok {
			return i
		}
		desc := detector.Rule(rule).Describe()
		if desc == "" {
			desc = rule
		}
		ruleIndex[rule] = len(run.Tool.Driver.Rules)
		run.Tool.Driver.Rules = append(run.Tool.Driver.Rules, sarifRule{
			ID: rule, ShortDescription: sarifText{desc},
			DefaultConfiguration: map[string]any{"level": sarifLevel(severity)},
		})
		return ruleIndex[rule]
	}
	for _, rule := range detector.Rules {
		addRule(string(rule), string(ruleLevel[rule]))
	}
	for i := range r.findings {
		f := &r.findings[i]
		res := sarifResult{
			RuleID:              f.ev.Rule,
			RuleIndex:           addRule(f.ev.Rule, f.ev.Severity),
			Level:               sarifLevel(f.ev.Severity),
			Message:             sarifText{f.ev.Message(store.Plain)},
			PartialFingerprints: map[string]string{"tenantguardLeakId/v1": f.ev.LeakID},
			Properties: map[string]any{
				"severity": f.ev.Severity, "status": f.ev.Status, "trace_id": f.ev.TraceID,
				"tenants": f.ev.Tenants, "services": f.ev.Services, "fails": f.failing,
			},
		}
		if f.arrival != "" {
			res.Properties["arrival"] = f.arrival
		}
		var loc sarifLocation
		loc.PhysicalLocation.ArtifactLocation.URI = (&url.URL{Path: filepath.ToSlash(f.at.input)}).String()
		switch {
		case f.at.line > 0:
			loc.PhysicalLocation.Region = &sarifRegion{StartLine: f.at.line}
		case f.at.offset >= 0:
			off := f.at.offset
			loc.PhysicalLocation.Region = &sarifRegion{ByteOffset: &off}
		}
		res.Locations = []sarifLocation{loc}
		run.Results = append(run.Results, res)
	}
	for _, e := range r.errs {
		run.Invocations[0].Notifications = append(run.Invocations[0].Notifications,
			sarifNotification{Level: "error", Message: sarifText{e.Error()}})
	}
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	return enc.Encode(sarifLog{
		Schema:  "https://json.schemastore.org/sarif-2.1.0.json",
		Version: "2.1.0",
		Runs:    []sarifRun{run},
	})
}
