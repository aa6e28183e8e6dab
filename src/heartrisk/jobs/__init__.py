"""The jobs: one module per command that moves data (ingest, train, synth train, daily, infer, predict,
forget); each is a plain function the CLI, the scheduler, cron or Kubernetes can call."""
