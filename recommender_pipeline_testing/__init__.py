"""What the tests, the benchmarks and the demo share: known-truth workloads, the Confluent Cloud
emulator, `dagster dev` for tests, and the pipeline run on a test instance. Installed with the
`dev` extra's dependencies; never imported by the pipeline itself."""
