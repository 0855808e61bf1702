"""mqless_cli: the `mqless` command and the local runtime built from template.yaml."""
