"""Export a trained network: standalone source + weights, pt2, TorchScript or ONNX.

``export(run_or_model, "all", out_dir)`` writes the files, loads each back, checks it against
the in-engine model and records the differences in ``out_dir/manifest.json``.
"""
from nas.export.exporter import FORMATS, TOLERANCE, export, parse_formats
from nas.export.source import architecture, import_source

__all__ = ["FORMATS", "TOLERANCE", "architecture", "export", "import_source", "parse_formats"]
