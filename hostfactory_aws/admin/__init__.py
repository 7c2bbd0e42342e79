"""The `hostfactory-aws` admin command: never imported by a verb."""
