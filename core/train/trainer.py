"""The training loop over any graph with a loss node.

The trainer feeds mini-batches into the graph's input nodes whose role is
``"features"`` and ``"target"``, runs the executor forward and backward, and
lets an optimizer update every trainable tensor in place. Progress goes to
plain-Python callbacks (the app turns them into Qt signals); :meth:`Trainer.cancel`
and :meth:`Trainer.pause` are thread-safe, so the loop can run on a worker thread.

Non-finite numbers are caught cheaply: the loss and the global gradient norm
are checked after every batch; when one is NaN or Inf the batch is replayed
(same weights, same dropout masks) with per-node checks, and training stops
with a :class:`~core.errors.NonFiniteError` naming the first bad node.

Example
-------
>>> from core.data.datasets import ArrayDataset
>>> from core.graph import Graph
>>> import numpy as np
>>> g = Graph("float32")
>>> x = g.add("input", name="x", shape=(None, 2), role="features")
>>> t = g.add("input", name="t", shape=(None,), role="target")
>>> w = g.add("parameter", name="W", shape=(2, 2), init="zeros")
>>> loss = g.add("softmax_cross_entropy", g.add("matmul", x, w), t, name="loss")
>>> g.set_loss(loss)
>>> data = ArrayDataset(np.array([[1, 0], [0, 1]] * 8, "float32"), np.array([0, 1] * 8))
>>> tr = Trainer(g, make_optimizer("sgd", lr=1.0), batch_size=4)
>>> result = tr.fit(data, epochs=5)
>>> result.status, tr.evaluate(data).accuracy
('completed', 1.0)
"""

from __future__ import annotations

import math
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np

from core.errors import DataError, GraphError, NonFiniteError
from core.executor import Executor
from core.graph import Graph
from core.kernels.backend import array_module, resolve_device, to_device, to_numpy
from core.ops.functional import sigmoid, softmax
from core.train.checkpoint import (
    apply_graph_arrays,
    augment_record,
    check_graph_arrays,
    describe_augment,
    optimizer_from_checkpoint,
    read_checkpoint,
    write_checkpoint,
)
from core.train.metrics import Evaluation, classification_report
from core.train.optim import Optimizer, global_norm, make_optimizer
from core.train.schedules import Constant, Schedule


# ------------------------------------------------------------ reports
@dataclass
class BatchInfo:
    """Sent to ``on_batch`` after every optimizer step.

    ``grad_norms`` maps ``"node.weight"`` (or a parameter node's name) to the
    L2 norm of its gradient; ``grad_norm`` is the global norm before clipping.
    """

    epoch: int
    batch: int
    batches: int
    iteration: int
    loss: float
    accuracy: float
    lr: float
    grad_norm: float
    grad_norms: dict
    samples: int
    seconds: float  # since the start of the epoch
    images_per_second: float


@dataclass
class EpochInfo:
    """Sent to ``on_epoch`` after every epoch (validation figures are NaN without data)."""

    epoch: int
    train_loss: float
    train_accuracy: float
    val_loss: float = float("nan")
    val_accuracy: float = float("nan")
    lr: float = 0.0
    seconds: float = 0.0
    images_per_second: float = 0.0

    def to_dict(self) -> dict:
        return {k: (None if isinstance(v, float) and not math.isfinite(v) else v)
                for k, v in self.__dict__.items()}


@dataclass
class FitResult:
    """What :meth:`Trainer.fit` ended with.

    ``status`` is ``"completed"``, ``"cancelled"``, ``"early_stopped"`` or
    ``"max_iterations"``.
    """

    status: str
    epochs: int
    iterations: int
    history: list = field(default_factory=list)
    best_epoch: int | None = None
    seconds: float = 0.0


class EarlyStopping:
    """Stop when ``monitor`` has not improved by ``min_delta`` for ``patience`` epochs.

    ``monitor`` is ``"val_loss"`` (lower is better) or ``"val_accuracy"``
    (higher is better); without validation data the training figures are used.
    With ``restore_best`` the weights of the best epoch are put back at the end.
    """

    def __init__(self, monitor: str = "val_loss", patience: int = 3, min_delta: float = 0.0,
                 restore_best: bool = True):
        if monitor not in ("val_loss", "val_accuracy", "train_loss", "train_accuracy"):
            raise ValueError(f"cannot monitor '{monitor}'")
        self.monitor, self.patience = monitor, int(patience)
        self.min_delta, self.restore_best = float(min_delta), bool(restore_best)
        self.best = None
        self.best_epoch = None
        self.wait = 0
        self.best_tensors = None

    def value(self, info: EpochInfo) -> float:
        v = getattr(info, self.monitor)
        if not math.isfinite(v) and self.monitor.startswith("val_"):
            v = getattr(info, self.monitor.replace("val_", "train_"))
        return v

    def state(self) -> dict:
        """Progress to save in a checkpoint (JSON-ready; the best weights are not kept)."""
        best = self.best if self.best is None or math.isfinite(self.best) else None
        return {"monitor": self.monitor, "best": best, "best_epoch": self.best_epoch,
                "wait": self.wait}

    def load_state(self, state: dict):
        """Continue from :meth:`state` of an earlier run (same monitor only)."""
        if state.get("monitor") != self.monitor:
            return
        best = state.get("best")
        self.best = None if best is None else float(best)
        self.best_epoch = state.get("best_epoch")
        self.wait = int(state.get("wait", 0))

    def update(self, info: EpochInfo, tensors) -> bool:
        """Record one epoch; ``True`` when training should stop."""
        v = self.value(info)
        sign = -1.0 if self.monitor.endswith("loss") else 1.0
        if self.best is None or sign * (v - self.best) > self.min_delta:
            self.best, self.best_epoch, self.wait = v, info.epoch, 0
            if self.restore_best:
                self.best_tensors = tensors()
            return False
        self.wait += 1
        return self.wait >= self.patience


# ------------------------------------------------------------ helpers
def find_role(graph: Graph, role: str):
    """The single input node with ``role`` (``"features"`` or ``"target"``), or ``None``."""
    found = [n for n in graph.order() if n.op_id == "input" and n.params.get("role") == role]
    if len(found) > 1:
        names = ", ".join(f"'{n.name}'" for n in found)
        raise GraphError(f"the graph has several {role} inputs ({names}); keep one",
                         nodes=tuple(n.name for n in found))
    return found[0] if found else None


class Trainer:
    """Train a graph by mini-batch gradient descent.

    Parameters
    ----------
    graph : Graph
        Needs a loss node (``graph.loss`` or ``loss=``), an input with role
        ``"features"`` and, for supervised losses, one with role ``"target"``.
    optimizer : Optimizer, optional
        Default: SGD with learning rate 0.01.
    schedule : Schedule, optional
        Sets ``optimizer.lr`` before every batch (default: constant at the optimizer's rate).
    batch_size : int
    seed : int
        Seeds initialization, shuffling (per epoch), augmentation and dropout.
    loss : node name or id, optional
        Overrides ``graph.loss``.
    augment : callable, optional
        ``augment(x_batch, rng) -> x_batch`` applied to training batches (see
        :class:`core.data.datasets.Augment`).
    grad_norms : bool
        Report per-tensor gradient norms to ``on_batch``.
    device : str, optional
        ``"cpu"``, ``"cuda"`` or ``"auto"`` (CUDA when it can run here, else the CPU);
        ``None`` reads ``$BACKPROP_STUDIO_DEVICE`` (default ``"cpu"``). Asking for CUDA
        where it cannot run is a :class:`~core.kernels.backend.DeviceError`. On CUDA
        the weights, layer state, optimizer buffers and data stay on the device while
        :meth:`fit` or :meth:`evaluate` runs and come back to the host when it returns;
        :attr:`device` is the device chosen.
    """

    def __init__(self, graph: Graph, optimizer: Optimizer | None = None,
                 schedule: Schedule | None = None, *, batch_size: int = 64, seed: int = 0,
                 loss=None, augment=None, grad_norms: bool = True, device: str | None = None):
        if batch_size < 1:
            raise ValueError(f"batch size must be ≥ 1; got {batch_size}")
        self.graph = graph
        loss = loss if loss is not None else graph.loss
        if loss is None:
            raise GraphError("the graph has no loss node: choose one to train (set_loss)")
        self.loss_node = graph.node(loss)
        self.features = find_role(graph, "features")
        self.target = find_role(graph, "target")
        if self.features is None:
            raise GraphError("the graph has no input with role 'features' to feed data into")
        self.optimizer = optimizer or make_optimizer("sgd", lr=0.01)
        self.schedule = schedule or Constant(self.optimizer.lr)
        self.batch_size = int(batch_size)
        self.seed = int(seed)
        self.augment = augment
        self.report_grad_norms = grad_norms
        self.device = device = resolve_device(device)
        self._placed = False  # the graph's arrays are on the device (see _on_device)
        self._device_sets: dict = {}  # id(data set) -> (data set, its copy on the device)
        self.epoch = 0        # completed epochs
        self.iteration = 0    # optimizer steps done
        self.history: list = []
        self.extra_meta: dict = {}  # saved with checkpoints (data normalization, …)
        self._stopper: EarlyStopping | None = None  # the one fit() uses, saved with checkpoints
        self._early_state: dict | None = None       # loaded from a checkpoint for the next fit
        self._cancel = threading.Event()
        self._running = threading.Event()
        self._running.set()
        self._train_ex = Executor(graph, training=True, seed=self.seed, check_finite=False,
                                  input_grads=False, device=device, all_outputs=False)
        self._eval_ex = Executor(graph, training=False, seed=self.seed, check_finite=False,
                                 input_grads=False, device=device, all_outputs=False)
        self._scores = self._find_scores()
        graph.initialize(self.seed)

    # ------------------------------------------------------- control
    def cancel(self):
        """Ask the loop to stop after the current batch (thread-safe)."""
        self._cancel.set()
        self._running.set()

    def pause(self):
        """Hold the loop before the next batch until :meth:`resume` (thread-safe)."""
        self._running.clear()

    def resume(self):
        self._running.set()

    @property
    def paused(self) -> bool:
        return not self._running.is_set()

    @property
    def has_scores(self) -> bool:
        """True when the loss has a prediction input, so accuracy and evaluation can be read."""
        return self._scores is not None

    # -------------------------------------------------------- graph
    def _find_scores(self):
        """(node id, port, kind) of the loss's prediction input; kind sets how to read it."""
        ln = self.loss_node
        edges = self.graph.in_edges(ln)
        target_id = self.target.id if self.target is not None else None
        for port in ln.input_ports:
            e = edges.get(port)
            if e is None or e.src == target_id:
                continue
            kind = ln.op.score_kind() or "scores"
            src = self.graph.nodes[e.src]
            return e.src, src.output_ports.index(e.src_port), kind
        return None

    def _score_source(self):
        """``(node id, port, kind)`` of the predictions, or a clear error if there are none."""
        if self._scores is None:
            raise GraphError(f"cannot tell which input of the loss '{self.loss_node.name}' "
                             "holds the predictions", nodes=(self.loss_node.name,))
        return self._scores

    def _probs(self, scores):
        """Per-class probabilities (N, C) or P(class 1) (N,) from the prediction input."""
        kind = self._scores[2]
        xp = array_module(scores)
        s = np.asarray(scores, dtype=np.float64) if xp is np else scores.astype(np.float64)
        if kind == "logits":
            # scores that overflowed give NaN here, which the callers report by name
            with np.errstate(invalid="ignore", over="ignore"):
                return softmax(s.reshape(len(s), -1))
        if kind == "log_probs":
            return xp.exp(s.reshape(len(s), -1))
        if kind == "logit":
            return sigmoid(s.reshape(len(s)))
        s = s.reshape(len(s), -1)
        return s[:, 0] if s.shape[1] == 1 else s

    @staticmethod
    def _labels(y):
        xp = array_module(y)
        y = np.asarray(y) if xp is np else y
        if y.ndim >= 2 and y.shape[-1] > 1:  # one-hot targets
            return y.reshape(len(y), -1).argmax(axis=1)
        return xp.rint(y.reshape(len(y))).astype(np.int64)

    def _batch_accuracy(self, scores, y):
        if self._scores is None or self.target is None:
            return float("nan")
        if self._scores[2] in ("logits", "log_probs"):
            # softmax and exp keep the order of the scores: the largest is the prediction
            s = np.asarray(scores) if array_module(scores) is np else scores
            pred = s.reshape(len(s), -1).argmax(axis=1)
        else:
            p = self._probs(scores)
            pred = (p >= 0.5).astype(np.int64) if p.ndim == 1 else p.argmax(axis=1)
        return float((pred == self._labels(y)).mean())

    def _feeds(self, xb, yb):
        shape = self.features.params.get("shape") or ()
        on_cpu = array_module(xb) is np
        x = np.asarray(xb, dtype=self.graph.dtype) if on_cpu else xb.astype(
            self.graph.dtype, copy=False)
        if len(shape) > 1 and all(d is not None for d in shape[1:]):
            want = tuple(shape[1:])
            if x.shape[1:] != want:
                if int(np.prod(x.shape[1:])) != int(np.prod(want)):
                    raise DataError(f"input '{self.features.name}' takes samples of shape "
                                    f"{want}; the data has {x.shape[1:]}")
                x = x.reshape((len(x),) + want)
        feeds = {self.features.name: x}
        if self.target is not None:
            tshape = self.target.params.get("shape") or ()
            y = np.asarray(yb) if array_module(yb) is np else yb
            if len(tshape) == 2 and tshape[1] == 1 and y.ndim == 1:
                y = y.reshape(-1, 1)
            feeds[self.target.name] = y
        return feeds

    def tensors(self) -> dict:
        """``(node_id, weight or None) -> array`` of every trainable tensor (live arrays)."""
        out = {}
        for node, w in self.graph.trainable():
            arr = node.value if w is None else node.weights.get(w)
            if arr is not None:
                out[(node.id, w)] = arr
        return out

    # ------------------------------------------------------- device
    def _move_arrays(self, move):
        """Every array the run updates or reads each batch, replaced by ``move(array)``."""
        for node in self.graph.nodes.values():
            if node.value is not None and type(node.op).source and hasattr(node.value, "dtype"):
                node.value = move(node.value)
            node.weights.update({k: move(v) for k, v in node.weights.items()})
            node.state.update({k: move(v) for k, v in node.state.items()})
        for bufs in self.optimizer.state.values():
            bufs.update({k: move(v) for k, v in bufs.items()})

    def _place(self):
        """Put the graph's arrays on the trainer's device (once; no-op on the CPU)."""
        if self.device != "cpu" and not self._placed:
            self._move_arrays(lambda a: to_device(a, self.device))
            self._placed = True

    def to_host(self):
        """Bring the graph's arrays back to host memory after :meth:`train_step` on a device.

        :meth:`fit`, :meth:`evaluate` and :meth:`predict` do this themselves when they end.
        """
        if self._placed:
            self._move_arrays(to_numpy)
            self._placed = False

    @contextmanager
    def _on_device(self):
        """The arrays on the device while it lasts, back on the host after (if it moved them)."""
        owner = not self._placed
        self._place()
        try:
            yield
        finally:
            if owner:
                self.to_host()

    def _data_on_device(self, data):
        """``data`` as the batches are cut from: on the device, copied there once per data set."""
        if self.device == "cpu":
            return data
        key = id(data)
        if key not in self._device_sets or self._device_sets[key][0] is not data:
            self._device_sets[key] = (data, data.to_device(self.device, self.graph.dtype))
        return self._device_sets[key][1]

    def _label(self, key) -> str:
        node = self.graph.nodes[key[0]]
        return node.name if key[1] is None else f"{node.name}.{key[1]}"

    def _gradients(self, ex) -> dict:
        grads = {}
        for node, w in self.graph.trainable():
            g = ex.grads.get((node.id, 0)) if w is None else ex.weight_grads.get((node.id, w))
            if g is not None:
                grads[(node.id, w)] = g
        return grads

    # -------------------------------------------------------- steps
    def train_step(self, xb, yb, lr: float | None = None) -> BatchInfo:
        """One forward/backward pass and optimizer update on a batch; returns its report."""
        self._place()
        ex = self._train_ex
        feeds = self._feeds(xb, yb)
        ex.run(feeds, loss=self.loss_node.id)
        loss = float(to_numpy(ex.values[(self.loss_node.id, 0)]).reshape(-1)[0])
        grads = self._gradients(ex)
        per_tensor = [] if self.report_grad_norms else None
        gnorm = global_norm(grads.values(), per_tensor)
        norms = {self._label(k): n for k, n in zip(grads, per_tensor or ())}
        if not (math.isfinite(loss) and math.isfinite(gnorm)):
            self._locate_non_finite(feeds)
        if lr is not None:
            self.optimizer.lr = lr
        self.optimizer.step(self.tensors(), grads, grad_norm=gnorm)
        self.iteration += 1
        acc = float("nan")
        if self._scores is not None:
            nid, k, _ = self._scores
            acc = self._batch_accuracy(ex.values[(nid, k)], yb)
        return BatchInfo(self.epoch, 0, 0, self.iteration, loss, acc, self.optimizer.lr,
                         gnorm, norms, len(xb), 0.0, 0.0)

    def _locate_non_finite(self, feeds):
        """Replay the failed batch with per-node checks to name the first bad node."""
        ex = self._train_ex
        ex.iteration -= 1  # same dropout masks as the failed run
        ex.check_finite = True
        try:
            ex.run(feeds, loss=self.loss_node.id)
        except NonFiniteError as exc:
            raise NonFiniteError(exc.node, exc.phase,
                                 f"training stopped at epoch {self.epoch + 1}, "
                                 f"step {self.iteration + 1}; "
                                 + str(exc).split(": ", 1)[-1]) from None
        finally:
            ex.check_finite = False
        # every node was finite on replay: the loss itself is the place to look
        raise NonFiniteError(self.loss_node.name, "forward",
                             f"training stopped at epoch {self.epoch + 1}, "
                             f"step {self.iteration + 1}")

    # ---------------------------------------------------------- fit
    def fit(self, train, val=None, epochs: int = 1, *, on_batch=None, on_epoch=None,
            early_stopping: EarlyStopping | None = None, checkpoint=None,
            max_iterations: int | None = None) -> FitResult:
        """Train until ``epochs`` epochs are complete (counting epochs already done).

        Parameters
        ----------
        train, val : ArrayDataset
            Training data and optional validation data.
        epochs : int
            Total number of epochs; a resumed trainer continues from :attr:`epoch`.
        on_batch : callable, optional
            ``on_batch(BatchInfo)`` after each optimizer step.
        on_epoch : callable, optional
            ``on_epoch(EpochInfo)`` after each epoch.
        early_stopping : EarlyStopping, optional
        checkpoint : path, optional
            Saved after every epoch (atomically) for :meth:`load_checkpoint`.
        max_iterations : int, optional
            Stop after this many optimizer steps in total.
        """
        self._cancel.clear()
        if early_stopping is not None and self._early_state:
            early_stopping.load_state(self._early_state)
        self._early_state = None
        self._stopper = early_stopping
        with self._on_device():
            return self._fit(train, val, epochs, on_batch, on_epoch, early_stopping, checkpoint,
                             max_iterations)

    def _fit(self, train, val, epochs, on_batch, on_epoch, early_stopping, checkpoint,
             max_iterations) -> FitResult:
        start = time.perf_counter()
        status = "completed"
        while self.epoch < epochs and status == "completed":
            status, einfo = self._train_epoch(train, on_batch, max_iterations)
            if status != "completed":
                break
            if val is not None and len(val):
                ev = self.evaluate(val)
                einfo.val_loss, einfo.val_accuracy = ev.loss, ev.accuracy
            self.epoch += 1
            monitor = einfo.val_loss if math.isfinite(einfo.val_loss) else einfo.train_loss
            self.schedule.observe(monitor)
            self.history.append(einfo.to_dict())
            stop = False
            if early_stopping is not None:
                stop = early_stopping.update(einfo, self.snapshot)
            if checkpoint is not None:
                self.save_checkpoint(checkpoint)
            if on_epoch is not None:
                on_epoch(einfo)
            if stop:
                status = "early_stopped"
        if early_stopping is not None and early_stopping.restore_best \
                and early_stopping.best_tensors is not None and status == "early_stopped":
            self.restore(early_stopping.best_tensors)
        return FitResult(status, self.epoch, self.iteration, list(self.history),
                         early_stopping.best_epoch if early_stopping else None,
                         time.perf_counter() - start)

    def _train_epoch(self, train, on_batch, max_iterations) -> tuple:
        """One pass over ``train``: ``(status, EpochInfo of the training figures or None)``.

        The status is ``"completed"`` unless the run was cancelled or reached
        ``max_iterations`` during the pass (then no epoch figures are given).
        """
        t0 = time.perf_counter()
        batches = train.batch_count(self.batch_size)
        shuffle_rng = np.random.default_rng([self.seed, self.epoch])
        aug_rng = np.random.default_rng([self.seed, self.epoch, 1])
        sum_loss = sum_correct = 0.0
        seen = 0
        source = self._data_on_device(train)
        for b, (xb, yb) in enumerate(source.batches(self.batch_size, True, shuffle_rng)):
            if not self._running.is_set():
                self._running.wait()
            if self._cancel.is_set():
                return "cancelled", None
            if max_iterations is not None and self.iteration >= max_iterations:
                return "max_iterations", None
            lr = self.schedule.rate(self.epoch, b, batches)
            if self.augment is not None:
                xb = self.augment(xb, aug_rng)
            info = self.train_step(xb, yb, lr)
            n = len(xb)
            seen += n
            sum_loss += info.loss * n
            if math.isfinite(info.accuracy):
                sum_correct += info.accuracy * n
            dt = time.perf_counter() - t0
            info.batch, info.batches, info.seconds = b, batches, dt
            info.images_per_second = seen / dt if dt > 0 else 0.0
            if on_batch is not None:
                on_batch(info)
        seconds = time.perf_counter() - t0
        einfo = EpochInfo(self.epoch, sum_loss / max(seen, 1),
                          sum_correct / max(seen, 1) if self._scores is not None
                          else float("nan"),
                          lr=self.schedule.current, seconds=seconds,
                          images_per_second=seen / seconds if seconds > 0 else 0.0)
        return "completed", einfo

    def snapshot(self) -> dict:
        """Copies of every trainable tensor and layer state (for restoring the best epoch)."""
        snap = {("t",) + k: v.copy() for k, v in self.tensors().items()}
        for node in self.graph.nodes.values():
            for s, v in node.state.items():
                snap[("s", node.id, s)] = v.copy()
        return snap

    def restore(self, snap: dict):
        """Put back tensors saved by :meth:`snapshot` (in place)."""
        live = self.tensors()
        for key, v in snap.items():
            if key[0] == "t":
                live[key[1:]][...] = v
            else:
                self.graph.nodes[key[1]].state[key[2]] = v.copy()

    # ------------------------------------------------------ evaluate
    def predict(self, x, batch_size: int = 256):
        """Per-class probabilities for ``x`` (evaluation mode: no dropout, running BN)."""
        nid, k, _ = self._score_source()
        out = []
        with self._on_device():
            for start in range(0, len(x), batch_size):
                xb = x[start:start + batch_size]
                feeds = self._feeds(xb, np.zeros(len(xb)))
                self._eval_ex.forward(feeds)
                out.append(self._probs(to_numpy(self._eval_ex.values[(nid, k)])))
        return np.concatenate(out)

    def evaluate(self, data, batch_size: int = 256) -> Evaluation:
        """Loss, accuracy, confusion matrix, per-class P/R/F1 and one-vs-rest ROC/AUC.

        Batches of a few hundred keep memory low: a convolution's im2col buffer
        grows with the batch (1,000 images made the Keras CNN peak near 2 GB).
        """
        nid, k, _ = self._score_source()
        with self._on_device():
            probs, total = self._evaluate_batches(data, batch_size, nid, k)
        return classification_report(self._labels(data.y), np.concatenate(probs),
                                     total / max(len(data), 1))

    def _evaluate_batches(self, data, batch_size, nid, k) -> tuple:
        """Predicted probabilities per batch (on the host, for the report) and the summed loss."""
        probs, total = [], 0.0
        ex = self._eval_ex
        done = 0
        for xb, yb in self._data_on_device(data).batches(batch_size, shuffle=False):
            ex.forward(self._feeds(xb, yb))
            loss = float(to_numpy(ex.values[(self.loss_node.id, 0)]).reshape(-1)[0])
            if self.loss_node.params.get("reduction", "mean") != "mean":
                loss /= len(xb)
            total += loss * len(xb)
            p = self._probs(to_numpy(ex.values[(nid, k)]))
            if not np.all(np.isfinite(p)):
                # NaN predictions would count as class 0: a wrong accuracy with no error
                raise NonFiniteError(self.graph.nodes[nid].name, "forward",
                                     f"evaluating samples {done}-{done + len(xb) - 1} of "
                                     f"{data.name or 'the data'}; the weights overflow")
            done += len(xb)
            probs.append(p)
        return probs, total

    # --------------------------------------------------- checkpoints
    def save_checkpoint(self, path):
        """Save weights, layer state, optimizer state, schedule and progress to ``path``.

        One ``.npz`` (no pickle) holding the arrays and a JSON metadata string
        under ``meta.json``; written atomically.
        """
        meta = {
            "graph": self.graph.name,
            "dtype": self.graph.dtype,
            "nodes": {n.id: [n.name, n.op_id] for n in self.graph.nodes.values()},
            "epoch": self.epoch,
            "iteration": self.iteration,
            "executor_iteration": self._train_ex.iteration,
            "seed": self.seed,
            "batch_size": self.batch_size,
            # shuffling and augmentation draw from default_rng([seed, epoch(, 1)]) and
            # dropout from ([seed, node, executor_iteration]): these numbers are the RNG state
            "rng": {"shuffle": ["seed", "epoch"], "dropout": ["seed", "node",
                                                               "executor_iteration"]},
            "optimizer": {**self.optimizer.config(), "steps": self.optimizer.steps},
            "schedule": {"config": self.schedule.config(), "state": self.schedule.state()},
            "history": self.history,
            "augment": augment_record(self.augment),
            **({"early_stopping": self._stopper.state()} if self._stopper is not None else {}),
            **self.extra_meta,
        }
        write_checkpoint(path, self.graph, self.optimizer, meta)

    def load_checkpoint(self, path, optimizer: bool = True) -> dict:
        """Restore what :meth:`save_checkpoint` saved; returns the metadata.

        With ``optimizer=True`` the optimizer (its kind, settings and buffers)
        and the schedule are replaced by the saved ones, so training continues
        exactly where it stopped. Everything is checked before anything is
        changed: a bad checkpoint raises :class:`FileFormatError` and leaves the
        graph and the trainer as they were.
        """
        meta, arrays = read_checkpoint(path)
        self.to_host()  # the checkpoint's host arrays replace the graph's; placed again on use
        if "augment" in meta and meta["augment"] != augment_record(self.augment):
            raise DataError(f"{path}: {describe_augment(meta['augment'])} in the checkpoint "
                            f"but {describe_augment(augment_record(self.augment))} in this run; "
                            "resuming would silently continue a different run — use the "
                            "checkpoint's augmentation, or start a new run")
        check_graph_arrays(self.graph, arrays, meta, path)  # raises before anything changes
        new_opt = new_sched = None
        if optimizer:
            new_opt, new_sched = optimizer_from_checkpoint(self.graph, meta, arrays, path)
        early = meta.get("early_stopping")
        apply_graph_arrays(self.graph, arrays, meta, path)
        self.epoch = meta["epoch"]
        self.iteration = int(meta.get("iteration", 0))
        self._train_ex.iteration = int(meta.get("executor_iteration", 0))
        self.seed = int(meta.get("seed", self.seed))
        self._train_ex.seed = self._eval_ex.seed = self.seed
        history = meta.get("history", [])
        self.history = list(history) if isinstance(history, list) else []
        self._early_state = early
        if optimizer:
            self.optimizer, self.schedule = new_opt, new_sched
        return meta
