"""SFace run by onnxruntime: the shipped int8 file, dequantised into float32 weights at load time.

The recogniser ``face_recognition_sface_2021dec_int8bq.onnx`` (opset 21) stores every weight as
an int8 initializer behind a block-quantised ``DequantizeLinear`` node (often followed by a
``Reshape`` to the conv kernel's shape), and lists the stale names of the original float weights
as graph inputs. onnxruntime refuses the file as is (an input without a value), and running it
after dropping those inputs dequantises every weight on every call.

:func:`fold_sface_model` rewrites the model **in memory** (nothing is written to disk, no new
file is shipped): each ``DequantizeLinear`` whose inputs are initializers becomes a float32
initializer (``(q - zero_point) * scale``, blockwise along ``axis``), a ``Reshape`` of such a
constant with a constant shape is folded too, initializers and unused names are removed from the
graph inputs (so onnxruntime treats the weights as constants and can fuse Conv + BatchNorm), and
the batch dimension of the input and output is made symbolic so that several faces can be
embedded in one call. :func:`rewrite_prelu` then expresses each per-channel PRelu with ops that
onnxruntime runs inside its blocked conv layout (same function, much faster here).

Input of the network: ``cv2.dnn.blobFromImage(crop, 1.0, (112, 112), (0, 0, 0), swapRB=True)``
of the 112x112 crop aligned by OpenCV's ``FaceRecognizerSF.alignCrop``, exactly what
``FaceRecognizerSF.feature`` feeds its own dnn network; the output is the raw 128-d feature
(before L2 normalisation).
"""
from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from ...errors import DependencyError, ModelError

INPUT_SHAPE = (3, 112, 112)
FEATURE_DIM = 128
#: ``FACEDB_SFACE_THREADS``: onnxruntime intra-op threads (default: OpenCV's thread count,
#: which facedb's worker processes set to 1).
THREADS_ENV = "FACEDB_SFACE_THREADS"

_INSTALL_HINT = "pip install 'onnxruntime>=1.16' 'onnx>=1.14'"


def _import_onnx() -> tuple[Any, Any, Any]:
    try:
        import onnx
        from onnx import numpy_helper
    except ImportError as exc:
        raise DependencyError(f"onnx is not installed or broken ({exc}); run: {_INSTALL_HINT}") from None
    try:
        import onnxruntime
    except ImportError as exc:
        raise DependencyError(f"onnxruntime is not installed or broken ({exc}); run: {_INSTALL_HINT}") from None
    return onnx, numpy_helper, onnxruntime


def dequantize_blocked(q: np.ndarray, scale: np.ndarray, zero_point: np.ndarray | None,
                       axis: int = 1, block_size: int = 0) -> np.ndarray:
    """ONNX ``DequantizeLinear`` (opset 21) on constants: ``(q - zero_point) * scale`` in float32.

    * ``block_size > 0`` (blocked quantisation): ``scale``/``zero_point`` have ``q``'s shape
      except along ``axis``, where they hold ``ceil(q.shape[axis] / block_size)`` entries;
      entry ``j`` covers ``q``'s indices ``j*block_size .. (j+1)*block_size-1`` on that axis.
    * ``block_size == 0``: per-tensor (scalar ``scale``) or per-axis (1-D ``scale`` along ``axis``).
    """
    qa = np.asarray(q)
    s = np.asarray(scale, dtype=np.float32)
    z = np.zeros_like(s) if zero_point is None else np.asarray(zero_point).astype(np.float32)
    if z.shape != s.shape:
        raise ModelError(f"DequantizeLinear: zero point shape {z.shape} != scale shape {s.shape}")
    ax = axis % qa.ndim if qa.ndim else 0
    if block_size > 0:
        n = qa.shape[ax]
        n_blocks = -(-n // block_size)
        want = list(qa.shape)
        want[ax] = n_blocks
        if list(s.shape) != want:
            raise ModelError(f"DequantizeLinear: blocked scale shape {s.shape} does not fit data {qa.shape} "
                             f"(axis {ax}, block {block_size})")
        # (..., n) -> (..., n_blocks, block_size), the last block padded, then one broadcast pass
        qm = np.moveaxis(qa, ax, -1)
        pad = n_blocks * block_size - n
        if pad:
            qm = np.concatenate([qm, np.zeros(qm.shape[:-1] + (pad,), qm.dtype)], axis=-1)
        qb = qm.reshape(qm.shape[:-1] + (n_blocks, block_size)).astype(np.float32)  # a fresh array
        qb -= np.moveaxis(z, ax, -1)[..., None]  # in place: one float copy of the weights in all
        qb *= np.moveaxis(s, ax, -1)[..., None]
        out = qb.reshape(qm.shape)[..., :n]
        return np.ascontiguousarray(np.moveaxis(out, -1, ax), dtype=np.float32)
    qf = qa.astype(np.float32)
    if s.ndim == 1 and s.size > 1:
        shape = [1] * qf.ndim
        shape[ax] = s.size
        s, z = s.reshape(shape), z.reshape(shape)
    return ((qf - z) * s).astype(np.float32)


def fold_sface_model(model_bytes: bytes, batch: str | int = "N") -> Any:
    """The SFace ONNX model with its weights dequantised to float32 initializers (in memory).

    ``batch`` is the input/output batch dimension: a name (symbolic, any batch size) or an int.
    Raises ``ModelError`` when ``model_bytes`` is not this kind of model.
    """
    onnx, nh, _ = _import_onnx()
    try:
        model = onnx.load_model_from_string(model_bytes)
    except Exception as exc:
        raise ModelError(f"not an ONNX model ({type(exc).__name__}: {exc})") from None
    g = model.graph
    if not g.node:
        raise ModelError("not an ONNX model (empty graph)")
    inits = {t.name: t for t in g.initializer}
    consts: dict[str, np.ndarray] = {}  # folded float weights, by output name
    keep_nodes = []
    n_dq = n_reshape = 0
    for node in g.node:
        if node.op_type == "DequantizeLinear" and all(x in inits or x == "" for x in node.input):
            attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
            q = nh.to_array(inits[node.input[0]])
            s = nh.to_array(inits[node.input[1]])
            z = nh.to_array(inits[node.input[2]]) if len(node.input) > 2 and node.input[2] else None
            consts[node.output[0]] = dequantize_blocked(q, s, z, int(attrs.get("axis", 1)),
                                                        int(attrs.get("block_size", 0)))
            n_dq += 1
            continue
        if node.op_type == "Reshape" and node.input[0] in consts and node.input[1] in inits:
            src = consts[node.input[0]]
            # ONNX Reshape: 0 copies the input's dimension (allowzero=0), -1 is inferred.
            shape = [src.shape[i] if int(v) == 0 else int(v)
                     for i, v in enumerate(nh.to_array(inits[node.input[1]]).reshape(-1))]
            consts[node.output[0]] = src.reshape(shape)
            n_reshape += 1
            continue
        keep_nodes.append(node)
    if n_dq == 0:
        raise ModelError("no constant DequantizeLinear weights to fold: not the int8 SFace model")
    used = {x for n in keep_nodes for x in n.input} | {o.name for o in g.output}
    consts = {name: v for name, v in consts.items() if name in used}  # drop folded intermediates
    del g.node[:]
    g.node.extend(keep_nodes)
    new_inits = [t for t in g.initializer if t.name in used]
    new_inits += [nh.from_array(v, name) for name, v in consts.items()]
    del g.initializer[:]
    g.initializer.extend(new_inits)
    init_names = {t.name for t in new_inits}
    real_inputs = [i for i in g.input if i.name not in init_names and i.name in used]
    if len(real_inputs) != 1:
        raise ModelError(f"expected one image input after folding, found {[i.name for i in real_inputs]}")
    del g.input[:]
    g.input.extend(real_inputs)
    if len(g.output) != 1:
        raise ModelError(f"expected one output, found {len(g.output)}")
    image_input = g.input[0]  # (extend() copied the message: edit the graph's own)
    dims = [d.dim_value if d.HasField("dim_value") else None for d in image_input.type.tensor_type.shape.dim]
    if len(dims) != 4 or tuple(dims[1:]) != INPUT_SHAPE:
        raise ModelError(f"input shape {dims} is not (batch, 3, 112, 112): not the SFace recogniser")
    out_dims = [d.dim_value if d.HasField("dim_value") else None for d in g.output[0].type.tensor_type.shape.dim]
    if len(out_dims) != 2 or out_dims[1] != FEATURE_DIM:
        raise ModelError(f"output shape {out_dims} is not (batch, {FEATURE_DIM}): not the SFace recogniser")
    for vi in (image_input, g.output[0]):
        d0 = vi.type.tensor_type.shape.dim[0]
        if isinstance(batch, int):
            d0.dim_value = batch
        else:
            d0.dim_param = str(batch)
    # The intermediate shapes recorded in the file fix batch 1; onnxruntime infers them again.
    del g.value_info[:]
    leftover = [n.op_type for n in keep_nodes if n.op_type in ("DequantizeLinear", "QuantizeLinear")]
    if leftover:
        raise ModelError(f"{len(leftover)} quantisation nodes left after folding: unexpected model layout")
    return model


def rewrite_prelu(model: Any) -> int:
    """Replace each per-channel ``PRelu(x, s)`` (slope ``(C, 1, 1)``) by ops onnxruntime keeps in
    its blocked NCHWc conv layout; returns how many were rewritten. In place.

    ``PRelu(x) = x + (1 - s) * Relu(-x)``, computed as ``Add(x, Conv_dw1x1(Relu(Conv_dw1x1(x, -1)),
    1 - s))``: onnxruntime fuses the Relu and the Add into the two depthwise 1x1 convolutions, so
    no layout reorder surrounds each activation. onnxruntime's own PRelu is a generic broadcast
    kernel outside that layout (it took 40 % of the run time here). Same values up to float
    rounding (measured: about 1e-7 relative on the features).
    """
    onnx, nh, _ = _import_onnx()
    h = onnx.helper
    g = model.graph
    inits = {t.name: t for t in g.initializer}
    nodes, extra, n = [], [], 0
    for node in g.node:
        slope = inits.get(node.input[1]) if node.op_type == "PRelu" and len(node.input) == 2 else None
        dims = list(slope.dims) if slope is not None else []
        if slope is None or len(dims) != 3 or dims[1:] != [1, 1]:
            nodes.append(node)
            continue
        x, y = node.input[0], node.output[0]
        c = dims[0]
        s = nh.to_array(slope).astype(np.float32).reshape(c)
        p = f"{y}__prelu_"
        extra.append(nh.from_array(-np.ones((c, 1, 1, 1), np.float32), p + "neg_w"))
        extra.append(nh.from_array((1.0 - s).reshape(c, 1, 1, 1).astype(np.float32), p + "scale_w"))
        nodes += [
            h.make_node("Conv", [x, p + "neg_w"], [p + "neg"], name=p + "neg", group=c, kernel_shape=[1, 1]),
            h.make_node("Relu", [p + "neg"], [p + "relu"], name=p + "relu"),
            h.make_node("Conv", [p + "relu", p + "scale_w"], [p + "scaled"], name=p + "scale", group=c,
                        kernel_shape=[1, 1]),
            h.make_node("Add", [x, p + "scaled"], [y], name=p + "add"),
        ]
        n += 1
    del g.node[:]
    g.node.extend(nodes)
    used = {i for nd in nodes for i in nd.input}
    keep = [t for t in g.initializer if t.name in used] + extra
    del g.initializer[:]
    g.initializer.extend(keep)
    return n


def identity_model_bytes() -> bytes:
    """A tiny ONNX model (Identity on a 1x3x112x112 input): lets OpenCV build a
    ``FaceRecognizerSF`` used only for ``alignCrop`` without loading the real network (~0.5 s)."""
    onnx, _, _ = _import_onnx()
    h = onnx.helper
    x = h.make_tensor_value_info("data", onnx.TensorProto.FLOAT, [1, *INPUT_SHAPE])
    y = h.make_tensor_value_info("fc1", onnx.TensorProto.FLOAT, [1, *INPUT_SHAPE])
    graph = h.make_graph([h.make_node("Identity", ["data"], ["fc1"])], "align_only", [x], [y])
    model = h.make_model(graph, opset_imports=[h.make_opsetid("", 13)])
    model.ir_version = 7
    data: bytes = model.SerializeToString()
    return data


def default_threads() -> int:
    """``FACEDB_SFACE_THREADS`` if set, else OpenCV's thread count (1 in facedb's workers)."""
    env = os.environ.get(THREADS_ENV, "").strip()
    if env:
        try:
            n = int(env)
        except ValueError:
            raise ModelError(f"{THREADS_ENV}={env!r} is not an integer") from None
        return max(1, n)
    try:
        import cv2

        return max(1, int(cv2.getNumThreads()))
    except Exception:  # pragma: no cover - cv2 is a dependency
        return 1


class SFaceOrt:
    """The SFace recogniser on onnxruntime (CPUExecutionProvider). Not thread-safe.

    ``feature(crop)`` matches ``cv2.FaceRecognizerSF.feature(crop)``: the raw 128-d feature of an
    aligned 112x112 BGR crop, shape ``(1, 128)`` float32. ``features(crops)`` embeds several crops,
    ``max_batch`` per onnxruntime call (the batch dimension is symbolic after folding). The default
    is 1 because batching did not pay here: on one core, per face, batches of 2 / 4 / 8 / 16 took
    1.03 / 1.07 / 1.05 / 1.05 x the time of single calls (``scripts/bench/sface_embedder.py``).
    """

    def __init__(self, model_bytes: bytes, threads: int | None = None, max_batch: int = 1,
                 fast_prelu: bool = True) -> None:
        import cv2

        _, _, ort = _import_onnx()
        self._cv2 = cv2
        model = fold_sface_model(model_bytes)
        self.prelu_rewritten = rewrite_prelu(model) if fast_prelu else 0
        self.threads = default_threads() if threads is None else max(1, int(threads))
        self.max_batch = max(1, int(max_batch))
        so = ort.SessionOptions()
        so.intra_op_num_threads = self.threads
        so.inter_op_num_threads = 1
        so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        so.log_severity_level = 3
        # Idle pool threads must not spin between calls: detection (OpenCV) runs in between.
        so.add_session_config_entry("session.intra_op.allow_spinning", "0")
        try:
            self._sess = ort.InferenceSession(model.SerializeToString(), sess_options=so,
                                              providers=["CPUExecutionProvider"])
        except Exception as exc:
            raise ModelError(f"onnxruntime could not load the folded SFace model ({type(exc).__name__}: {exc})") from None
        self._input = self._sess.get_inputs()[0].name
        self._output = self._sess.get_outputs()[0].name

    def blob(self, crops: Sequence[np.ndarray]) -> np.ndarray:
        """NCHW float32 input for ``crops`` (RGB order, 0..255, no mean), as OpenCV's SFace feeds."""
        return self._cv2.dnn.blobFromImages(list(crops), 1.0, (112, 112), (0, 0, 0), swapRB=True, crop=False)

    def run_blob(self, blob: np.ndarray) -> np.ndarray:
        out: np.ndarray = self._sess.run([self._output], {self._input: blob})[0]
        return out

    def feature(self, crop: np.ndarray) -> np.ndarray:
        blob = self._cv2.dnn.blobFromImage(crop, 1.0, (112, 112), (0, 0, 0), swapRB=True, crop=False)
        return self.run_blob(blob)

    def features(self, crops: Sequence[np.ndarray]) -> np.ndarray:
        """Raw features ``(len(crops), 128)``, up to ``max_batch`` crops per onnxruntime call."""
        if not crops:
            return np.zeros((0, FEATURE_DIM), np.float32)
        out = [self.run_blob(self.blob(crops[i:i + self.max_batch])) for i in range(0, len(crops), self.max_batch)]
        return np.concatenate(out, axis=0)
