"""One module per `vidprobe` command, each a plain `run(cfg)` the CLI calls; a stage never imports another."""
