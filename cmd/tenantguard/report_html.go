package main

import (
	"fmt"
	"html"
	"html/template"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/tenantguard/tenantguard/detector"
)

// The HTML report is one self-contained page: inline CSS and inline SVG
// charts, no script, no font, no request to anywhere, and print styles so
// that "Print to PDF" gives an auditor's copy.

var ruleColors = map[detector.Rule]string{
	detector.RuleCrossTenantTrace:  "#c62828",
	detector.RuleBlockedAttempt:    "#1565c0",
	detector.RuleTenantMismatch:    "#ef6c00",
	detector.RuleForeignSigningKey: "#6a1b9a",
	detector.RuleUnscopedQuery:     "#ad1457",
	detector.RuleMissingTenant:     "#757575",
}

// maxMatrixTenants bounds the tenant-pair matrix; the table lists all pairs.
const maxMatrixTenants = 20

// maxServiceBars bounds the coverage chart: the least covered services.
const maxServiceBars = 30

var reportPage = template.Must(template.New("report").Funcs(template.FuncMap{
	"label":  tenantLabel,
	"hours":  func(rs []hourRange) string { return rangesText(rs, 4) },
	"join":   func(xs []string) string { return strings.Join(xs, ", ") },
	"pct":    func(f float64) string { return fmt.Sprintf("%.1f%%", f) },
	"noTen":  func(t string) bool { return t == detector.NoTenant },
	"verdic": func(tr tenantReport) string { return tr.verdict() },
}).Parse(`<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{.R.Title}}</title>
<style>
  :root { color-scheme: light; }
  body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, Helvetica, Arial, sans-serif; color: #1a1a1a; margin: 2rem auto; max-width: 1100px; padding: 0 1rem; }
  h1 { font-size: 1.5rem; margin-bottom: .25rem; }
  h2 { font-size: 1.1rem; margin-top: 2rem; border-bottom: 1px solid #ddd; padding-bottom: .25rem; }
  .meta { color: #555; font-size: .9rem; }
  .cards { display: flex; flex-wrap: wrap; gap: .75rem; margin: 1rem 0; }
  .card { border: 1px solid #ddd; border-radius: 6px; padding: .6rem .9rem; min-width: 9rem; }
  .card b { display: block; font-size: 1.4rem; }
  .card.bad b { color: #c62828; } .card.good b { color: #2e7d32; }
  table { border-collapse: collapse; width: 100%; font-size: .85rem; }
  th, td { border-bottom: 1px solid #e5e5e5; padding: .35rem .5rem; text-align: left; vertical-align: top; }
  th { background: #f6f6f6; }
  td.n { text-align: right; font-variant-numeric: tabular-nums; }
  .held { color: #2e7d32; font-weight: 600; }
  .leak { color: #c62828; font-weight: 700; }
  .muted { color: #777; }
  svg text { font-family: inherit; font-size: 11px; fill: #333; }
  .chart { margin: .5rem 0 1rem; }
  code { font-size: .8rem; }
  @media print {
    body { margin: 0; max-width: none; }
    h2 { break-after: avoid; }
    table, svg, .card { break-inside: avoid; }
    tr { break-inside: avoid; }
    a { color: inherit; text-decoration: none; }
  }
</style>
</head>
<body>
<h1>{{.R.Title}}</h1>
<p class="meta">{{.R.Hours}} hour(s){{if .R.Tenant}}, tenant {{.R.Tenant}}{{end}}. Collectors: {{join .R.Collectors}}. Sources: {{join .R.Sources}}. Generated {{.Generated}}.</p>
<div class="cards">
  <div class="card"><b>{{.R.Totals.Tenants}}</b>tenants</div>
  <div class="card"><b>{{.R.Totals.SpansChecked}}</b>spans checked</div>
  <div class="card {{if .R.Totals.CrossingsSucceeded}}bad{{else}}good{{end}}"><b>{{.R.Totals.CrossingsSucceeded}}</b>crossings succeeded</div>
  <div class="card"><b>{{.R.Totals.BlockedAttempts}}</b>attempts refused</div>
  <div class="card"><b>{{.R.Totals.UnscopedQueries}}</b>unscoped queries</div>
</div>

<h2>Per tenant</h2>
<table>
<thead><tr><th>Tenant</th><th>Traces checked</th><th>Spans checked</th><th>Crossings succeeded</th><th>Blocked attempts</th><th>Unscoped queries</th><th>Spans missing a tenant</th><th>Services covered</th><th>Gaps</th></tr></thead>
<tbody>
{{range .R.Tenants}}<tr>
<td>{{label .Tenant}}</td><td class="n">{{.TracesChecked}}</td><td class="n">{{.SpansChecked}}</td>
<td class="{{if .CrossingsSucceeded}}leak{{else if .IsolationHeld}}held{{else}}muted{{end}}">{{verdic .}}</td>
<td class="n">{{.BlockedAttempts}}</td><td class="n">{{.UnscopedQueries}}</td><td class="n">{{.SpansMissingTenant}}</td>
<td>{{join .ServicesCovered}}</td>
<td>{{if .ServicesNotCovered}}traces with spans without a tenant: {{range $i, $g := .ServicesNotCovered}}{{if $i}}, {{end}}{{$g.Service}} {{$g.TracesWithoutTenant}}/{{$g.Traces}}{{end}}{{end}}{{if .QuietHours}}<br>no traffic {{hours .QuietHours}}{{end}}</td>
</tr>{{end}}
</tbody>
</table>
{{range .R.Tenants}}{{if .Leaks}}<p class="leak">Leaks of {{.Tenant}}: {{range .Leaks}}<code>{{.}}</code> {{end}}</p>{{end}}{{end}}
{{if .R.QuietHours}}<p>No traffic from any tenant: {{hours .R.QuietHours}}. A collector down or a broken pipeline looks like perfect isolation; these hours prove nothing.</p>{{end}}

<h2>Findings over time by rule</h2>
<div class="chart">{{.Timeline}}</div>

<h2>Tenant pairs</h2>
<p class="meta">Rows: the tenant the trace came from; columns: the tenant it reached. Red: succeeded; blue: refused.</p>
<div class="chart">{{.Matrix}}</div>

<h2>Coverage per service</h2>
<p class="meta">Share of the traces through each service in which every span of the service carried a tenant (least covered first).</p>
<div class="chart">{{.Coverage}}</div>
</body>
</html>
`))

type reportPageData struct {
	R                          *reportView
	Generated                  string
	Timeline, Matrix, Coverage template.HTML
}

// reportView adds what only the page needs to the model.
type reportView struct {
	*isolationReport
	Title string
}

func writeReportHTML(w io.Writer, r *isolationReport) error {
	r = cleanNames(r)
	return reportPage.Execute(w, reportPageData{
		R:         &reportView{isolationReport: r, Title: r.title()},
		Generated: time.Now().UTC().Format("2006-01-02 15:04 UTC"),
		Timeline:  template.HTML(timelineSVG(r)),
		Matrix:    template.HTML(matrixSVG(r)),
		Coverage:  template.HTML(coverageSVG(r)),
	})
}

func esc(s string) string { return html.EscapeString(clean(s)) }

// short cuts a label for a chart axis (the tables carry the full value).
func short(s string, n int) string { return esc(detector.CapString(clean(s), n)) }

func timelineSVG(r *isolationReport) string {
	step := time.Hour
	if r.BucketSize == "day" {
		step = 24 * time.Hour
	}
	first := r.Since.Truncate(step)
	n := 0
	for t := first; t.Before(r.Until); t = t.Add(step) {
		n++
	}
	if n == 0 {
		return `<p class="muted">No period.</p>`
	}
	counts := make([]map[string]int, n)
	maxTotal := 0
	for _, b := range r.FindingsOverTime {
		i := int(b.Start.Sub(first) / step)
		if i < 0 || i >= n {
			continue
		}
		counts[i] = b.ByRule
		total := 0
		for _, c := range b.ByRule {
			total += c
		}
		maxTotal = max(maxTotal, total)
	}
	const W, H, left, bottom, top = 900, 240, 40, 30, 10
	plotW, plotH := float64(W-left-10), float64(H-bottom-top)
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" role="img" aria-label="Findings over time by rule">`, W, H+24, W, H+24)
	fmt.Fprintf(&b, `<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="#999"/>`, left, H-bottom, W-10, H-bottom)
	fmt.Fprintf(&b, `<text x="%d" y="%d" text-anchor="end">%d</text><text x="%d" y="%d" text-anchor="end">0</text>`, left-4, top+10, maxTotal, left-4, H-bottom)
	barW := plotW / float64(n)
	for i := range n {
		y := float64(H - bottom)
		for _, rule := range detector.Rules {
			c := counts[i][string(rule)]
			if c == 0 || maxTotal == 0 {
				continue
			}
			h := plotH * float64(c) / float64(maxTotal)
			y -= h
			fmt.Fprintf(&b, `<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="%s"><title>%s: %d</title></rect>`,
				float64(left)+float64(i)*barW+barW*0.1, y, barW*0.8, h, ruleColors[rule], esc(string(rule)), c)
		}
		if every := max(1, n/12); i%every == 0 {
			label := first.Add(time.Duration(i) * step).Format("01-02 15:04")
			if step > time.Hour {
				label = first.Add(time.Duration(i) * step).Format("2006-01-02")
			}
			fmt.Fprintf(&b, `<text x="%.1f" y="%d">%s</text>`, float64(left)+float64(i)*barW, H-bottom+14, label)
		}
	}
	if maxTotal == 0 {
		fmt.Fprintf(&b, `<text x="%d" y="%d" text-anchor="middle">no findings in this period</text>`, W/2, H/2)
	}
	x := left
	for _, rule := range detector.Rules {
		fmt.Fprintf(&b, `<rect x="%d" y="%d" width="10" height="10" fill="%s"/><text x="%d" y="%d">%s</text>`, x, H+8, ruleColors[rule], x+14, H+17, esc(string(rule)))
		x += 22 + 7*len(rule)
	}
	b.WriteString(`</svg>`)
	return b.String()
}

func matrixSVG(r *isolationReport) string {
	if len(r.TenantPairs) == 0 {
		return `<p class="held">No tenant reached another tenant's data in this period.</p>`
	}
	var tenants []string
	for _, p := range r.TenantPairs {
		for _, t := range []string{p.From, p.To} {
			if !slices.Contains(tenants, t) && len(tenants) < maxMatrixTenants {
				tenants = append(tenants, t)
			}
		}
	}
	slices.Sort(tenants)
	cells := map[[2]string]tenantPair{}
	maxC := 1
	for _, p := range r.TenantPairs {
		cells[[2]string{p.From, p.To}] = p
		maxC = max(maxC, p.Succeeded+p.Refused)
	}
	const cell, labelW, labelH = 44, 140, 80
	W, H := labelW+cell*len(tenants)+10, labelH+cell*len(tenants)+10
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" role="img" aria-label="Tenant-pair matrix">`, W, H, W, H)
	for i, t := range tenants {
		fmt.Fprintf(&b, `<text x="%d" y="%d" text-anchor="end">%s</text>`, labelW-6, labelH+i*cell+cell/2+4, short(t, 22))
		x := labelW + i*cell + cell/2
		fmt.Fprintf(&b, `<text x="%d" y="%d" transform="rotate(-45 %d %d)">%s</text>`, x, labelH-6, x, labelH-6, short(t, 18))
	}
	for i, from := range tenants {
		for j, to := range tenants {
			x, y := labelW+j*cell, labelH+i*cell
			p, ok := cells[[2]string{from, to}]
			fill, text := "#fafafa", ""
			if ok {
				switch {
				case p.Succeeded > 0:
					fill = fmt.Sprintf("rgba(198,40,40,%.2f)", 0.25+0.75*float64(p.Succeeded)/float64(maxC))
					text = fmt.Sprint(p.Succeeded)
				case p.Refused > 0:
					fill = fmt.Sprintf("rgba(21,101,192,%.2f)", 0.2+0.6*float64(p.Refused)/float64(maxC))
					text = fmt.Sprint(p.Refused)
				}
			}
			fmt.Fprintf(&b, `<rect x="%d" y="%d" width="%d" height="%d" fill="%s" stroke="#ddd"><title>%s → %s: %d succeeded, %d refused</title></rect>`,
				x, y, cell, cell, fill, esc(from), esc(to), p.Succeeded, p.Refused)
			if text != "" {
				fmt.Fprintf(&b, `<text x="%d" y="%d" text-anchor="middle">%s</text>`, x+cell/2, y+cell/2+4, text)
			}
		}
	}
	b.WriteString(`</svg>`)
	return b.String()
}

func coverageSVG(r *isolationReport) string {
	svcs := r.Services
	if len(svcs) == 0 {
		return `<p class="muted">No coverage records: coverage.max_tenants is 0, or no trace closed in this period.</p>`
	}
	if len(svcs) > maxServiceBars {
		svcs = svcs[:maxServiceBars]
	}
	const rowH, labelW, barW = 22, 180, 560
	H := rowH*len(svcs) + 10
	W := labelW + barW + 80
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" role="img" aria-label="Coverage per service">`, W, H, W, H)
	for i, s := range svcs {
		y := i * rowH
		fmt.Fprintf(&b, `<text x="%d" y="%d" text-anchor="end">%s</text>`, labelW-6, y+15, short(s.Service, 28))
		fmt.Fprintf(&b, `<rect x="%d" y="%d" width="%d" height="14" fill="#eee"/>`, labelW, y+4, barW)
		color := "#2e7d32"
		if s.CoveredPercent < 100 {
			color = "#ef6c00"
		}
		fmt.Fprintf(&b, `<rect x="%d" y="%d" width="%.1f" height="14" fill="%s"><title>%s: in %d of %d traces every span carried a tenant</title></rect>`,
			labelW, y+4, barW*s.CoveredPercent/100, color, esc(s.Service), s.Traces-s.TracesWithoutTenant, s.Traces)
		fmt.Fprintf(&b, `<text x="%d" y="%d">%.1f%%</text>`, labelW+barW+6, y+15, s.CoveredPercent)
	}
	b.WriteString(`</svg>`)
	return b.String()
}

// cleanNames returns a copy of r whose names (tenants, services, collectors,
// sources) are safe to show: html/template escapes markup, not control
// characters or invalid UTF-8.
func cleanNames(r *isolationReport) *isolationReport {
	c := *r
	all := func(xs []string) []string {
		out := make([]string, len(xs))
		for i, x := range xs {
			out[i] = clean(x)
		}
		return out
	}
	c.Collectors, c.Sources, c.Tenant = all(r.Collectors), all(r.Sources), clean(r.Tenant)
	c.Tenants = slices.Clone(r.Tenants)
	for i := range c.Tenants {
		tr := &c.Tenants[i]
		tr.Tenant, tr.ServicesCovered = clean(tr.Tenant), all(tr.ServicesCovered)
		tr.ServicesNotCovered = slices.Clone(tr.ServicesNotCovered)
		for j := range tr.ServicesNotCovered {
			tr.ServicesNotCovered[j].Service = clean(tr.ServicesNotCovered[j].Service)
		}
	}
	c.TenantPairs = slices.Clone(r.TenantPairs)
	for i := range c.TenantPairs {
		c.TenantPairs[i].From, c.TenantPairs[i].To = clean(c.TenantPairs[i].From), clean(c.TenantPairs[i].To)
	}
	c.Services = slices.Clone(r.Services)
	for i := range c.Services {
		c.Services[i].Service = clean(c.Services[i].Service)
	}
	return &c
}
