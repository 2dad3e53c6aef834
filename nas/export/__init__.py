"""Export a trained network: standalone source + weights, pt2, TorchScript or ONNX.

``export(run_or_model, "all", out_dir)`` writes the files, loads each back, checks it against
the in-engine model and records the differences in ``out_dir/manifest.json``. The formats are
a registry (:mod:`nas.export.formats`, light: no torch), each declaring the tasks it serves.
"""
from nas.export.formats import FORMATS, formats_for, parse_formats, register_format

__all__ = ["FORMATS", "TOLERANCE", "export", "formats_for", "import_source", "parse_formats", "register_format"]
_HEAVY = {"TOLERANCE": "nas.export.exporter", "export": "nas.export.exporter", "import_source": "nas.export.source"}


def __getattr__(name: str):
    # torch loads only when the exporter is used: format names stay checkable without it
    if name in _HEAVY:
        import importlib

        return getattr(importlib.import_module(_HEAVY[name]), name)
    raise AttributeError(f"module 'nas.export' has no attribute {name!r}")
