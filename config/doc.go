// Package config holds the settings shared between the processor and the
// analyst commands (where evidence is stored, how people are alerted), and
// config/local.yaml, the ready-to-run collector configuration.
package config
