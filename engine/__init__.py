"""What every command shares (settings and config, checkpoints and their formats, files, metrics, thresholds,
predictions over a loader, mixed precision, distributed helpers, signals and errors), and its rooms: training/,
serving/ and search/, one for each group of CLIs."""
