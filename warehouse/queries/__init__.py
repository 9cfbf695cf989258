"""Read queries over the warehouse: counts, exposure, inputs of the statistics and the evidence read model."""
