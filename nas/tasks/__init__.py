"""Detection and segmentation runs: training engine, evaluators and export (being merged into the one path)."""
