"""Tandem's pipelines on Dagster: definitions generated from a project (``orchestrate.definitions``)."""
