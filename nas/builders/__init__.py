"""Builders: plain data in, plain ``nn.Module`` out; :class:`ModelSpec` rebuilds any trained model.

``ModelSpec`` checks a genotype against its space and writes the architecture as plain data
(:meth:`ModelSpec.arch`); :func:`nas.builders.arch.build` turns that into the network. Heads
of detectors and segmenters are registered with :func:`register_head`.
"""
from nas.builders.arch import build
from nas.builders.heads import get_head, heads, register_head
from nas.builders.networks import Backbone
from nas.builders.spec import (
           ModelSpec,
           backbone_cell_prefixes,
           build_backbone,
           build_classifier,
)

__all__ = ["Backbone", "ModelSpec", "backbone_cell_prefixes", "build", "build_backbone", "build_classifier",
           "get_head", "heads", "register_head"]
