package model

import (
	"log/slog"
	"testing"

	"golang.org/x/text/unicode/norm"

	"github.com/groupsync/groupsync/connectors"
	"github.com/groupsync/groupsync/connectors/registry"
	"github.com/groupsync/groupsync/connectors/simkit"
	"github.com/groupsync/groupsync/connectors/simorg"
)

// TestInvariantOneNormalizerFindsAccountsInEitherUnicodeForm: an account a target holds
// under the decomposed (NFD) spelling of an address is the same mailbox as the NFC key the
// mirror stores, so a look-up by that key finds it. Before, the look-ups sent only the NFC
// key, a target comparing bytes answered not found, and the member was skipped no_account
// on every run (found by the model test, seed 14).
func TestInvariantOneNormalizerFindsAccountsInEitherUnicodeForm(t *testing.T) {
	org, err := simorg.Start(simorg.Spec{Name: "at", Kind: connectors.KindAirtable},
		simorg.Spec{Name: "scm", Kind: connectors.KindSelfCommunity}, simorg.Spec{Name: "dvt", Kind: connectors.KindDevRev},
		simorg.Spec{Name: "sc", Kind: connectors.KindSocialcast})
	if err != nil {
		t.Fatal(err)
	}
	defer org.Close()
	nfc := "zoé.lovelace@example.com"
	for _, name := range org.Names() {
		s := org.Systems[name]
		t.Run(name, func(t *testing.T) {
			s.Sim.Seed(simkit.Tenant{People: []simkit.Person{{Email: norm.NFD.String(nfc), First: "Zoé", Last: "Lovelace"}}})
			c, err := registry.Open(s.Config, connectors.Deps{HTTPClient: s.Server.Client(), Logger: slog.New(slog.DiscardHandler)})
			if err != nil {
				t.Fatal(err)
			}
			a, err := c.FindAccountByEmail(t.Context(), connectors.NormalizeEmail(nfc))
			if err != nil {
				t.Fatalf("%s holds %+q; FindAccountByEmail(%+q): %v", name, norm.NFD.String(nfc), nfc, err)
			}
			if a.Email != connectors.NormalizeEmail(nfc) {
				t.Fatalf("found %+q, want the key %+q", a.Email, connectors.NormalizeEmail(nfc))
			}
		})
	}
}
