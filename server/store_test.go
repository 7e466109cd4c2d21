package server

import (
	"strings"
	"testing"
)

func TestParseStoreURL(t *testing.T) {
	for _, tt := range []struct {
		url, kind string
	}{
		{"bolt:///var/lib/regoauth/store.db", "bolt"},
		{"redis://localhost:6379/0", "redis"},
		{"rediss://:pw@cache:6380/1?prefix=prod", "redis"},
		{"redis+sentinel://s1:26379,s2:26379/mymaster/0", "redis"},
		{"rediss+sentinel://:pw@s1/mymaster?sentinel_password=x", "redis"},
		{"redis+cluster://n1:7000,n2:7001,n3:7002", "redis"},
		{"rediss+cluster://user:pw@n1", "redis"},
	} {
		t.Run(tt.url, func(t *testing.T) {
			kind, _, err := ParseStoreURL(tt.url)
			if err != nil || kind != tt.kind {
				t.Fatalf("ParseStoreURL = %q, %v; want %q", kind, err, tt.kind)
			}
		})
	}
	for _, bad := range []string{
		"mysql://u:hunter2@h", "bolt://", "redis://:hunter2@a,b/0", "redis+sentinel://:hunter2@s1", "redis+cluster://:hunter2@a/1",
		"redis://:hunter2@h/0?nonsense=1", "bolt:///var/lib/regoauth/store.db?timeout=1s", "bolt:///data/store.db#main",
	} {
		t.Run(bad, func(t *testing.T) {
			_, _, err := ParseStoreURL(bad)
			if err == nil || strings.Contains(err.Error(), "hunter2") {
				t.Fatalf("ParseStoreURL(%q) error = %v; want a refusal without the password", bad, err)
			}
		})
	}
}

func TestStoreCacheConfig(t *testing.T) {
	cfg, err := LoadConfig(writeConfig(t, `
services: [r]
signing: {key_file: k.pem}
store: {url: "redis+sentinel://:hunter2@s1,s2/m", cache: {ttl: 2s, size: 50}}
`))
	if err != nil || cfg.Store.Cache.Size != 50 {
		t.Fatalf("config = %+v, %v", cfg.Store, err)
	}
	if cfg := Defaults(); cfg.Store.Cache.TTL <= 0 || cfg.Store.Cache.Size <= 0 {
		t.Fatalf("default cache = %+v, want on", cfg.Store.Cache)
	}
	for _, body := range []string{
		"store: {url: \"redis://h/0\", cache: {ttl: 2h}}",
		"store: {url: \"redis://h/0\", cache: {size: -1}}",
		"store: {url: \"redis://h/0\", cache: {ttl: -1s}}",
	} {
		_, err := LoadConfig(writeConfig(t, "services: [r]\nsigning: {key_file: k.pem}\n"+body+"\n"))
		if err == nil || !strings.Contains(err.Error(), "store.cache") {
			t.Errorf("%s: error = %v, want store.cache", body, err)
		}
	}
}
