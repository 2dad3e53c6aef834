"""Builders: genotype in, plain ``nn.Module`` out."""
from nas.builders.networks import Backbone, build_backbone, build_classifier

__all__ = ["Backbone", "build_backbone", "build_classifier"]
