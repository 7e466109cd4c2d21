// Package testenv is the fixture of package tests that need a key store and a policy engine: an
// in-memory store and an engine deciding with the built-in library, with helpers that add
// accounts, API keys, grants and reservations and fail the test on any error. Tests of the
// token endpoint and of the admin API build on it; it is never linked into a program.
package testenv

import (
	"context"
	"crypto/rand"
	"testing"
	"time"

	"github.com/regoauth/regoauth/keystore"
	"github.com/regoauth/regoauth/keystore/memstore"
	"github.com/regoauth/regoauth/policies"
	"github.com/regoauth/regoauth/policy"
)

// Env is a store and an engine over it.
type Env struct {
	T      testing.TB
	Store  *memstore.Store
	Engine *policy.Engine
	// Created stamps every record the helpers write.
	Created time.Time
}

// New returns an empty store and an engine with the built-in library active.
func New(t testing.TB) *Env {
	t.Helper()
	engine := policy.New(policy.Options{})
	if err := engine.LoadFS(context.Background(), policies.FS, policy.BuiltinBundle); err != nil {
		t.Fatal(err)
	}
	return &Env{T: t, Store: memstore.New(), Engine: engine, Created: time.Now().UTC().Truncate(time.Second)}
}

func (e *Env) must(err error) {
	e.T.Helper()
	if err != nil {
		e.T.Fatal(err)
	}
}

// Account creates an account in groups.
func (e *Env) Account(name string, groups ...string) {
	e.T.Helper()
	e.must(e.Store.CreateAccount(context.Background(), keystore.Account{Name: name, Groups: groups, Created: e.Created}))
}

// Admin creates an account with the admin role.
func (e *Env) Admin(name string) {
	e.T.Helper()
	e.must(e.Store.CreateAccount(context.Background(), keystore.Account{Name: name, Roles: []string{"admin"}, Created: e.Created}))
}

// Key creates an API key for account, changed by edit when it is not nil, and returns the key.
func (e *Env) Key(account string, edit func(*keystore.Key)) string {
	e.T.Helper()
	plain, id, hash, err := keystore.NewAPIKey(rand.Reader)
	e.must(err)
	k := keystore.Key{ID: id, Account: account, Hash: hash, Created: e.Created}
	if edit != nil {
		edit(&k)
	}
	e.must(e.Store.CreateKey(context.Background(), k))
	return plain
}

// Grant gives an account actions on a repository pattern.
func (e *Env) Grant(account, repository string, actions ...string) {
	e.T.Helper()
	e.GrantTo(keystore.Subject{Kind: keystore.SubjectAccount, Name: account}, repository, actions...)
}

// GrantTo gives a subject (an account or a group) actions on a repository pattern.
func (e *Env) GrantTo(subject keystore.Subject, repository string, actions ...string) {
	e.T.Helper()
	e.must(e.Store.PutGrant(context.Background(), keystore.Grant{Subject: subject, Repository: repository, Actions: actions}, keystore.Unguarded))
}

// Reserve records that owner owns repository.
func (e *Env) Reserve(repository, owner string) {
	e.T.Helper()
	e.must(e.Store.Reserve(context.Background(), keystore.Ownership{Repository: repository, Owner: owner, Created: e.Created}, 0))
}
