package policy

import (
	"compress/gzip"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/regoauth/regoauth/policies"
)

// maskBundle masks what OPA users commonly mask in decision logs, here the client address,
// with OPA's own mechanism (data.system.log.mask), from a bundle beside the library.
var maskBundle = map[string]string{
	".manifest": `{"revision": "mask-1", "roots": ["system/log"]}`,
	"mask.rego": "package system.log\n\nmask contains \"/input/client/ip\"\n",
}

func TestConsoleDecisionLog(t *testing.T) {
	var logs logBuffer
	maskDir := writeTree(t, t.TempDir(), maskBundle)
	e := started(t, Options{Logger: logs.logger(), Source: Source{
		Builtin: policies.FS, Dir: maskDir,
		OPAConfig: []byte("decision_logs: {console: true}\nlabels: {app: regoauth}\n"),
	}})
	d, err := e.Decide(ctx, storyInput())
	if err != nil {
		t.Fatal(err)
	}
	a, err := e.Authorize(ctx, &AdminInput{Principal: storyInput().Principal, Operation: "accounts.create", Target: AdminTarget{Account: "x"}, Owned: []string{}})
	if err != nil {
		t.Fatal(err)
	}
	events := map[string]map[string]any{}
	for _, rec := range logs.lines("Decision Log") {
		events[fmt.Sprint(rec["decision_id"])] = rec
	}
	for _, tc := range []struct {
		id, path string
		result   any
	}{
		{d.ID, "regoauth/authz/decision", map[string]any{
			"access":  []any{map[string]any{"type": "repository", "name": "image", "actions": []any{"pull"}}},
			"reasons": []any{"repository:image push: no grant or rule permits it"},
		}},
		{a.ID, "regoauth/admin/decision", map[string]any{"allow": false, "reasons": []any{"not permitted by the admin policy"}}},
	} {
		t.Run(tc.path, func(t *testing.T) {
			ev, ok := events[tc.id]
			if !ok {
				t.Fatalf("no decision log event with decision_id %s in\n%s", tc.id, logs.String())
			}
			if ev["path"] != tc.path || ev["type"] != "openpolicyagent.org/decision_logs" {
				t.Errorf("path %v type %v", ev["path"], ev["type"])
			}
			if !reflect.DeepEqual(ev["result"], tc.result) {
				t.Errorf("result = %v, want %v", ev["result"], tc.result)
			}
			input, _ := ev["input"].(map[string]any)
			principal, _ := input["principal"].(map[string]any)
			if principal["account"] != "user1" {
				t.Errorf("input = %v", input)
			}
			if client, ok := input["client"].(map[string]any); ok {
				if _, has := client["ip"]; has {
					t.Errorf("the masked client address was logged: %v", client)
				}
			}
			if !reflect.DeepEqual(ev["erased"], []any{"/input/client/ip"}) && tc.path == "regoauth/authz/decision" {
				t.Errorf("erased = %v", ev["erased"])
			}
			labels, _ := ev["labels"].(map[string]any)
			bundles, _ := ev["bundles"].(map[string]any)
			if labels["app"] != "regoauth" || bundles[LocalBundle] == nil || bundles[BuiltinBundle] == nil {
				t.Errorf("labels %v bundles %v", labels, bundles)
			}
		})
	}
}

// logService is a decision log service: it receives OPA's gzipped JSON batches.
type logService struct {
	*httptest.Server
	mu     sync.Mutex
	events []map[string]any
}

func newLogService(t *testing.T) *logService {
	s := &logService{}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		zr, err := gzip.NewReader(r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		var batch []map[string]any
		if err := json.NewDecoder(zr).Decode(&batch); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		s.mu.Lock()
		s.events = append(s.events, batch...)
		s.mu.Unlock()
	}))
	t.Cleanup(s.Close)
	return s
}

func (s *logService) ids() map[string]map[string]any {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := map[string]map[string]any{}
	for _, ev := range s.events {
		out[fmt.Sprint(ev["decision_id"])] = ev
	}
	return out
}

func TestDecisionLogService(t *testing.T) {
	svc := newLogService(t)
	reg := prometheus.NewRegistry()
	cfg := fmt.Sprintf(`
services: {logs: {url: %q}}
decision_logs:
  service: logs
  reporting: {min_delay_seconds: 1, max_delay_seconds: 1}
`, svc.URL)
	e := started(t, Options{Source: Source{Builtin: policies.FS, OPAConfig: []byte(cfg)}, Registerer: reg})
	var ids []string
	for range 3 {
		d, err := e.Decide(ctx, storyInput())
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, d.ID)
	}
	eventually(t, 10*time.Second, "the upload of three decisions", func() bool {
		got := svc.ids()
		for _, id := range ids {
			if got[id] == nil {
				return false
			}
		}
		return true
	})
	ev := svc.ids()[ids[0]]
	if ev["path"] != "regoauth/authz/decision" || ev["result"] == nil || ev["input"] == nil {
		t.Fatalf("event = %v", ev)
	}
	if n := testutil.ToFloat64(e.metrics.logFailures); n != 0 {
		t.Fatalf("%v decision log failures", n)
	}
}

func TestNoDecisionLogsUnlessConfigured(t *testing.T) {
	var logs logBuffer
	e := started(t, Options{Logger: logs.logger(), Source: Source{Builtin: policies.FS}})
	if _, err := e.Decide(ctx, storyInput()); err != nil {
		t.Fatal(err)
	}
	if n := len(logs.lines("Decision Log")); n != 0 {
		t.Fatalf("%d decision log lines without decision_logs configured", n)
	}
}
