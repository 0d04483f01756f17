// Package manifest reads a plugin's wharf.toml: its limits, Durable Object
// bindings and containers, with their defaults and checks (errors name the
// key, file and line), and builds the Go package it names into a module.
package manifest
