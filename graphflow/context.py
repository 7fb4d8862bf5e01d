"""The narrow facade a node sees while it runs.

Nodes never touch the executor, the cache or the server. They get a :class:`NodeContext`
(declare a parameter annotated ``NodeContext``) with progress and preview reporting, an
interrupt check, the device and dtype to compute on, folders to write to, and the model loader.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from .cancel import CancelToken
from .errors import Interrupted
from .events import Preview, Progress
from .settings import Settings, current_settings

if TYPE_CHECKING:
    from .runtime.handles import ModelHandle


class ModelLoader(Protocol):
    """What ``context.models`` offers (see graphflow.runtime.models.ModelManager)."""

    def load(
        self, kind: str, path: Any, loader: Callable[[], Any] | None = None, **options: Any
    ) -> ModelHandle:
        """The handle of the resident model for (kind, path, options), loaded if needed.

        Take its module with ``handle.on_device(ctx.device)`` (see runtime/handles.py).
        """
        ...


class RunServices:
    """Run-wide state shared by the contexts of one run (built by the executor)."""

    def __init__(
        self,
        run_id: str,
        emit: Callable[[Any], None],
        cancel: CancelToken,
        *,
        device: str | None = None,
        dtype: Any = None,
        temp_dir: Path,
        output_dir: Path,
        models: ModelLoader | None = None,
        workflow: Any = None,
        settings: Settings | None = None,
        png_chunks: Callable[[dict], dict[str, str]] | None = None,
    ):
        self.run_id = run_id
        self.emit = emit
        self.cancel = cancel  # this run's token: cancelled means "stop at the next check"
        self.device = device
        self.dtype = dtype
        self.temp_dir = temp_dir
        self.output_dir = output_dir
        if models is None:
            from .runtime.models import ModelManager

            models = ModelManager()
        self.models = models
        self.settings = settings if settings is not None else current_settings()
        self.workflow = workflow  # the Workflow model; JSON data made only if a node asks
        self._workflow_json: dict | None = None
        self.png_chunks = png_chunks  # workflow JSON → other formats' PNG text chunks
        self._png_chunks: dict[str, str] | None = None


class NodeContext:
    """What a node may use while it runs."""

    __slots__ = ("_run", "node_id")

    def __init__(self, run: RunServices, node_id: str):
        self._run = run
        self.node_id = node_id

    def check_interrupt(self) -> None:
        """Raise :class:`~graphflow.errors.Interrupted` if the run was asked to stop."""
        if self._run.cancel.cancelled:
            raise Interrupted(f"interrupted in node {self.node_id!r}")

    def progress(self, value: int, total: int) -> None:
        """Report step ``value`` of ``total`` (drives progress bars); also checks interrupt."""
        self._run.emit(Progress(self._run.run_id, self.node_id, int(value), int(total)))
        self.check_interrupt()

    def preview(self, image: Any) -> None:
        """Show an intermediate image (tensor or PIL image) in the editor."""
        self._run.emit(Preview(self._run.run_id, self.node_id, image))

    @property
    def device(self) -> str:
        """The device to compute on (``cuda``, ``cpu``...)."""
        if self._run.device is None:
            from .runtime.devices import default_device

            self._run.device = default_device()
        return self._run.device

    @property
    def dtype(self) -> Any:
        """The torch dtype to compute in by default on this device."""
        if self._run.dtype is None:
            from .runtime.devices import default_dtype

            self._run.dtype = default_dtype(self.device)
        return self._run.dtype

    @property
    def temp_dir(self) -> Path:
        """A folder for scratch files and previews (created on first use)."""
        self._run.temp_dir.mkdir(parents=True, exist_ok=True)
        return self._run.temp_dir

    @property
    def output_dir(self) -> Path:
        """The folder output nodes write results to (created on first use)."""
        self._run.output_dir.mkdir(parents=True, exist_ok=True)
        return self._run.output_dir

    @property
    def workflow(self) -> dict | None:
        """The workflow document being run (as JSON data), e.g. to embed in saved images."""
        run = self._run
        if run._workflow_json is None and run.workflow is not None:
            run._workflow_json = run.workflow.to_dict()
        return run._workflow_json

    def workflow_png_chunks(self) -> dict[str, str]:
        """PNG text chunks holding the running workflow in other tools' formats.

        What the registered workflow exporters write (see graphflow.formats), e.g. so that
        another node editor opens graphflow's saved images; empty when there is none.
        """
        run = self._run
        if run._png_chunks is None:
            workflow = self.workflow
            chunks = run.png_chunks(workflow) if workflow and run.png_chunks else {}
            run._png_chunks = chunks
        return dict(run._png_chunks)

    @property
    def settings(self) -> Settings:
        """The settings of this run (folders, budgets, device...: see graphflow.settings)."""
        return self._run.settings

    @property
    def models(self) -> ModelLoader:
        """The model loader (``context.models.load(kind, path)``)."""
        return self._run.models
