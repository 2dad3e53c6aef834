"""What builds a network again: genotype, space and the network arguments, as plain data.

A :class:`ModelSpec` travels inside every checkpoint and run folder, so a checkpoint rebuilds its
own model (no pickled project classes) and a resume can tell whether a checkpoint belongs to it.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from torch import nn

from nas.builders import build_classifier
from nas.errors import NasError
from nas.genotype import Genotype
from nas.space import SearchSpace, load_space, space_from_dict


@dataclass(frozen=True)
class ModelSpec:
    """A classifier's full description; :meth:`build` makes a freshly initialised copy.

    ``init_channels`` and ``layers`` are resolved against the space (never ``None`` for cell
    spaces, always ``None`` for chain spaces, whose size the space file fixes).

    >>> from nas.genotype import get_reference
    >>> spec = ModelSpec.create(get_reference("DARTS_V2"), init_channels=8, layers=5)
    >>> spec.layers, spec.build()(torch.randn(1, 3, 32, 32)).shape
    (5, torch.Size([1, 10]))
    """

    genotype: Genotype
    space: SearchSpace
    num_classes: int = 10
    in_channels: int = 3
    init_channels: int | None = None
    layers: int | None = None
    auxiliary: bool = False

    @classmethod
    def create(cls, genotype: Genotype, space: SearchSpace | str | None = None, *, num_classes: int = 10,
               in_channels: int = 3, init_channels: int | None = None, layers: int | None = None,
               auxiliary: bool = False) -> ModelSpec:
        """Validate ``genotype`` against ``space`` (default: its own) and fill in the space's defaults."""
        space = load_space(space or genotype.space)
        genotype.validate(space)
        for value, what in ((num_classes, "num_classes"), (in_channels, "in_channels"),
                            (init_channels, "init_channels"), (layers, "layers")):
            if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
                raise NasError(f"{what} must be a positive integer, got {value!r}")
        if space.kind == "chain":
            # the chain's stage widths and depths come from the space and genotype; it has no auxiliary head
            return cls(genotype, space, num_classes, in_channels)
        net = space.network
        if layers is None:
            layers = int(net["layers"]) if "layers" in net else 3 * int(net.get("cells_per_stage", 2)) + 2
        if layers < 3:
            raise NasError(f"layers must be at least 3 (two of them are reductions), got {layers}")
        return cls(genotype, space, num_classes, in_channels, init_channels or int(net.get("init_channels", 16)),
                   layers, auxiliary)

    def build(self) -> nn.Module:
        """A new network with fresh weights (drawn from torch's global generator)."""
        return build_classifier(self.genotype, self.space, num_classes=self.num_classes,
                                init_channels=self.init_channels, layers=self.layers, in_channels=self.in_channels,
                                auxiliary=self.auxiliary)

    def to_dict(self) -> dict[str, Any]:
        return {"genotype": self.genotype.to_dict(), "space": self.space.to_dict(), "num_classes": self.num_classes,
                "in_channels": self.in_channels, "init_channels": self.init_channels, "layers": self.layers,
                "auxiliary": self.auxiliary}

    @classmethod
    def from_dict(cls, data: Any, source: str = "model spec") -> ModelSpec:
        if not isinstance(data, dict) or not {"genotype", "space", "num_classes"} <= set(data):
            raise NasError(f"{source}: no model description (genotype, space, network arguments); "
                           "it was not written by `nas train`")
        space = space_from_dict(data["space"], source=source)
        genotype = Genotype.from_dict(data["genotype"], source=source).validate(space)
        return cls(genotype, space, int(data["num_classes"]), int(data.get("in_channels", 3)),
                   data.get("init_channels"), data.get("layers"), bool(data.get("auxiliary", False)))

    def same_architecture(self, other: ModelSpec) -> bool:
        """True when both build networks with the same parameters (names and shapes)."""
        return self.to_dict() == other.to_dict()

    def describe(self) -> str:
        if self.space.kind == "chain":
            return f"{self.space.name} chain, {self.num_classes} classes"
        return (f"{self.space.name} cells, C={self.init_channels}, {self.layers} layers, {self.num_classes} classes"
                + (", auxiliary head" if self.auxiliary else ""))
