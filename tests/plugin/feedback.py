"""A Processing feedback for tests: keeps the log and can cancel itself at a given progress."""

from __future__ import annotations

from qgis.core import QgsProcessingFeedback


class LogFeedback(QgsProcessingFeedback):
    """Keeps info, warnings and errors; cancels itself once the progress reaches ``cancel_at`` (percent)."""

    def __init__(self, cancel_at: float | None = None) -> None:
        super().__init__()
        self.lines: list[str] = []
        self.errors: list[tuple[str, bool]] = []
        self.cancel_at = cancel_at
        self.progressChanged.connect(self._on_progress)

    def _on_progress(self, value: float) -> None:
        if self.cancel_at is not None and value >= self.cancel_at and not self.isCanceled():
            self.cancel()

    def pushInfo(self, info: str) -> None:  # noqa: N802
        self.lines.append(info)
        super().pushInfo(info)

    def pushWarning(self, warning: str) -> None:  # noqa: N802
        self.lines.append(warning)
        super().pushWarning(warning)

    def reportError(self, error: str, fatalError: bool = False) -> None:  # noqa: N802, N803
        self.errors.append((error, fatalError))
        super().reportError(error, fatalError)
