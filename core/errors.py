"""Errors raised by the core, each naming where the problem is."""

from __future__ import annotations


class StudioError(Exception):
    """Base class for every error the core raises on purpose."""


class GraphError(StudioError):
    """An edit or a run that the graph cannot accept (cycle, occupied port, unknown op...).

    Attributes
    ----------
    nodes : tuple of str
        Names of the nodes involved, for views that highlight them.
    """

    def __init__(self, message: str, nodes=()):
        super().__init__(message)
        self.nodes = tuple(nodes)


class ShapeError(GraphError):
    """Input shapes that an op cannot take."""


class ParamError(GraphError):
    """A parameter value outside its spec (wrong type, out of range, unknown name)."""


class NonFiniteError(GraphError):
    """A NaN or Inf appeared in a node's output or gradient.

    Attributes
    ----------
    node : str
        Name of the first node whose value or gradient is not finite.
    phase : str
        ``"forward"`` or ``"backward"``.
    """

    def __init__(self, node: str, phase: str, detail: str = ""):
        what = "output" if phase == "forward" else "gradient"
        msg = f"non-finite {what} (NaN or Inf) at node '{node}' during {phase}"
        if detail:
            msg += f": {detail}"
        super().__init__(msg, nodes=(node,))
        self.node = node
        self.phase = phase


class FileFormatError(StudioError):
    """A graph, checkpoint or data file that cannot be read.

    The message names the file and the position inside it (a JSON path such as
    ``nodes[3].params.stride`` or a line and column).
    """

    def __init__(self, path, where: str, message: str):
        self.path = str(path) if path is not None else "<data>"
        self.where = where
        loc = f"{self.path}: {where}: " if where else f"{self.path}: "
        super().__init__(loc + message)


class DataError(StudioError):
    """A data set that is missing, corrupt or of the wrong shape; says what to do."""


class MemoryLimitError(GraphError):
    """A tensor (or a whole run) that needs more memory than the machine has.

    Raised before anything is allocated, naming the node and the size.
    """
