"""Tiny fake InsightFace-style ONNX models, built with the ``onnx`` package: the wiring tests of
the InsightFace packs (``tests/test_insightface_wiring.py``) and the 512-d scale benchmark
(``scripts/bench/scale.py --dim 512``, which only needs a loadable 512-d pack: its gallery is
synthetic and it searches by enrolled face id) use them. They check WIRING, NOT ACCURACY.

* The fake SCRFD-style detector has insightface's 9-output layout for 3 strides (8, 16, 32) with
  2 anchors per location and 5 keypoints. Only stride 32 can fire: the score of a 32x32 cell is
  ReLU(mean of the normalised pixels), so a bright square that fills exactly one cell on a black
  background scores ~1 (white) or ~0.75 (light grey), and every other cell scores 0. Box/keypoint
  distances are ``(1.5 - score) * constants``; keypoints are the ArcFace template scaled into the box.
* The fake ArcFace-style recogniser takes 1x3x112x112 and returns a ``dim``-d vector: a fixed
  random linear projection of the 8x8-average-pooled crop.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 17
IR_VERSION = 8
STRIDES = (8, 16, 32)
BOX_HALF = 1.5  # box half-size in stride units at factor 1
#: ArcFace 112x112 landmark template (insightface.utils.face_align.arcface_dst)
ARCFACE_DST = np.array([[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366],
                        [41.5493, 92.3655], [70.7299, 92.2041]], dtype=np.float32)
# keypoint offsets in stride units at factor 1: template mapped onto the box [-BOX_HALF, BOX_HALF]
KPS_OFFSETS = ((ARCFACE_DST - 56.0) / 112.0 * (2 * BOX_HALF)).reshape(-1)


# -- fake models ------------------------------------------------------------------------------

def _const(name: str, arr: Any) -> onnx.NodeProto:
    return helper.make_node("Constant", [], [name], name=f"c_{name}",
                            value=numpy_helper.from_array(np.asarray(arr, dtype=np.float32), name))


def _save(model: onnx.ModelProto, path: Path) -> Path:
    model.ir_version = IR_VERSION
    onnx.checker.check_model(model)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path


def make_fake_scrfd(path: Path) -> Path:
    """9 outputs (scores, bboxes, kps for strides 8/16/32), 2 anchors, dynamic HxW input."""
    nodes = [
        helper.make_node("ReduceMean", ["input.1"], ["gray"], name="gray", axes=[1], keepdims=1),
        _const("one_half", [1.5]),
        _const("box_unit", [BOX_HALF] * 4),
        _const("kps_unit", KPS_OFFSETS),
    ]
    for k in (1, 4, 10):  # Reshape targets (int64): one row per anchor
        nodes.append(helper.make_node("Constant", [], [f"shape_{k}"], name=f"c_shape_{k}",
                                      value=numpy_helper.from_array(np.array([-1, k], np.int64), f"shape_{k}")))
    outputs: dict[str, list[Any]] = {"score": [], "bbox": [], "kps": []}
    for s in STRIDES:
        gain = 1.0 if s == 32 else 0.0  # only stride 32 can fire
        nodes += [
            _const(f"gain{s}", [gain]),
            helper.make_node("AveragePool", ["gray"], [f"pool{s}"], name=f"pool{s}",
                             kernel_shape=[s, s], strides=[s, s]),
            helper.make_node("Relu", [f"pool{s}"], [f"relu{s}"], name=f"relu{s}"),
            helper.make_node("Mul", [f"relu{s}", f"gain{s}"], [f"sc{s}"], name=f"gainmul{s}"),
            # NCHW (1,1,h,w) -> NHWC (1,h,w,1): row-major over (y, x) like SCRFD's anchor centres
            helper.make_node("Transpose", [f"sc{s}"], [f"scT{s}"], name=f"tr{s}", perm=[0, 2, 3, 1]),
            helper.make_node("Sub", ["one_half", f"scT{s}"], [f"fac{s}"], name=f"fac{s}"),
            helper.make_node("Mul", [f"fac{s}", "box_unit"], [f"box{s}"], name=f"boxmul{s}"),
            helper.make_node("Mul", [f"fac{s}", "kps_unit"], [f"kp{s}"], name=f"kpsmul{s}"),
        ]
        for kind, src, width in (("score", f"scT{s}", 1), ("bbox", f"box{s}", 4), ("kps", f"kp{s}", 10)):
            # two anchors per location: duplicate along the last axis, then one row per anchor
            nodes += [
                helper.make_node("Concat", [src, src], [f"{kind}2_{s}"], name=f"cat_{kind}{s}", axis=3),
                helper.make_node("Reshape", [f"{kind}2_{s}", f"shape_{width}"], [f"{kind}_{s}"],
                                 name=f"rs_{kind}{s}"),
            ]
            outputs[kind].append(helper.make_tensor_value_info(f"{kind}_{s}", TensorProto.FLOAT, [None, width]))
    graph = helper.make_graph(
        nodes, "fake_scrfd",
        [helper.make_tensor_value_info("input.1", TensorProto.FLOAT, [1, 3, "height", "width"])],
        outputs["score"] + outputs["bbox"] + outputs["kps"],
    )
    return _save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)]), path)


def make_fake_arcface(path: Path, dim: int = 512, seed: int = 0) -> Path:
    """1x3x112x112 -> 1 x dim: fixed random projection of the 8x8-average-pooled crop."""
    rng = np.random.default_rng(seed)
    weight = rng.standard_normal((3 * 14 * 14, dim)).astype(np.float32)
    nodes = [
        helper.make_node("AveragePool", ["input.1"], ["pooled"], name="pool", kernel_shape=[8, 8], strides=[8, 8]),
        helper.make_node("Flatten", ["pooled"], ["flat"], name="flatten", axis=1),
        helper.make_node("MatMul", ["flat", "proj_w"], ["683"], name="proj"),
    ]
    graph = helper.make_graph(
        nodes, "fake_arcface",
        [helper.make_tensor_value_info("input.1", TensorProto.FLOAT, [1, 3, 112, 112])],
        [helper.make_tensor_value_info("683", TensorProto.FLOAT, [1, dim])],
        initializer=[numpy_helper.from_array(weight, "proj_w")],
    )
    return _save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)]), path)


def make_pack(folder: Path, dim: int = 512, seed: int = 0) -> Path:
    """A pack folder (``det_500m.onnx`` + ``w600k_mbf.onnx``), as ``buffalo_s`` lays its files out."""
    make_fake_scrfd(folder / "det_500m.onnx")
    make_fake_arcface(folder / "w600k_mbf.onnx", dim=dim, seed=seed)
    return folder
