package config

import (
	"fmt"

	"gopkg.in/yaml.v3"
)

// Redacted renders the effective configuration (file, environment and defaults merged) as
// YAML for `groupsync config show`. Every secret, the database URL included, prints as
// [REDACTED]: the URL may carry a password in its user info or its query, and picking it
// apart to show the rest is not worth the risk of getting it wrong.
func (c *Config) Redacted() ([]byte, error) {
	out, err := yaml.Marshal(c)
	if err != nil {
		return nil, fmt.Errorf("render config: %w", err)
	}
	return out, nil
}
