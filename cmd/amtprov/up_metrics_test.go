package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"
)

// The alert rules (deploy/prometheus) and the dashboard (deploy/grafana)
// must only use metrics the services really expose. This file reads their
// PromQL and pulls the metric names out; the e2e test scrapes every running
// service and checks each name appears (checkMetrics).

// promRules is the part of a Prometheus rule file the checks read.
type promRules struct {
	Groups []struct {
		Name  string `yaml:"name"`
		Rules []struct {
			Alert       string            `yaml:"alert"`
			Record      string            `yaml:"record"`
			Expr        string            `yaml:"expr"`
			For         string            `yaml:"for"`
			Labels      map[string]string `yaml:"labels"`
			Annotations map[string]string `yaml:"annotations"`
		} `yaml:"rules"`
	} `yaml:"groups"`
}

// exprSource is one PromQL expression and where it is.
type exprSource struct {
	where, expr string
}

func readAlertRules(t *testing.T, deploy string) (promRules, []exprSource) {
	t.Helper()
	path := filepath.Join(deploy, "prometheus", "alerts.yaml")
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var r promRules
	dec := yaml.NewDecoder(strings.NewReader(string(b)))
	dec.KnownFields(true)
	if err := dec.Decode(&r); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	var out []exprSource
	for _, g := range r.Groups {
		for _, rule := range g.Rules {
			name := rule.Alert + rule.Record
			out = append(out, exprSource{"alerts.yaml " + g.Name + "/" + name, rule.Expr})
		}
	}
	return r, out
}

// grafanaDashboard is the part of the dashboard JSON the checks read.
type grafanaDashboard struct {
	Title  string `json:"title"`
	UID    string `json:"uid"`
	Panels []struct {
		Title   string `json:"title"`
		Type    string `json:"type"`
		Targets []struct {
			Expr  string `json:"expr"`
			RefID string `json:"refId"`
		} `json:"targets"`
	} `json:"panels"`
}

func readDashboard(t *testing.T, deploy string) (grafanaDashboard, []exprSource) {
	t.Helper()
	path := filepath.Join(deploy, "grafana", "amtprov.json")
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var d grafanaDashboard
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	var out []exprSource
	for _, p := range d.Panels {
		for _, tg := range p.Targets {
			out = append(out, exprSource{"amtprov.json panel " + p.Title + "/" + tg.RefID, tg.Expr})
		}
	}
	return d, out
}

var (
	promStrings   = regexp.MustCompile(`"(?:[^"\\]|\\.)*"`)
	promMatchers  = regexp.MustCompile(`\{[^}]*\}`)
	promRanges    = regexp.MustCompile(`\[[^\]]*\]`)
	promGrouping  = regexp.MustCompile(`\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)`)
	promIdent     = regexp.MustCompile(`[a-zA-Z_:][a-zA-Z0-9_:]*`)
	promKeywords  = []string{"and", "or", "unless", "bool", "offset", "by", "without", "on", "ignoring", "group_left", "group_right", "inf", "nan"}
	promGrafanaVs = regexp.MustCompile(`\$\{?[a-zA-Z_]+\}?`)
)

// promMetricNames returns the metric names a PromQL expression reads: the
// identifiers left once strings, label matchers, ranges, grouping clauses,
// function calls and keywords are removed.
func promMetricNames(expr string) []string {
	e := promGrafanaVs.ReplaceAllString(expr, "1m")
	e = promStrings.ReplaceAllString(e, `""`)
	e = promMatchers.ReplaceAllString(e, " ")
	e = promRanges.ReplaceAllString(e, " ")
	e = promGrouping.ReplaceAllString(e, " ")
	var names []string
	for _, loc := range promIdent.FindAllStringIndex(e, -1) {
		id := e[loc[0]:loc[1]]
		rest := strings.TrimLeft(e[loc[1]:], " \t\n")
		if strings.HasPrefix(rest, "(") || slices.Contains(promKeywords, strings.ToLower(id)) {
			continue // a function or an operator
		}
		if loc[0] > 0 && (e[loc[0]-1] >= '0' && e[loc[0]-1] <= '9' || e[loc[0]-1] == '.') {
			continue // the unit of a number such as 1e3 or 0.5
		}
		if !slices.Contains(names, id) {
			names = append(names, id)
		}
	}
	return names
}

func TestPromMetricNames(t *testing.T) {
	tests := []struct {
		expr string
		want []string
	}{
		{`sum(rate(hellos_rejected_total{reason!="rate_limited"}[5m])) by (reason) > 1`, []string{"hellos_rejected_total"}},
		{`histogram_quantile(0.95, sum by (le) (rate(hello_ingest_seconds_bucket[$__rate_interval])))`, []string{"hello_ingest_seconds_bucket"}},
		{`max by (consumer) (amtprov_bus_consumer_lag{state="pending"}) > 1000`, []string{"amtprov_bus_consumer_lag"}},
		{`a_total / ignoring(code) group_left b_total or on(x) vector(0)`, []string{"a_total", "b_total"}},
		{`sum(rate(x_total{outcome=~"term|nak"}[5m])) / clamp_min(sum(rate(x_total[5m])), 1e-9)`, []string{"x_total"}},
	}
	for _, tt := range tests {
		if got := promMetricNames(tt.expr); !slices.Equal(got, tt.want) {
			t.Errorf("promMetricNames(%q) = %v, want %v", tt.expr, got, tt.want)
		}
	}
}

// TestAlertRulesAndDashboardAreWellFormed checks the shape of the files
// Prometheus and Grafana load: every alert has an expression with at least
// one metric, a duration, a severity and a summary; every dashboard panel
// queries something.
func TestAlertRulesAndDashboardAreWellFormed(t *testing.T) {
	deploy := filepath.Join("..", "..", "deploy")
	rules, _ := readAlertRules(t, deploy)
	alerts := map[string]bool{}
	for _, g := range rules.Groups {
		for _, r := range g.Rules {
			if r.Alert == "" {
				continue
			}
			alerts[r.Alert] = true
			if len(promMetricNames(r.Expr)) == 0 {
				t.Errorf("alert %s: expression %q reads no metric", r.Alert, r.Expr)
			}
			if _, err := time.ParseDuration(r.For); err != nil {
				t.Errorf("alert %s: for %q: %v", r.Alert, r.For, err)
			}
			if s := r.Labels["severity"]; s != "warning" && s != "critical" {
				t.Errorf("alert %s: severity %q, want warning or critical", r.Alert, s)
			}
			if r.Annotations["summary"] == "" || r.Annotations["runbook"] == "" {
				t.Errorf("alert %s: needs summary and runbook annotations", r.Alert)
			}
		}
	}
	// The alerts issue 6 asks for.
	for _, want := range []string{"AmtprovProvisioningFailureRateHigh", "AmtprovProvisioningJobsStuck", "AmtprovConsumerLagHigh", "AmtprovHelloRejectsHigh"} {
		if !alerts[want] {
			t.Errorf("alert %s missing from deploy/prometheus/alerts.yaml", want)
		}
	}
	d, exprs := readDashboard(t, deploy)
	if d.UID == "" || d.Title == "" || len(d.Panels) == 0 {
		t.Errorf("dashboard: uid %q title %q, %d panels", d.UID, d.Title, len(d.Panels))
	}
	for _, e := range exprs {
		if len(promMetricNames(e.expr)) == 0 {
			t.Errorf("%s: expression %q reads no metric", e.where, e.expr)
		}
	}
}

// scrapedNames returns the metric names in a Prometheus text exposition.
func scrapedNames(text string) map[string]bool {
	names := map[string]bool{}
	for line := range strings.Lines(text) {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if i := strings.IndexAny(line, "{ "); i > 0 {
			names[line[:i]] = true
		}
	}
	return names
}

// missingMetrics lists, per expression, the metric names not in scraped.
func missingMetrics(exprs []exprSource, scraped map[string]bool) []string {
	var out []string
	for _, e := range exprs {
		for _, n := range promMetricNames(e.expr) {
			if !scraped[n] {
				out = append(out, fmt.Sprintf("%s: %s", e.where, n))
			}
		}
	}
	return out
}
