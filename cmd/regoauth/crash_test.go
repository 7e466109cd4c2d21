//go:build unix

package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/regoauth/regoauth/keystore"
	"github.com/regoauth/regoauth/keystore/redisstore/redistest"
)

// TestBoltKeepsEveryAcknowledgedChangeThroughAKill runs a real `regoauth serve` on a bolt file
// and, while eight clients create accounts and keys and revoke the keys through the admin API,
// ends it with SIGKILL. A second server and an export meanwhile are refused at once, naming the
// file in use. The file then opens, and holds every change the admin API answered as done:
// each account, each key, each revocation (a revoked key acknowledged but lost would work
// again).
func TestBoltKeepsEveryAcknowledgedChangeThroughAKill(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the regoauth binary")
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "regoauth")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	addr := fmt.Sprintf("127.0.0.1:%d", redistest.FreePort(t))
	store := filepath.Join(dir, "store.db")
	cfg := filepath.Join(dir, "regoauth.yaml")
	os.WriteFile(cfg, []byte(fmt.Sprintf("services: [registry.example.com]\nlisten: {addr: %q}\n"+
		"signing: {key_file: %q, cert_file: %q}\nstore: {url: %q}\n",
		addr, filepath.Join(dir, "key.pem"), filepath.Join(dir, "cert.pem"), "bolt://"+store)), 0o600)
	keyFile := filepath.Join(dir, "admin.key")
	if out, err := exec.Command(bin, "init", "--config", cfg, "--admin-key-file", keyFile).CombinedOutput(); err != nil {
		t.Fatalf("init: %v\n%s", err, out)
	}
	adminKey, _ := os.ReadFile(keyFile)

	var log bytes.Buffer
	serve := exec.Command(bin, "serve", "--config", cfg)
	serve.Stdout, serve.Stderr = &log, &log
	if err := serve.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { serve.Process.Kill(); serve.Wait() })
	base := "http://" + addr
	deadline := time.Now().Add(20 * time.Second)
	for {
		if resp, err := http.Get(base + "/readyz"); err == nil && resp.StatusCode == 200 {
			resp.Body.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the server was not ready within 20s:\n%s", log.String())
		}
		time.Sleep(50 * time.Millisecond)
	}

	for _, args := range [][]string{{"serve", "--config", cfg}, {"export", "--store", "bolt://" + store}} {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		out, err := exec.CommandContext(ctx, bin, args...).CombinedOutput()
		cancel()
		if err == nil || !strings.Contains(string(out), "in use by another process") {
			t.Fatalf("regoauth %s beside the running server: %v\n%s", args[0], err, out)
		}
	}

	call := func(method, path, body string, out any) (int, error) {
		req, _ := http.NewRequest(method, base+path, strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+strings.TrimSpace(string(adminKey)))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return 0, err
		}
		defer resp.Body.Close()
		if out != nil {
			json.NewDecoder(resp.Body).Decode(out)
		}
		return resp.StatusCode, nil
	}
	// acked holds what the admin API answered as done.
	var mu sync.Mutex
	accounts, keys, revoked := []string{}, []string{}, []string{}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				name := fmt.Sprintf("w%d-%d", w, i)
				if code, err := call("POST", "/admin/v1/accounts", fmt.Sprintf(`{"name":%q}`, name), nil); err != nil || code != 201 {
					return
				}
				mu.Lock()
				accounts = append(accounts, name)
				mu.Unlock()
				var k struct{ ID string }
				if code, err := call("POST", "/admin/v1/keys", fmt.Sprintf(`{"account":%q}`, name), &k); err != nil || code != 201 {
					return
				}
				mu.Lock()
				keys = append(keys, k.ID)
				mu.Unlock()
				if code, err := call("DELETE", "/admin/v1/keys/"+k.ID, "", nil); err != nil || code != 200 {
					return
				}
				mu.Lock()
				revoked = append(revoked, k.ID)
				mu.Unlock()
			}
		}()
	}
	time.Sleep(1500 * time.Millisecond)
	serve.Process.Signal(syscall.SIGKILL)
	serve.Wait()
	close(stop)
	wg.Wait()
	if len(revoked) < 10 {
		t.Fatalf("only %d revocations were acknowledged before the kill; the load did not run:\n%s", len(revoked), log.String())
	}

	s := openBolt(t, store)
	defer s.Close()
	ctx := context.Background()
	for _, name := range accounts {
		if _, err := s.GetAccount(ctx, name); err != nil {
			t.Fatalf("account %s, acknowledged before the kill: %v", name, err)
		}
	}
	for _, id := range keys {
		if _, err := s.GetKey(ctx, id); err != nil {
			t.Fatalf("key %s, acknowledged before the kill: %v", id, err)
		}
	}
	for _, id := range revoked {
		if k, err := s.GetKey(ctx, id); err != nil || !k.Revoked {
			t.Fatalf("key %s, revocation acknowledged before the kill: %+v, %v", id, k.Redacted(), err)
		}
		if _, err := s.LoadPrincipal(ctx, id); errors.Is(err, keystore.ErrNotFound) {
			t.Fatalf("key %s lost", id)
		}
	}
	t.Logf("after SIGKILL: %d accounts, %d keys, %d revocations acknowledged, all on disk", len(accounts), len(keys), len(revoked))
}
