package secret_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/groupsync/groupsync/secret"
)

const canary = "CANARY-7c1d"

func TestSecretNeverPrints(t *testing.T) {
	s := secret.New(canary)
	holder := struct {
		Token secret.Value `json:"token" yaml:"token"`
	}{s}
	var out []string
	out = append(out, fmt.Sprint(s), fmt.Sprintf("%v %+v %#v %s %q", s, holder, holder, s, s))
	j, err := json.Marshal(holder)
	if err != nil {
		t.Fatal(err)
	}
	y, err := yaml.Marshal(holder)
	if err != nil {
		t.Fatal(err)
	}
	var logs bytes.Buffer
	slog.New(slog.NewJSONHandler(&logs, nil)).Info("x", "token", s, "holder", holder)
	slog.New(slog.NewTextHandler(&logs, nil)).Info("x", "token", s)
	out = append(out, string(j), string(y), logs.String())
	for _, o := range out {
		if strings.Contains(o, canary) {
			t.Fatalf("secret leaked: %s", o)
		}
	}
	if !strings.Contains(string(j), secret.Redacted) || !strings.Contains(string(y), secret.Redacted) {
		t.Fatalf("a set secret should show as %s: %s %s", secret.Redacted, j, y)
	}
	if s.Reveal() != canary || !s.IsSet() || s.IsZero() {
		t.Fatal("Reveal/IsSet/IsZero disagree with the value")
	}
	var unset secret.Value
	if unset.String() != "" || unset.IsSet() || !unset.IsZero() {
		t.Fatal("an unset secret should print empty and report zero")
	}
}

func TestSecretDecodes(t *testing.T) {
	var v struct {
		Token secret.Value `yaml:"token"`
	}
	if err := yaml.Unmarshal([]byte("token: abc\n"), &v); err != nil || v.Token.Reveal() != "abc" {
		t.Fatalf("yaml decode = %q, %v", v.Token.Reveal(), err)
	}
}
