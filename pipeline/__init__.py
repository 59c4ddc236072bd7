"""vidprobe: the CLI, config, and one module per stage."""
