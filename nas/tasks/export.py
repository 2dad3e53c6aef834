"""Export detectors and segmenters built on genotype backbones, and prove the files compute the same.

Segmenters map an image tensor to a logits tensor, so :func:`nas.export.export` writes their
``pt2`` (``torch.export``), ``torchscript`` (``torch.jit.trace``) and ``onnx`` files. Detectors
take a list of images and return a list of dicts through torchvision's detection code: they are
exported as TorchScript by tracing the backbone + FPN (a plain tensor-to-maps function) and
scripting the rest, as torchvision supports. ``torch.export`` and ONNX are not offered for
detectors: the data-dependent box decoding and NMS of torchvision's detectors do not capture
as one graph with this torch version.

Both get the ``source`` format: ``model.py`` (the genotype's cells in plain PyTorch, mirrored from
:mod:`nas.export.standalone`, plus the backbone, FPN and head wiring) next to
``model.safetensors`` and ``model_state_dict.pt``. It needs only torch for a genotype backbone
with a U-Net head; FCN / DeepLabV3 heads, torchvision baseline backbones and every detector
import torchvision, where those parts live.

Every artifact is loaded back and run on example images; its largest absolute difference from
the model (CPU, float32, eval mode) must stay within :data:`nas.export.TOLERANCE`, and is
recorded in ``manifest.json``.

Example::

    paths = export_task_run("runs/detect-DARTS_V2-...", "source,torchscript")
    paths["torchscript"]  # runs/.../export/model.torchscript.pt
"""
from __future__ import annotations

import ast
import copy
import inspect
import json
import pprint
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Callable

import torch
from torch import Tensor, nn

from nas.builders import segmentation
from nas.errors import NasError
from nas.export import TOLERANCE, import_source, standalone
from nas.export import export as export_tensor_model
from nas.builders.spec import GENOTYPE_BACKBONE, ModelSpec
from nas.tasks.engine import EXPORT_FORMATS, SHAPES_VAL_SEED, TaskConfig, load_task_model, task_backbone

MANIFEST = "manifest.json"
SOURCE_FILE, SAFETENSORS_FILE, STATE_DICT_FILE = "model.py", "model.safetensors", "model_state_dict.pt"
TORCHSCRIPT_FILE = "model.torchscript.pt"
# the standalone template's whole-network classes and build(); the task file has its own (which the
# template's load() calls)
_TEMPLATE_SKIP = {"CellNetwork", "ChainNetwork", "build", "ARCH"}
# plain-torch pieces of nas.builders.segmentation copied verbatim into the source export
_SEGMENTATION_PARTS = ("_resize_to", "HeadSegmenter", "_conv_bn_relu", "_up_bn_relu", "UNetDecoder", "UNetSegmenter")


def parse_task_formats(formats: str | Sequence[str], task: str) -> tuple[str, ...]:
    """``"all"``, ``"source,torchscript"`` or a list -> the formats of ``task``, in order, once each."""
    allowed = EXPORT_FORMATS[task]
    names = [formats] if isinstance(formats, str) else list(formats)
    parsed: list[str] = []
    for name in (part.strip().lower() for item in names for part in str(item).split(",") if part.strip()):
        if name == "all":
            parsed += allowed
        elif name in allowed:
            parsed.append(name)
        else:
            why = (" (torchvision's detectors do not capture with torch.export / ONNX; use torchscript)"
                   if task == "detection" and name in ("pt2", "onnx") else "")
            raise NasError(f"export format {name!r} is not available for {task}{why}; choose from "
                           f"{', '.join(allowed)} or all")
    if not parsed:
        raise NasError(f"no export format given; choose from {', '.join(allowed)} or all")
    return tuple(dict.fromkeys(parsed))


def example_images(spec: ModelSpec, count: int = 2) -> list[Tensor]:
    """Validation scenes of the shapes data at the model's size: inputs on which a trained
    detector actually detects something, so the comparison covers boxes and scores."""
    from nas.data.tasks import ShapesDataset

    data = ShapesDataset(count, image_size=spec.image_size, seed=SHAPES_VAL_SEED)
    return [data[i][0] for i in range(count)]


def export_task_model(model: nn.Module, spec: ModelSpec, formats: str | Sequence[str], out_dir: str | Path, *,
                      name: str = "") -> dict[str, Path]:
    """Write ``model`` in each of ``formats`` to ``out_dir``, check each file; returns ``{format: main file}``.

    Example::

        export_task_model(result.model, result.spec, "source,torchscript", "export/")
    """
    names = parse_task_formats(formats, spec.task)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model = copy.deepcopy(model).to("cpu", torch.float32).eval()
    images = example_images(spec)
    results: dict[str, Path] = {}
    if spec.task == "segmentation":
        batch = torch.stack(images)
        tensor_formats = [f for f in names if f != "source"]
        if tensor_formats:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # jit / export deprecation notices
                results.update(export_tensor_model(model, tensor_formats, out, example_input=batch, name=name))
        if "source" in names:
            started = time.perf_counter()
            files = write_task_source(model, spec, out, title=name)
            network = import_source(files[0]).load(files[1])
            with torch.no_grad():
                diff = (network(batch) - model(batch)).abs().max().item()
            _record(out, spec, "source", files, diff, started, "the written model.py imported and run with "
                    "model.safetensors", list(batch.shape))
            results["source"] = files[0]
        return {f: results[f] for f in names}

    # detectors: one square batch of the model's size, and one narrower image alone (another padded shape)
    narrow = images[0][:, :, : spec.image_size * 3 // 4]
    inputs = [images, [narrow]]
    for fmt in names:
        with warnings.catch_warnings():
            # jit's deprecation notice, and scripted detectors noting that they return a tuple
            warnings.simplefilter("ignore")
            started = time.perf_counter()
            if fmt == "source":
                files = write_task_source(model, spec, out, title=name)
                network = import_source(files[0]).load(files[1])
                run: Callable[[list[Tensor]], list[dict[str, Tensor]]] = network
                pyramid: Callable[[Tensor], dict[str, Tensor]] = network.backbone
                verified = "the written model.py imported and run with model.safetensors"
            else:
                files = [out / TORCHSCRIPT_FILE]
                scripted = script_detector(model, images)
                scripted.save(str(files[0]))
                loaded = torch.jit.load(str(files[0]), map_location="cpu")
                run = lambda batch: loaded(batch)[1]  # noqa: E731 - scripted detectors return (losses, detections)
                pyramid = loaded.backbone
                verified = "torch.jit.load; detections compared on two batches"
            diff = _detection_difference(model, run, pyramid, inputs)
        if not diff <= TOLERANCE:
            for f in files:
                f.unlink(missing_ok=True)
            raise NasError(f"the {fmt} export differs from the model by {diff:.2e} (more than {TOLERANCE:g}) on the "
                           "example images, so it was not kept; export another format")
        _record(out, spec, fmt, files, diff, started, verified, [len(images), 3, spec.image_size, spec.image_size])
        results[fmt] = files[0]
    return results


def script_detector(model: nn.Module, images: Sequence[Tensor]) -> torch.jit.ScriptModule:
    """TorchScript of a torchvision detector whose backbone is any contract backbone.

    The backbone + FPN is traced on the padded batch the detector's transform makes of
    ``images`` (the cells' Python control flow is then fixed; the ops stay shape-generic), and
    the detector around it is scripted. The scripted model returns ``(losses, detections)``.
    """
    model = copy.deepcopy(model).eval()
    with torch.no_grad():
        batch, _ = model.transform(list(images))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # jit deprecation and "always returns a tuple" notices
        try:
            model.backbone = torch.jit.trace(model.backbone, (batch.tensors,), strict=False, check_trace=False)
            return torch.jit.script(model)
        except Exception as exc:  # jit raises many internal types
            raise NasError(f"torchscript export failed ({type(exc).__name__}: {str(exc).splitlines()[0][:200]}); "
                           "try --export-formats source") from None


@torch.no_grad()
def _detection_difference(model: nn.Module, run: Callable[[list[Tensor]], list[dict[str, Tensor]]],
                          pyramid: Callable[[Tensor], dict[str, Tensor]], inputs: Sequence[list[Tensor]]) -> float:
    """Largest difference of boxes, scores and FPN maps over ``inputs``; infinite when the
    detections themselves differ (count or labels)."""
    worst = 0.0
    for images in inputs:
        for expected, got in zip(model(images), run(images)):
            if len(expected["boxes"]) != len(got["boxes"]) or not torch.equal(expected["labels"], got["labels"]):
                return float("inf")
            for key in ("boxes", "scores"):
                if len(expected[key]):
                    worst = max(worst, (expected[key] - got[key]).abs().max().item())
        # the pyramid is compared too: an untrained model may detect nothing at all
        tensors = model.transform(images)[0].tensors
        reference = model.backbone(tensors)
        for key, value in pyramid(tensors).items():
            worst = max(worst, (value - reference[key]).abs().max().item())
    return worst


def _record(out: Path, spec: ModelSpec, fmt: str, files: list[Path], diff: float, started: float, verified: str,
            shape: list[int]) -> None:
    """Add one format to ``manifest.json`` (the layout of :mod:`nas.export`), keeping the others."""
    path = out / MANIFEST
    manifest: dict[str, Any] = {"formats": {}}
    if path.is_file():
        try:
            manifest = json.loads(path.read_text())
        except json.JSONDecodeError:
            pass  # a damaged manifest is rewritten
    manifest.setdefault("formats", {})[fmt] = {
        "file": files[0].name, "files": [f.name for f in files], "max_abs_diff": diff, "verified_with": verified,
        "seconds": round(time.perf_counter() - started, 2)}
    manifest.update({"example_input_shape": shape, "tolerance": TOLERANCE, "torch": torch.__version__,
                     "requires": ["torch"] if not needs_torchvision(spec) else ["torch", "torchvision"],
                     "task_model": spec.to_dict()})
    if spec.task == "detection":
        manifest["limits"] = ("torchscript: the backbone + FPN is traced (its Python control flow fixed) and the "
                              "torchvision detector scripted; the loaded module returns (losses, detections). "
                              "pt2 and ONNX are not offered for detectors.")
    tmp = path.with_name(MANIFEST + ".tmp")
    tmp.write_text(json.dumps(manifest, indent=2) + "\n")
    tmp.replace(path)


def export_task_run(run: str | Path, formats: str | Sequence[str] | None = None, out: str | Path | None = None, *,
                    checkpoint: str = "last") -> dict[str, Path]:
    """Export a ``nas detect`` / ``nas segment`` run folder (its ``checkpoints/<checkpoint>.pt``).

    formats: default the run's own ``export_formats``. out: default ``RUN/export`` (``last``)
    or ``RUN/export-best``.

    Example::

        export_task_run("runs/segment-DARTS_V2-...", "pt2,onnx")
    """
    path = Path(run)
    if checkpoint not in ("last", "best"):
        raise NasError(f"checkpoint must be last or best, got {checkpoint!r}")
    if not (path / "config.json").is_file():
        raise NasError(f"{path} is not a run folder (no config.json); pass a `nas detect` / `nas segment` run")
    config = json.loads((path / "config.json").read_text())
    if config.get("kind") not in ("detect", "segment"):
        raise NasError(f"{path} is a {config.get('kind')!r} run, not a `nas detect` / `nas segment` run")
    model, spec, _ = load_task_model(path / "checkpoints" / f"{checkpoint}.pt")
    if formats is None:
        formats = TaskConfig.from_dict(config["train"]).export_formats or EXPORT_FORMATS[spec.task][:2]
    target = Path(out) if out is not None else path / ("export" if checkpoint == "last" else "export-best")
    return export_task_model(model, spec, formats, target, name=str(config.get("label", "")))


def is_task_run(path: str | Path) -> bool:
    """True for a ``nas detect`` / ``nas segment`` run folder."""
    try:
        return json.loads((Path(path) / "config.json").read_text()).get("kind") in ("detect", "segment")
    except (OSError, ValueError, AttributeError):
        return False


# -- the source format -----------------------------------------------------------------------------
def needs_torchvision(spec: ModelSpec) -> bool:
    from nas.export.source import TORCHVISION_OPS

    if spec.task == "detection" or spec.head != "unet" or spec.backbone != GENOTYPE_BACKBONE:
        return True
    assert spec.genotype is not None
    if spec.genotype.stages:
        ops = {op for stage in spec.genotype.stages for op in stage}
    else:
        ops = {op for _, cell in spec.genotype.cells for node in cell.nodes for op, _ in node}
    return bool(ops & set(TORCHVISION_OPS))


def task_architecture(model: nn.Module, spec: ModelSpec) -> dict[str, Any]:
    """The plain-data description the exported ``model.py`` builds from, read off ``model``."""
    from torchvision.ops.feature_pyramid_network import LastLevelMaxPool, LastLevelP6P7

    backbone = task_backbone(model)
    arch: dict[str, Any] = {"task": spec.task, "head": spec.head, "num_classes": spec.num_classes,
                            "image_size": spec.image_size}
    if spec.backbone != GENOTYPE_BACKBONE:
        arch["backbone"] = {"kind": "torchvision", "name": spec.backbone}
    else:
        assert spec.genotype is not None and spec.space is not None
        net = spec.space.network
        body: dict[str, Any] = {"taps": list(backbone.taps), "channels": list(backbone.out_channels_list)}
        if spec.space.kind == "chain":
            body.update(kind="chain", stem_channels=int(net.get("stem_channels", 32)),
                        stages=[{"channels": st.channels, "stride": st.stride, "blocks": list(blocks)}
                                for blocks, st in zip(spec.genotype.stages, spec.space.stages)])
        else:
            n = spec.cells_per_stage
            body.update(kind="cell", init_channels=spec.init_channels,
                        stem_multiplier=int(net.get("stem_multiplier", 3)), inputs=spec.space.inputs,
                        reduction=net.get("reduction", "cell"), plan=([False] * n + [True]) * 3 + [False] * n,
                        cells={cell_name: {"nodes": [[[op, src] for op, src in node] for node in cell.nodes],
                                           "concat": list(cell.concat)} for cell_name, cell in spec.genotype.cells})
        arch["backbone"] = body
    if spec.task == "segmentation":
        if spec.head != "unet":
            arch["feature"] = model.feature
            if spec.head == "deeplabv3":
                arch["atrous_rates"] = [branch[0].dilation[0] for branch in model.head[0].convs[1:-1]]
        return arch
    fpn = model.backbone
    extra = fpn.fpn.extra_blocks
    generator = model.rpn.anchor_generator if spec.head == "fasterrcnn" else model.anchor_generator
    arch["detector"] = {
        "levels": list(fpn.levels), "fpn_channels": fpn.out_channels,
        "extra_blocks": "pool" if isinstance(extra, LastLevelMaxPool) else "p6p7" if isinstance(extra, LastLevelP6P7)
        else None,
        "anchor_sizes": [list(s) for s in generator.sizes], "aspect_ratios": [list(r) for r in generator.aspect_ratios],
        "box_representation": model.roi_heads.box_head.fc6.out_features if spec.head == "fasterrcnn" else None,
        "options": {"min_size": spec.image_size, "max_size": spec.image_size, **spec.options}}
    return arch


def task_source_text(model: nn.Module, spec: ModelSpec, *, title: str = "") -> str:
    """The exported ``model.py``: docstring, the template's ops and cells, then the task wiring."""
    template = Path(standalone.__file__).read_text()
    tree = ast.parse(template)
    lines = template.splitlines()
    pieces = []
    for node in tree.body[1:]:  # body[0] is the template's docstring
        names = {getattr(node, "name", None)} | {getattr(t, "id", None) for t in getattr(node, "targets", [])}
        if isinstance(node, ast.AnnAssign):
            names.add(getattr(node.target, "id", None))
        if names & _TEMPLATE_SKIP or (isinstance(node, ast.If) and "__name__" in ast.unparse(node.test)):
            continue
        start = min([node.lineno] + [d.lineno for d in getattr(node, "decorator_list", [])])
        pieces.append("\n".join(lines[start - 1: node.end_lineno]))
    parts = [inspect.getsource(getattr(segmentation, name)) for name in _SEGMENTATION_PARTS]
    arch = pprint.pformat(task_architecture(model, spec), width=110, sort_dicts=False)
    return (_docstring(spec, title) + "\n".join(pieces[:_first_definition(pieces)]) + "\n"
            "from collections import OrderedDict\nfrom collections.abc import Sequence\n\nfrom torch import Tensor\n\n"
            f"ARCH: dict[str, Any] = {arch}\n\n\n" + "\n\n\n".join(pieces[_first_definition(pieces):]) + "\n\n\n"
            + "\n\n".join(parts) + "\n\n" + _TASK_PART)


def _first_definition(pieces: list[str]) -> int:
    """Index of the first piece that is not an import (the imports go first in the file)."""
    return next(i for i, p in enumerate(pieces) if not p.startswith(("import ", "from ")))


def _docstring(spec: ModelSpec, title: str) -> str:
    vision = needs_torchvision(spec)
    needs = ("PyTorch and torchvision (the detector, FCN / DeepLabV3 heads, baseline backbones and deformable "
             "convs live there)" if vision else "only PyTorch")
    if spec.task == "detection":
        usage = ("    net = model.load()  # eval mode, with the trained weights\n"
                 f"    detections = net([torch.rand(3, {spec.image_size}, {spec.image_size})])\n"
                 "    # one {\"boxes\" (x1, y1, x2, y2), \"scores\", \"labels\"} dict per image; images are float\n"
                 "    # tensors in [0, 1] of any size (resized so the long side is "
                 f"{spec.image_size})\n")
    else:
        usage = ("    net = model.load()  # eval mode, with the trained weights\n"
                 f"    logits = net(torch.rand(1, 3, {spec.image_size}, {spec.image_size}))  "
                 f"# (1, {spec.num_classes}, H, W)\n")
    genotype = json.dumps(spec.genotype.to_dict(), separators=(",", ":")) if spec.genotype else spec.backbone
    return (f'"""{title or spec.head}: {spec.describe()}.\n\n'
            f"Exported by nas with torch {torch.__version__}. Standalone: this file needs {needs}.\n"
            f"The architecture is the ``ARCH`` dict below; the weights are ``{SAFETENSORS_FILE}`` (read with\n"
            f"safetensors when it is installed) or ``{STATE_DICT_FILE}`` (``torch.load(weights_only=True)``).\n\n"
            "    import torch\n    import model  # this file\n\n" + usage + "\n"
            "``build()`` makes the same network with fresh weights.\n\n"
            f"Backbone: {genotype}\n"
            '"""\n')


def write_task_source(model: nn.Module, spec: ModelSpec, out_dir: Path, *, title: str = "") -> list[Path]:
    """Write ``model.py``, ``model.safetensors`` and ``model_state_dict.pt``; returns their paths."""
    from safetensors.torch import save_file

    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    files = [out_dir / SOURCE_FILE, out_dir / SAFETENSORS_FILE, out_dir / STATE_DICT_FILE]
    tmp = [f.with_name(f.name + ".tmp") for f in files]
    tmp[0].write_text(task_source_text(model, spec, title=title))
    save_file(state, str(tmp[1]), metadata={"format": "pt"})
    torch.save(state, tmp[2])
    for t, f in zip(tmp, files):
        t.replace(f)
    return files


# The task half of the exported model.py: backbone, FPN, detector / segmenter and the entry
# points. Module names mirror nas.builders.Backbone and nas.tasks so the state dict loads as is.
_TASK_PART = '''
class Backbone(nn.Module):
    """The genotype's cells (or chain blocks) after a stride-4 stem; maps at strides 4, 8, 16, 32."""

    def __init__(self, arch: dict[str, Any]):
        super().__init__()
        if arch["kind"] == "chain":
            C_stem = arch["stem_channels"]
            self.stem = nn.Sequential(*_conv_bn(3, C_stem // 2, 3, 2), nn.ReLU6(inplace=True),
                                      *_conv_bn(C_stem // 2, C_stem, 3, 2), nn.ReLU6(inplace=True))
            self.blocks = ChainBody(arch["stages"], C_stem).stages
        else:
            C = arch["init_channels"]
            C_stem = arch["stem_multiplier"] * C
            self.stem = nn.Sequential(*_conv_bn(3, C_stem // 2, 3, 2), nn.ReLU(inplace=True),
                                      *_conv_bn(C_stem // 2, C_stem, 3, 2))
            self.blocks = CellStack(arch, C=C, C_stem=C_stem, plan=arch["plan"]).cells
        self.cells = arch["kind"] == "cell"
        self.taps = list(arch["taps"])
        self.out_channels_list = list(arch["channels"])

    def forward(self, x: torch.Tensor) -> "OrderedDict[str, torch.Tensor]":
        out: OrderedDict[str, torch.Tensor] = OrderedDict()
        s0 = s1 = self.stem(x)
        for i, block in enumerate(self.blocks):
            if self.cells:
                s0, s1 = s1, block(s0, s1)
            else:
                s1 = block(s1)
            if i in self.taps:
                out[str(len(out))] = s1
        return out


class FeatureBackbone(nn.Module):
    """A torchvision network returning the last map of each stride 4..32, keyed "0".."3"."""

    def __init__(self, name: str):
        super().__init__()
        from torchvision.models import mobilenet_v3_large, resnet18
        from torchvision.models._utils import IntermediateLayerGetter

        if name == "resnet18":
            layers = {"layer1": "0", "layer2": "1", "layer3": "2", "layer4": "3"}
            self.body = IntermediateLayerGetter(resnet18(weights=None), layers)
            self.out_channels_list = [64, 128, 256, 512]
        else:
            layers = {"3": "0", "6": "1", "12": "2", "16": "3"}
            self.body = IntermediateLayerGetter(mobilenet_v3_large(weights=None).features, layers)
            self.out_channels_list = [24, 40, 112, 960]

    def forward(self, x: torch.Tensor) -> "OrderedDict[str, torch.Tensor]":
        return OrderedDict((str(i), f) for i, f in enumerate(self.body(x).values()))


class BackboneFPN(nn.Module):
    """The backbone's selected levels through torchvision's FeaturePyramidNetwork."""

    def __init__(self, backbone: nn.Module, levels: list[int], out_channels: int, extra_blocks: str | None):
        super().__init__()
        from torchvision.ops import FeaturePyramidNetwork
        from torchvision.ops.feature_pyramid_network import LastLevelMaxPool, LastLevelP6P7

        extra = {"pool": LastLevelMaxPool, "p6p7": lambda: LastLevelP6P7(out_channels, out_channels)}
        self.body = backbone
        self.featmap_names = [str(i) for i in levels]
        self.fpn = FeaturePyramidNetwork([backbone.out_channels_list[i] for i in levels], out_channels,
                                         extra_blocks=extra[extra_blocks]() if extra_blocks else None)
        self.out_channels = out_channels

    def forward(self, x: torch.Tensor) -> "OrderedDict[str, torch.Tensor]":
        features = self.body(x)
        return self.fpn(OrderedDict((name, features[name]) for name in self.featmap_names))


def _backbone(arch: dict[str, Any]) -> nn.Module:
    if arch["backbone"]["kind"] == "torchvision":
        return FeatureBackbone(arch["backbone"]["name"])
    return Backbone(arch["backbone"])


def _detector(arch: dict[str, Any]) -> nn.Module:
    from torchvision.models.detection import FCOS, FasterRCNN, RetinaNet
    from torchvision.models.detection.anchor_utils import AnchorGenerator
    from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead
    from torchvision.ops import MultiScaleRoIAlign

    det = arch["detector"]
    fpn = BackboneFPN(_backbone(arch), det["levels"], det["fpn_channels"], det["extra_blocks"])
    anchors = AnchorGenerator(tuple(tuple(s) for s in det["anchor_sizes"]),
                              tuple(tuple(r) for r in det["aspect_ratios"]))
    num_classes, options = arch["num_classes"], det["options"]
    if arch["head"] == "fasterrcnn":
        width = det["box_representation"]
        return FasterRCNN(fpn, rpn_anchor_generator=anchors,
                          box_roi_pool=MultiScaleRoIAlign(fpn.featmap_names, output_size=7, sampling_ratio=2),
                          box_head=TwoMLPHead(det["fpn_channels"] * 7 * 7, width),
                          box_predictor=FastRCNNPredictor(width, num_classes), **options)
    detector = RetinaNet if arch["head"] == "retinanet" else FCOS
    return detector(fpn, num_classes, anchor_generator=anchors, **options)


def _segmenter(arch: dict[str, Any]) -> nn.Module:
    backbone = _backbone(arch)
    if arch["head"] == "unet":
        return UNetSegmenter(backbone, arch["num_classes"])
    channels = backbone.out_channels_list[int(arch["feature"])]
    if arch["head"] == "fcn":
        from torchvision.models.segmentation.fcn import FCNHead

        head = FCNHead(channels, arch["num_classes"])
    else:
        from torchvision.models.segmentation.deeplabv3 import DeepLabHead

        head = DeepLabHead(channels, arch["num_classes"], atrous_rates=tuple(arch["atrous_rates"]))
    return HeadSegmenter(backbone, head, arch["feature"])


def build(arch: dict[str, Any] | None = None) -> nn.Module:
    """The model of ``arch`` (default: this file's ``ARCH``) with fresh weights, in eval mode."""
    arch = ARCH if arch is None else arch
    model = _detector(arch) if arch["task"] == "detection" else _segmenter(arch)
    return model.eval()


if __name__ == "__main__":
    net = load()
    size = ARCH["image_size"]
    if ARCH["task"] == "detection":
        print(net([torch.rand(3, size, size)]))
    else:
        print(net(torch.rand(1, 3, size, size)).shape)
'''
