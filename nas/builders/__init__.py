"""Builders: genotype in, plain ``nn.Module`` out; :class:`ModelSpec` rebuilds any trained model."""
from nas.builders.networks import Backbone, build_backbone, build_classifier
from nas.builders.spec import ModelSpec

__all__ = ["Backbone", "ModelSpec", "build_backbone", "build_classifier"]
