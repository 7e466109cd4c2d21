package e2e

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"
)

// TestPrometheusRulesAndDashboard checks deploy/ against a real Prometheus scraping a running
// regoauth: the rules pass promtool, load and evaluate without error, recording rules and every
// dashboard query return data.
func TestPrometheusRulesAndDashboard(t *testing.T) {
	t.Parallel()
	promtool, prometheus := tool(t, "promtool"), tool(t, "prometheus")
	rules, err := filepath.Abs("../deploy/prometheus/rules.yml")
	if err != nil {
		t.Fatal(err)
	}
	must(t, nil, promtool, "check", "rules", rules)

	d := startDev(t, "")
	user := d.account(t, "user1")
	d.admin(t, "grants", "add", "--account", "user1", "--repo", "image", "--actions", "pull")
	stop := make(chan struct{})
	defer close(stop)
	go func() { // traffic of every outcome, for the whole test
		for {
			select {
			case <-stop:
				return
			case <-time.After(50 * time.Millisecond):
			}
			for _, pass := range []string{user, "wrong", ""} {
				req, _ := http.NewRequest("GET", "http://"+d.Addr+"/token?scope=repository:image:push,pull", nil)
				if pass != "" {
					req.SetBasicAuth("user1", pass)
				}
				if resp, err := http.DefaultClient.Do(req); err == nil {
					resp.Body.Close()
				}
			}
		}
	}()

	dir := t.TempDir()
	promAddr := freeAddr(t)
	cfg := fmt.Sprintf(`
global: {scrape_interval: 1s, evaluation_interval: 1s}
rule_files: [%q]
scrape_configs:
  - job_name: regoauth
    static_configs: [{targets: [%q]}]
`, rules, d.Addr)
	p := startProcess(t, "prometheus", nil, prometheus, "--config.file="+writeFile(t, filepath.Join(dir, "prometheus.yml"), cfg, 0o644),
		"--storage.tsdb.path="+filepath.Join(dir, "data"), "--web.listen-address="+promAddr)
	p.waitFor(t, "a successful scrape", func() bool {
		res, err := promQuery(promAddr, `up{job="regoauth"} == 1`)
		return err == nil && len(res) > 0
	})
	time.Sleep(6 * time.Second) // enough scrapes for rate() over 1m windows

	var dash struct {
		Panels []struct {
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	raw, err := os.ReadFile("../deploy/grafana/regoauth.json")
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(raw, &dash); err != nil {
		t.Fatal(err)
	}
	for _, panel := range dash.Panels {
		for _, target := range panel.Targets {
			expr := strings.ReplaceAll(target.Expr, "$__rate_interval", "1m")
			res, err := promQuery(promAddr, expr)
			if err != nil || len(res) == 0 {
				t.Errorf("dashboard panel %q: %s returned no data (%v)", panel.Title, expr, err)
			}
		}
	}

	var file struct {
		Groups []struct {
			Rules []struct {
				Record string `yaml:"record"`
				Alert  string `yaml:"alert"`
				Expr   string `yaml:"expr"`
			} `yaml:"rules"`
		} `yaml:"groups"`
	}
	raw, _ = os.ReadFile(rules)
	if err := yaml.Unmarshal(raw, &file); err != nil {
		t.Fatal(err)
	}
	for _, g := range file.Groups {
		for _, r := range g.Rules {
			res, err := promQuery(promAddr, r.Expr)
			switch {
			case err != nil:
				t.Errorf("rule %s%s: %v", r.Record, r.Alert, err)
			case r.Record != "" && len(res) == 0:
				t.Errorf("recording rule %s returns no data", r.Record)
			}
		}
	}
	// Prometheus itself evaluated every rule without error.
	var rulesResp struct {
		Data struct {
			Groups []struct {
				Rules []struct {
					Name      string `json:"name"`
					Health    string `json:"health"`
					LastError string `json:"lastError"`
				} `json:"rules"`
			} `json:"groups"`
		} `json:"data"`
	}
	resp, err := http.Get("http://" + promAddr + "/api/v1/rules")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	json.NewDecoder(resp.Body).Decode(&rulesResp)
	n := 0
	for _, g := range rulesResp.Data.Groups {
		for _, r := range g.Rules {
			n++
			if r.Health != "ok" {
				t.Errorf("Prometheus evaluates rule %s as %q: %s", r.Name, r.Health, r.LastError)
			}
		}
	}
	if n == 0 {
		t.Fatal("Prometheus loaded no rules")
	}
}

// promQuery runs an instant query and returns its result vector.
func promQuery(addr, expr string) ([]json.RawMessage, error) {
	resp, err := http.Get("http://" + addr + "/api/v1/query?query=" + url.QueryEscape(expr))
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var body struct {
		Status string `json:"status"`
		Error  string `json:"error"`
		Data   struct {
			Result []json.RawMessage `json:"result"`
		} `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		return nil, err
	}
	if body.Status != "success" {
		return nil, fmt.Errorf("query failed: %s", body.Error)
	}
	return body.Data.Result, nil
}
