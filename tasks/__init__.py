"""Pipeline steps: plain functions, each wrapped as a Prefect task in flows' use."""
