"""The engine: ``inference.bundles.layout`` imports PyYAML by name (bundle configs in YAML)."""

hiddenimports = ["yaml"]
