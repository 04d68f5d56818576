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

import io
import json
import math
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from core.errors import DataError, FileFormatError, GraphError, NonFiniteError
from core.executor import Executor
from core.graph import Graph
from core.train.metrics import Evaluation, classification_report
from core.train.optim import Optimizer, global_norm, make_optimizer
from core.train.schedules import Constant, Schedule, make_schedule

CHECKPOINT_FORMAT = "backprop-studio-checkpoint"
# 2: records whether (and how) training batches were augmented ("augment")
CHECKPOINT_VERSION = 2


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


def _softmax(z):
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def _sigmoid(z):
    return 0.5 * (1.0 + np.tanh(0.5 * z))


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
    """

    def __init__(self, graph: Graph, optimizer: Optimizer | None = None,
                 schedule: Schedule | None = None, *, batch_size: int = 64, seed: int = 0,
                 loss=None, augment=None, grad_norms: bool = True, device: str = "cpu"):
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
        self.device = device
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
            kind = {"softmax_cross_entropy": "logits", "nll": "log_probs"}.get(ln.op_id, "scores")
            if ln.op_id == "binary_cross_entropy":
                kind = "logit" if ln.params.get("from_logits") else "prob"
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
        s = np.asarray(scores, dtype=np.float64)
        if kind == "logits":
            return _softmax(s.reshape(len(s), -1))
        if kind == "log_probs":
            return np.exp(s.reshape(len(s), -1))
        if kind == "logit":
            return _sigmoid(s.reshape(len(s)))
        s = s.reshape(len(s), -1)
        return s[:, 0] if s.shape[1] == 1 else s

    @staticmethod
    def _labels(y):
        y = np.asarray(y)
        if y.ndim >= 2 and y.shape[-1] > 1:  # one-hot targets
            return y.reshape(len(y), -1).argmax(axis=1)
        return np.rint(y.reshape(len(y))).astype(np.int64)

    def _batch_accuracy(self, scores, y):
        if self._scores is None or self.target is None:
            return float("nan")
        if self._scores[2] in ("logits", "log_probs"):
            # softmax and exp keep the order of the scores: the largest is the prediction
            s = np.asarray(scores)
            pred = s.reshape(len(s), -1).argmax(axis=1)
        else:
            p = self._probs(scores)
            pred = (p >= 0.5).astype(np.int64) if p.ndim == 1 else p.argmax(axis=1)
        return float((pred == self._labels(y)).mean())

    def _feeds(self, xb, yb):
        shape = self.features.params.get("shape") or ()
        x = np.asarray(xb, dtype=self.graph.dtype)
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
            y = np.asarray(yb)
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
        ex = self._train_ex
        feeds = self._feeds(xb, yb)
        ex.run(feeds, loss=self.loss_node.id)
        loss = float(np.asarray(ex.values[(self.loss_node.id, 0)]).reshape(-1)[0])
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
        start = time.perf_counter()
        status = "completed"
        batches = train.batch_count(self.batch_size)
        while self.epoch < epochs and status == "completed":
            t0 = time.perf_counter()
            shuffle_rng = np.random.default_rng([self.seed, self.epoch])
            aug_rng = np.random.default_rng([self.seed, self.epoch, 1])
            sum_loss = sum_correct = 0.0
            seen = 0
            for b, (xb, yb) in enumerate(train.batches(self.batch_size, True, shuffle_rng)):
                if not self._running.is_set():
                    self._running.wait()
                if self._cancel.is_set():
                    status = "cancelled"
                    break
                if max_iterations is not None and self.iteration >= max_iterations:
                    status = "max_iterations"
                    break
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
            if status != "completed":
                break
            seconds = time.perf_counter() - t0
            einfo = EpochInfo(self.epoch, sum_loss / max(seen, 1),
                              sum_correct / max(seen, 1) if self._scores is not None
                              else float("nan"),
                              lr=self.schedule.current, seconds=seconds,
                              images_per_second=seen / seconds if seconds > 0 else 0.0)
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

    def snapshot(self) -> dict:
        """Copies of every trainable tensor and layer state (for restoring the best epoch)."""
        snap = {("t",) + k: v.copy() for k, v in self.tensors().items()}
        for node in self.graph.nodes.values():
            for s, v in node.state.items():
                snap[("s", node.id, s)] = np.copy(v)
        return snap

    def restore(self, snap: dict):
        """Put back tensors saved by :meth:`snapshot` (in place)."""
        live = self.tensors()
        for key, v in snap.items():
            if key[0] == "t":
                live[key[1:]][...] = v
            else:
                self.graph.nodes[key[1]].state[key[2]] = np.copy(v)

    # ------------------------------------------------------ evaluate
    def predict(self, x, batch_size: int = 256):
        """Per-class probabilities for ``x`` (evaluation mode: no dropout, running BN)."""
        nid, k, _ = self._score_source()
        out = []
        for start in range(0, len(x), batch_size):
            xb = x[start:start + batch_size]
            feeds = self._feeds(xb, np.zeros(len(xb)))
            self._eval_ex.forward(feeds)
            out.append(self._probs(self._eval_ex.values[(nid, k)]))
        return np.concatenate(out)

    def evaluate(self, data, batch_size: int = 256) -> Evaluation:
        """Loss, accuracy, confusion matrix, per-class P/R/F1 and one-vs-rest ROC/AUC.

        Batches of a few hundred keep memory low: a convolution's im2col buffer
        grows with the batch (1,000 images made the Keras CNN peak near 2 GB).
        """
        nid, k, _ = self._score_source()
        probs, total = [], 0.0
        ex = self._eval_ex
        done = 0
        for xb, yb in data.batches(batch_size, shuffle=False):
            ex.forward(self._feeds(xb, yb))
            loss = float(np.asarray(ex.values[(self.loss_node.id, 0)]).reshape(-1)[0])
            if self.loss_node.params.get("reduction", "mean") != "mean":
                loss /= len(xb)
            total += loss * len(xb)
            p = self._probs(ex.values[(nid, k)])
            if not np.all(np.isfinite(p)):
                # NaN predictions would count as class 0: a wrong accuracy with no error
                raise NonFiniteError(self.graph.nodes[nid].name, "forward",
                                     f"evaluating samples {done}-{done + len(xb) - 1} of "
                                     f"{data.name or 'the data'}; the weights overflow")
            done += len(xb)
            probs.append(p)
        return classification_report(self._labels(data.y), np.concatenate(probs),
                                     total / max(len(data), 1))

    # --------------------------------------------------- checkpoints
    def save_checkpoint(self, path):
        """Save weights, layer state, optimizer state, schedule and progress to ``path``.

        One ``.npz`` (no pickle) holding the arrays and a JSON metadata string
        under ``meta.json``; written atomically.
        """
        from core.serialize import atomic_write  # noqa: PLC0415 - avoid an import cycle

        arrays = graph_arrays(self.graph)
        for (slot, key), v in self.optimizer.state_arrays().items():
            arrays[f"optim/{slot}/{key[0]}/{key[1] or '-'}"] = v
        meta = {
            "format": CHECKPOINT_FORMAT,
            "version": CHECKPOINT_VERSION,
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
        arrays["meta.json"] = np.array(json.dumps(meta, allow_nan=False))
        buf = io.BytesIO()
        np.savez(buf, **arrays)
        atomic_write(path, buf.getvalue())

    def load_checkpoint(self, path, optimizer: bool = True) -> dict:
        """Restore what :meth:`save_checkpoint` saved; returns the metadata.

        With ``optimizer=True`` the optimizer (its kind, settings and buffers)
        and the schedule are replaced by the saved ones, so training continues
        exactly where it stopped. Everything is checked before anything is
        changed: a bad checkpoint raises :class:`FileFormatError` and leaves the
        graph and the trainer as they were.
        """
        meta, arrays = read_checkpoint(path)
        if "augment" in meta and meta["augment"] != augment_record(self.augment):
            raise DataError(f"{path}: {describe_augment(meta['augment'])} in the checkpoint "
                            f"but {describe_augment(augment_record(self.augment))} in this run; "
                            "resuming would silently continue a different run — use the "
                            "checkpoint's augmentation, or start a new run")
        check_graph_arrays(self.graph, arrays, meta, path)  # raises before anything changes
        new_opt = new_sched = None
        if optimizer:
            new_opt, new_sched = _optimizer_from_checkpoint(self.graph, meta, arrays, path)
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


def augment_record(augment):
    """What a checkpoint stores about the augmentation: ``None``, its settings, or its name."""
    if augment is None:
        return None
    if hasattr(augment, "to_dict"):
        return augment.to_dict()
    return {"callable": f"{type(augment).__module__}.{type(augment).__qualname__}"}


def describe_augment(record) -> str:
    """``record`` of :func:`augment_record` in words."""
    if record is None:
        return "no augmentation"
    if isinstance(record, dict) and "shift" in record and "rotation" in record:
        return f"augmentation (shift ±{record['shift']} px, rotation ±{record['rotation']}°)"
    return f"augmentation {record!r:.80}"


def _optimizer_from_checkpoint(graph: Graph, meta: dict, arrays: dict, path) -> tuple:
    """The optimizer (with its buffers) and schedule saved in a checkpoint, checked."""
    cfg = meta.get("optimizer")
    if not isinstance(cfg, dict) or not isinstance(cfg.get("name"), str):
        raise FileFormatError(path, "meta.json.optimizer", "missing or has no 'name'")
    cfg = dict(cfg)
    name, steps = cfg.pop("name"), cfg.pop("steps", 0)
    try:
        opt = make_optimizer(name, **cfg)
    except (TypeError, ValueError) as exc:
        raise FileFormatError(path, "meta.json.optimizer", str(exc)) from None
    if not isinstance(steps, int) or steps < 0:
        raise FileFormatError(path, "meta.json.optimizer.steps",
                              f"must be a whole number ≥ 0; got {steps!r}")
    sched = meta.get("schedule")
    if not isinstance(sched, dict) or not isinstance(sched.get("config"), dict) \
            or not isinstance(sched.get("state", {}), dict):
        raise FileFormatError(path, "meta.json.schedule", "missing or not {config, state}")
    try:
        schedule = make_schedule(sched["config"])
        schedule.load_state(sched.get("state", {}))
    except (TypeError, ValueError, KeyError) as exc:
        raise FileFormatError(path, "meta.json.schedule", str(exc)) from None
    shapes = {}
    for node, w in graph.trainable():
        key = f"value/{node.id}" if w is None else f"weights/{node.id}/{w}"
        if key in arrays:
            shapes[(node.id, w)] = arrays[key].shape
    state = {}
    dtype = np.dtype(graph.dtype)
    for key, v in arrays.items():
        if not key.startswith("optim/"):
            continue
        parts = key.split("/", 3)
        if len(parts) != 4 or parts[1] not in opt.slots:
            raise FileFormatError(path, key, f"not a state buffer of the {opt.name} optimizer")
        _, slot, nid, w = parts
        tkey = (nid, None if w == "-" else w)
        if tkey not in shapes:
            raise FileFormatError(path, key, "optimizer state for a tensor this graph does "
                                             "not train")
        if v.shape != shapes[tkey] or v.dtype.kind != "f":
            raise FileFormatError(path, key, f"optimizer state has shape {v.shape}; the "
                                             f"tensor has {shapes[tkey]}")
        if not np.all(np.isfinite(v)):
            raise FileFormatError(path, key, "optimizer state holds NaN or Inf; the "
                                             "checkpoint was saved from a diverged run")
        state[(slot, tkey)] = v.astype(dtype)
    opt.load_state(state, steps)
    return opt, schedule


def graph_arrays(graph: Graph) -> dict:
    """The arrays a checkpoint keeps: parameter values, layer weights and layer state."""
    arrays = {}
    for node in graph.nodes.values():
        if node.op_id == "parameter" and node.value is not None:
            arrays[f"value/{node.id}"] = node.value
        for w, v in node.weights.items():
            arrays[f"weights/{node.id}/{w}"] = np.asarray(v)
        for s, v in node.state.items():
            arrays[f"state/{node.id}/{s}"] = np.asarray(v)
    return arrays


# Limits on what a checkpoint may declare, checked from each member's .npy header before
# its data is read: far above any graph the studio trains, far below what would exhaust memory.
MAX_ARRAY_BYTES = 256 << 20
MAX_CHECKPOINT_BYTES = 1 << 30
MAX_META_BYTES = 16 << 20
MAX_META_DEPTH = 64
# members named by the format (besides meta.json); any other member is never read
ARRAY_KINDS = ("value", "weights", "state", "optim")


def _read_npz_member(zf, info, key: str, path, limit: int) -> np.ndarray:
    """One array of an open .npz, its size checked from the .npy header before reading.

    The header's shape × item size must be within ``limit`` and match the size
    the zip directory gives the member; object (pickled) data is refused.
    """
    import zipfile  # noqa: PLC0415
    import zlib  # noqa: PLC0415

    fmt = np.lib.format
    if info.file_size > limit + 4096:
        raise FileFormatError(path, key, f"member holds {info.file_size:,} bytes, more than the "
                                    f"{limit:,} a checkpoint array may have")
    try:
        with zf.open(info) as fh:
            try:
                version = fmt.read_magic(fh)
                if version == (1, 0):
                    shape, fortran, dtype = fmt.read_array_header_1_0(fh)
                elif version == (2, 0):
                    shape, fortran, dtype = fmt.read_array_header_2_0(fh)
                else:
                    raise ValueError(f"unsupported .npy format version {version}")
            except (zipfile.BadZipFile, OSError, EOFError, zlib.error):
                raise
            except Exception as exc:  # noqa: BLE001 - numpy parses the header text with
                # ast and tokenize, which raise SyntaxError, TokenError and others on garbage
                raise FileFormatError(path, key, f"the .npy header cannot be parsed "
                                                 f"({type(exc).__name__}: {exc})") from None
            header_len = fh.tell()
            if dtype.hasobject or dtype.fields is not None or dtype.kind == "V":
                raise FileFormatError(path, key, f"holds {dtype} records or Python objects; a "
                                            "checkpoint holds plain numbers (pickle is never "
                                            "loaded)")
            if any(d < 0 for d in shape):
                raise FileFormatError(path, key, f".npy header declares a negative dimension "
                                            f"{shape}")
            nbytes = math.prod(shape) * dtype.itemsize
            if nbytes > limit:
                raise FileFormatError(path, key, f".npy header declares shape {shape} of {dtype} "
                                            f"= {nbytes:,} bytes, more than the {limit:,} a "
                                            "checkpoint array may have")
            if header_len + nbytes != info.file_size:
                raise FileFormatError(path, key, f".npy header declares shape {shape} of {dtype} "
                                            f"= {nbytes:,} bytes of data, but the member "
                                            f"holds {info.file_size - header_len:,}; the "
                                            "file is truncated or corrupt")
            data = fh.read(nbytes)
            if len(data) != nbytes:
                raise FileFormatError(path, key, "member is cut short; the file is truncated")
            fh.read(1)  # reaching the end makes zipfile check the CRC
    except FileFormatError:
        raise
    except (ValueError, TypeError, OSError, EOFError, RuntimeError, NotImplementedError,
            zipfile.BadZipFile, zlib.error) as exc:
        raise FileFormatError(path, key, f"cannot be read ({exc}); the file is damaged or not a "
                                    "checkpoint") from None
    order = "F" if fortran and len(shape) > 1 else "C"
    arr = np.frombuffer(data, dtype=dtype).reshape(shape, order=order)
    return arr.astype(arr.dtype.newbyteorder("="), copy=True)


def _json_depth(value) -> int:
    """Deepest nesting of lists and objects in parsed JSON (walked without recursion)."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        v, depth = stack.pop()
        if isinstance(v, (list, dict)):
            deepest = max(deepest, depth)
            stack.extend((c, depth + 1) for c in (v.values() if isinstance(v, dict) else v))
    return deepest


def read_checkpoint(path) -> tuple:
    """``(metadata, arrays)`` of a checkpoint file; a clear error if it is not one.

    Only ``meta.json`` and the members the format names (``value/…``,
    ``weights/…``, ``state/…``, ``optim/…``) are read, each after its .npy
    header has been checked against :data:`MAX_ARRAY_BYTES` and the zip
    member's size; other members are never read. No pickle is ever loaded.
    """
    import zipfile  # noqa: PLC0415 - only needed to name a damaged archive

    path = Path(path)
    try:
        with open(path, "rb") as fh:
            head = fh.read(4)
    except FileNotFoundError:
        raise FileFormatError(path, "", "no such checkpoint file") from None
    except IsADirectoryError:
        raise FileFormatError(path, "", "is a folder, not a checkpoint file") from None
    except OSError as exc:
        raise FileFormatError(path, "", f"cannot be read ({exc.strerror or exc})") from None
    if head[:2] != b"PK":
        # np.load would read a lone .npy array or offer to unpickle other files
        raise FileFormatError(path, "", "not a checkpoint: not an .npz archive (checkpoints "
                                        "are the .npz files written by 'train --out')")
    try:
        zf = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError, EOFError, ValueError, NotImplementedError) as exc:
        raise FileFormatError(path, "", f"not a checkpoint: the .npz archive is damaged or "
                                        f"truncated ({exc}); save it again") from None
    with zf:
        members: dict = {}
        for info in zf.infolist():
            if not info.filename.endswith(".npy"):
                continue
            key = info.filename[:-4]
            if key != "meta.json" and key.split("/", 1)[0] not in ARRAY_KINDS:
                continue
            if key in members:
                raise FileFormatError(path, key, "appears twice in the archive")
            members[key] = info
        if "meta.json" not in members:
            raise FileFormatError(path, "meta.json", "missing: this .npz is not a "
                                                     "Backprop Studio checkpoint")
        raw = _read_npz_member(zf, members.pop("meta.json"), "meta.json", path,
                               MAX_META_BYTES)
        if raw.dtype.kind != "U" or raw.shape != ():
            raise FileFormatError(path, "meta.json", f"must be one text string; got {raw.dtype} "
                                                     f"{raw.shape}")
        total = sum(info.file_size for info in members.values())
        if total > MAX_CHECKPOINT_BYTES:
            raise FileFormatError(path, "", f"its arrays hold {total:,} bytes, more than the "
                                            f"{MAX_CHECKPOINT_BYTES:,} a checkpoint may have")
        arrays = {key: _read_npz_member(zf, info, key, path, MAX_ARRAY_BYTES)
                  for key, info in sorted(members.items())}
    deep = FileFormatError(path, "meta.json", f"nested more than {MAX_META_DEPTH} levels "
                                              "deep; this is not a checkpoint's metadata")
    try:
        meta = json.loads(str(raw))
    except json.JSONDecodeError as exc:
        raise FileFormatError(path, "meta.json", f"not valid JSON: {exc.msg}") from None
    except RecursionError:
        raise deep from None
    if _json_depth(meta) > MAX_META_DEPTH:
        raise deep
    if not isinstance(meta, dict):
        raise FileFormatError(path, "meta.json", "must be a JSON object; this file is not a "
                                                 "Backprop Studio checkpoint")
    if meta.get("format") != CHECKPOINT_FORMAT:
        raise FileFormatError(path, "meta.json.format", "not a Backprop Studio checkpoint")
    version = meta.get("version", 0)
    if not isinstance(version, int) or isinstance(version, bool):
        raise FileFormatError(path, "meta.json.version", f"must be an integer; got {version!r}")
    if version > CHECKPOINT_VERSION:
        raise FileFormatError(path, "meta.json.version",
                              f"written by a newer version ({version})")
    if version >= 2 and "augment" not in meta:
        raise FileFormatError(path, "meta.json.augment", "missing (a version 2 checkpoint "
                                                         "records its augmentation)")
    if "augment" in meta and not (meta["augment"] is None or isinstance(meta["augment"], dict)):
        raise FileFormatError(path, "meta.json.augment", "must be null or a JSON object; got "
                                                         f"{meta['augment']!r:.40}")
    for key in ("epoch", "iteration", "executor_iteration", "seed", "batch_size"):
        if key in meta or key == "epoch":
            v = meta.get(key)
            if not isinstance(v, int) or isinstance(v, bool) or v < 0:
                raise FileFormatError(path, f"meta.json.{key}",
                                      f"must be a whole number ≥ 0; got {v!r}")
    _check_meta_sections(meta, path)
    nodes = meta.get("nodes")
    if not isinstance(nodes, dict) or not all(
            isinstance(v, list) and len(v) == 2 and all(isinstance(s, str) for s in v)
            for v in nodes.values()):
        raise FileFormatError(path, "meta.json.nodes", "missing or not a map of node id to "
                                                       "[name, op]")
    return meta, arrays


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _check_meta_sections(meta: dict, path):
    """The structure of the sections a resume reads (history, early stopping, optimizer,
    schedule), so that no later step trips over a value of the wrong type."""
    history = meta.get("history", [])
    if not isinstance(history, list):
        raise FileFormatError(path, "meta.json.history", "must be a list of epoch records")
    for i, h in enumerate(history):
        if not isinstance(h, dict) or not all(v is None or _is_number(v) for v in h.values()):
            raise FileFormatError(path, f"meta.json.history[{i}]", "must be an object of "
                                                                  "numbers (or null)")
    early = meta.get("early_stopping")
    if early is not None:
        where = "meta.json.early_stopping"
        if not isinstance(early, dict):
            raise FileFormatError(path, where, "must be a JSON object")
        if not isinstance(early.get("monitor"), str):
            raise FileFormatError(path, where + ".monitor", "must be a name")
        for key, ok in (("best", lambda v: v is None or _is_number(v)),
                        ("best_epoch", lambda v: v is None or (isinstance(v, int)
                                                               and not isinstance(v, bool))),
                        ("wait", lambda v: isinstance(v, int) and not isinstance(v, bool)
                         and v >= 0)):
            if key in early and not ok(early[key]):
                raise FileFormatError(path, f"{where}.{key}", f"has the wrong type or value: "
                                                              f"{early[key]!r:.40}")
    opt = meta.get("optimizer")
    if opt is not None and (not isinstance(opt, dict) or not isinstance(opt.get("name"), str)):
        raise FileFormatError(path, "meta.json.optimizer", "must be an object with a 'name'")
    sched = meta.get("schedule")
    if sched is not None and (not isinstance(sched, dict)
                              or not isinstance(sched.get("config"), dict)
                              or not isinstance(sched.get("state", {}), dict)):
        raise FileFormatError(path, "meta.json.schedule", "must be an object {config, state}")


def _expected_value_shape(node) -> tuple:
    # the shape Graph.initialize gives a parameter node (unknown dimensions become 1)
    return tuple(d or 1 for d in node.params.get("shape", ()))


def check_graph_arrays(graph: Graph, arrays: dict, meta: dict, path=None) -> dict:
    """Check checkpoint arrays against ``graph`` without changing it.

    Returns ``{node_id: [(kind, name, array), …]}`` ready to apply. Every
    array must belong to a node of the same op with the shape the graph gives
    it, and every trainable tensor of the graph must be in the checkpoint;
    anything else is a :class:`FileFormatError` naming the array.
    """
    saved_nodes = meta.get("nodes", {})
    report = graph.infer_shapes()
    dtype = np.dtype(graph.dtype)
    plan: dict = {}
    for key in sorted(arrays):
        v = arrays[key]
        kind, _, rest = key.partition("/")
        if kind not in ("value", "weights", "state"):
            continue
        nid, _, name = rest.partition("/")
        saved = saved_nodes.get(nid)
        if saved is None:
            raise FileFormatError(path, key, f"node '{nid}' is not listed in meta.json.nodes")
        if nid not in graph.nodes:
            raise FileFormatError(path, key, f"node '{saved[0]}' ({saved[1]}) of the "
                                             "checkpoint is not in this graph; the checkpoint "
                                             "was trained on another graph")
        node = graph.nodes[nid]
        if node.op_id != saved[1]:
            raise FileFormatError(path, key, f"node '{saved[0]}' is a {saved[1]} in the "
                                             f"checkpoint but '{node.name}' is a {node.op_id} "
                                             "here; the checkpoint was trained on another "
                                             "graph")
        if v.dtype.kind not in "fiu":
            raise FileFormatError(path, key, f"holds {v.dtype} data, not numbers")
        if kind == "value":
            if node.op_id != "parameter":
                raise FileFormatError(path, key, f"node '{node.name}' ({node.op_id}) holds no "
                                                 "trained value")
            want = _expected_value_shape(node)
        else:
            # a weight has its own spec; a state buffer has the shape of the weight it is like
            op_cls = type(node.op)
            if kind == "weights":
                like = name if name in op_cls.weights else None
                missing = f"has no weight '{name}'"
            else:
                like = op_cls.state_like.get(name)
                missing = f"keeps no state '{name}'"
            if like is None:
                raise FileFormatError(path, key, f"'{node.name}' ({node.op_id}) {missing}")
            spec = (report.weights.get(nid) or {}).get(like)
            if spec is None:
                why = report.errors.get(nid, "its input shapes are unknown")
                what = "weight" if kind == "weights" else "state"
                raise FileFormatError(path, key, f"cannot check {what} '{name}' of "
                                                 f"'{node.name}': {why}")
            want = tuple(spec.shape)
        if tuple(v.shape) != want:
            what = {"value": "value", "weights": f"weight '{name}'", "state": f"state '{name}'"}
            raise FileFormatError(path, key, f"{what[kind]} of '{node.name}' has shape {want} "
                                             f"in this graph but {tuple(v.shape)} in the "
                                             "checkpoint; it was trained on another graph")
        if v.dtype.kind == "f" and not np.all(np.isfinite(v)):
            raise FileFormatError(path, key, "holds NaN or Inf; the checkpoint was saved from "
                                             "a diverged run")
        if kind != "state" or v.dtype.kind == "f":
            v = v.astype(dtype)
        plan.setdefault(nid, []).append((kind, name, v))
    for node, w in graph.trainable():
        key = f"value/{node.id}" if w is None else f"weights/{node.id}/{w}"
        if key not in arrays:
            what = "value" if w is None else f"weight '{w}'"
            raise FileFormatError(path, key, f"missing: the checkpoint has no {what} for "
                                             f"'{node.name}' ({node.op_id}); it was trained on "
                                             "another graph")
    return plan


def apply_graph_arrays(graph: Graph, arrays: dict, meta: dict, path=None):
    """Copy checkpoint arrays into ``graph``; all are checked before any is applied.

    A mismatch (node, op, weight name, shape, missing tensor) is a
    :class:`FileFormatError` and leaves the graph untouched.
    """
    plan = check_graph_arrays(graph, arrays, meta, path)
    for nid, items in plan.items():
        node = graph.nodes[nid]
        for kind, name, v in items:
            if kind == "value":
                node.value = v
            elif kind == "weights":
                node.weights[name] = v
            else:
                node.state[name] = v
        graph.node_changed.emit(node)


def load_weights(graph: Graph, path) -> dict:
    """Put a checkpoint's weights and layer state into ``graph``; returns its metadata."""
    meta, arrays = read_checkpoint(path)
    apply_graph_arrays(graph, arrays, meta, path)
    return meta


# ---------------------------------------------------------- k-fold
@dataclass
class CrossValidation:
    """Per-fold evaluations of :func:`cross_validate` and their summary."""

    folds: list

    @property
    def accuracies(self) -> np.ndarray:
        return np.array([f.accuracy for f in self.folds])

    @property
    def mean_accuracy(self) -> float:
        return float(self.accuracies.mean())

    @property
    def std_accuracy(self) -> float:
        return float(self.accuracies.std(ddof=1)) if len(self.folds) > 1 else 0.0


def cross_validate(make_graph, data, k: int = 5, *, epochs: int = 1, optimizer=None,
                   batch_size: int = 64, seed: int = 0, stratify: bool = True,
                   prepare=None, on_fold=None, **trainer_kw) -> CrossValidation:
    """k-fold cross-validation: train a fresh graph on k−1 folds, evaluate on the held-out one.

    Parameters
    ----------
    make_graph : callable
        ``make_graph() -> Graph``, called once per fold (a fresh, untrained graph).
    data : ArrayDataset
    optimizer : callable, optional
        ``optimizer() -> Optimizer`` per fold (default SGD 0.01).
    prepare : callable, optional
        ``prepare(train, test) -> (train, test)`` per fold, for example to fit a
        normalizer on the training folds only.
    on_fold : callable, optional
        ``on_fold(index, Evaluation)``.
    """
    from core.data.datasets import kfold_indices  # noqa: PLC0415

    labels = data.y if stratify and data.y.ndim == 1 else None
    folds = []
    for i, (tr_idx, te_idx) in enumerate(kfold_indices(len(data), k, seed, labels)):
        train, test = data.subset(tr_idx), data.subset(te_idx)
        if prepare is not None:
            train, test = prepare(train, test)
        opt = optimizer() if optimizer is not None else make_optimizer("sgd", lr=0.01)
        tr = Trainer(make_graph(), opt, batch_size=batch_size, seed=seed + i, **trainer_kw)
        tr.fit(train, epochs=epochs)
        ev = tr.evaluate(test)
        folds.append(ev)
        if on_fold is not None:
            on_fold(i, ev)
    return CrossValidation(folds)

