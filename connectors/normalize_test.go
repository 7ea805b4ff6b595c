package connectors_test

import (
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"

	"golang.org/x/text/unicode/norm"

	"github.com/groupsync/groupsync/connectors"
)

func TestNormalizeName(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"Engineering", "engineering"},
		{"  Sales   Team ", "sales team"},
		{"Sales\u00a0Team", "sales team"},     // no-break space
		{"Sales\u2007Team", "sales team"},     // figure space
		{"Sales\u202fTeam", "sales team"},     // narrow no-break space
		{"Sales\u3000\tTeam\n", "sales team"}, // ideographic space and ASCII whitespace
		{"Sales\u200bTeam", "salesteam"},      // zero-width space: invisible, dropped
		{"\ufeffSales", "sales"},              // a BOM that came along with a CSV import
		{"Cafe\u0301", "caf\u00e9"},           // NFD to NFC
		{"CAF\u00c9", "caf\u00e9"},            // precomposed upper case
		{"Stra\u00dfe", "stra\u00dfe"},        // ß stays ß (no full case folding)
		{"\u0130stanbul", "istanbul"},         // simple lower-casing: dotted İ is i
		{"\u200d", "\u200d"},                  // ZWJ is kept: it joins emoji and scripts
		{"\ufb01nance", "\ufb01nance"},        // NFC, not NFKC: the ligature stays
		{"   ", ""},
	} {
		if got := connectors.NormalizeName(c.in); got != c.want {
			t.Errorf("NormalizeName(%q) = %q, want %q", c.in, got, c.want)
		}
	}
}

func TestNormalizeEmail(t *testing.T) {
	nfc := "jos\u00e9@example.com"
	for _, in := range []string{nfc, "jose\u0301@example.com", " JOSE\u0301@Example.COM\u00a0", "Jos\u00c9@example.com\u200b"} {
		if got := connectors.NormalizeEmail(in); got != nfc {
			t.Errorf("NormalizeEmail(%q) = %q, want %q", in, got, nfc)
		}
	}
	if got := connectors.NormalizeEmail("  Mixed.Case@Example.COM "); got != "mixed.case@example.com" {
		t.Errorf("ASCII email: got %q", got)
	}
}

// FuzzNormalize checks the normalizer's promises on any input: the key is a fixed point,
// NFC and NFD spellings of one text give one key, every Unicode space counts as one space,
// and the key is valid UTF-8 with no leading, trailing or doubled space.
func FuzzNormalize(f *testing.F) {
	for _, s := range []string{"", " ", "Sales Team", "Cafe\u0301", "caf\u00e9", "A\u00a0\u2007B", "\u1e9e", "\u0130",
		"x\u200b\u0301", "\u0345\u0399", "\ufb01", "\xff\xfe", "a\tb\r\nc", "\u1100\u1161\u11a8", "\u03a3\u0342"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		k := connectors.NormalizeName(s)
		if again := connectors.NormalizeName(k); again != k {
			t.Fatalf("not idempotent: %q → %q → %q", s, k, again)
		}
		if e := connectors.NormalizeEmail(s); e != k {
			t.Fatalf("email and name keys differ for %q: %q vs %q", s, e, k)
		}
		if !utf8.ValidString(k) {
			t.Fatalf("key of %q is not valid UTF-8: %q", s, k)
		}
		if strings.HasPrefix(k, " ") || strings.HasSuffix(k, " ") || strings.Contains(k, "  ") {
			t.Fatalf("key of %q has stray spaces: %q", s, k)
		}
		for _, r := range k {
			if r != ' ' && unicode.IsSpace(r) {
				t.Fatalf("key of %q keeps space %U: %q", s, r, k)
			}
		}
		if !utf8.ValidString(s) {
			return // NFD of invalid UTF-8 is not a spelling of the same text
		}
		for _, form := range []norm.Form{norm.NFD, norm.NFC} {
			if got := connectors.NormalizeName(form.String(s)); got != k {
				t.Fatalf("%v spelling of %q gives %q, want %q", form, s, got, k)
			}
		}
		spaced := strings.NewReplacer(" ", "\u00a0\u2007", "\t", "\u202f").Replace(s)
		if got := connectors.NormalizeName(spaced); got != k {
			t.Fatalf("Unicode spaces in %q give %q, want %q", spaced, got, k)
		}
	})
}

func BenchmarkNormalizeEmail(b *testing.B) {
	for _, in := range []string{"user000123@example.com", " User000123@Example.com", "jos\u00e9.garc\u00eda@example.com"} {
		b.Run(in, func(b *testing.B) {
			for range b.N {
				connectors.NormalizeEmail(in)
			}
		})
	}
}
