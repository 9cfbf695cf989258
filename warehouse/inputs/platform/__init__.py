"""Loaders: one module per inbox input, each replacing its tables idempotently."""
