"""The model's links: pack codes, lots, products, case-batch links and the batch traceability record."""
