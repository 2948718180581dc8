"""What a training run leaves in its run directory for people to read.

::

    run_dir/
      steps.csv        one row per logged optimizer step: step, then the metrics (loss, lr, img/s, ...)
      metrics.csv      one row per epoch: epoch, then the metrics (train_loss, val_acc1, lr, ...)
      tensorboard/     TensorBoard event files: scalars train/<name> by step, epoch/<name> by epoch
      curves.png       loss / accuracy / learning-rate panels against epoch, from metrics.csv
      report.html      one self-contained page (images inline, no external CSS/JS/fonts, opens offline): final
                       metrics, run summary, curves, the task's sections (e.g. the confusion matrix and sample
                       predictions of classification) and attention maps of a few validation images

Only rank 0 reports: build the reporter with ``enabled=info.is_main`` and every other rank's reporter does nothing
(it creates no file and no directory).

Resumed runs reuse the directory: the CSV files are appended to, and rows at or after the first step/epoch logged
after the resume are dropped first (they came from the part of the interrupted run that the checkpoint does not
contain), so the tables and the curves hold each step/epoch once. A metric that first appears late (e.g. an EMA
accuracy from epoch 5) widens the CSV header and earlier rows get an empty cell.
"""

from __future__ import annotations

import csv
import io
import math
import numbers
from collections.abc import Mapping, Sequence
from pathlib import Path

from .report_html import atomic_write, curves_png, render_report

__all__ = ["RunReporter", "read_csv_columns"]


def _cell(value) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return str(int(value))
    if isinstance(value, numbers.Integral):
        return str(int(value))
    if isinstance(value, numbers.Real):
        v = float(value)
        if not math.isfinite(v):
            return repr(v)
        text = f"{v:.8g}"
        return text if any(c in text for c in ".e") else text + ".0"  # keep floats floats when read back
    if hasattr(value, "item"):  # 0-d tensor / numpy scalar
        return _cell(value.item())
    return str(value)


def _parse(text: str):
    if text == "":
        return None
    try:
        number = float(text)
    except ValueError:
        return text
    return int(number) if number.is_integer() and "." not in text and "e" not in text.lower() else number


class _CsvLog:
    """An append-only CSV keyed by a first integer column, tolerant of new keys and of a resumed run."""

    def __init__(self, path: Path, key: str):
        self.path = path
        self.key = key
        self.fields: list[str] = []
        self._checked_resume = False
        if path.exists() and path.stat().st_size > 0:
            with path.open(newline="") as f:
                self.fields = next(csv.reader(f), [])

    def _rows(self) -> list[dict[str, str]]:
        if not self.path.exists():
            return []
        with self.path.open(newline="") as f:
            return list(csv.DictReader(f))

    def _rewrite(self, rows: list[dict[str, str]]) -> None:
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=self.fields, restval="", extrasaction="ignore", lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
        atomic_write(self.path, buf.getvalue().encode("utf-8"))

    def append(self, key_value: int, metrics: Mapping[str, object]) -> None:
        row = {self.key: _cell(key_value)}
        row.update({str(k): _cell(v) for k, v in metrics.items() if str(k) != self.key})
        rewrite_rows = None
        if not self._checked_resume:
            self._checked_resume = True
            if self.fields:
                rows = self._rows()
                kept = [r for r in rows if _below(r.get(self.key, ""), key_value)]
                if len(kept) != len(rows):
                    rewrite_rows = kept
        new = [k for k in row if k not in self.fields]
        if new:
            if not self.fields:
                self.fields = list(row)
                self._rewrite([])
            else:
                self.fields += new
                rewrite_rows = self._rows() if rewrite_rows is None else rewrite_rows
        if rewrite_rows is not None:
            self._rewrite(rewrite_rows)
        with self.path.open("a", newline="") as f:
            csv.DictWriter(f, fieldnames=self.fields, restval="", lineterminator="\n").writerow(row)


def _below(text: str, key_value: int) -> bool:
    try:
        return float(text) < key_value
    except ValueError:
        return False


def read_csv_columns(path: str | Path) -> dict[str, list]:
    """A CSV written by :class:`RunReporter` as ``{column: [values]}`` (numbers parsed; empty cells are None)."""
    path = Path(path)
    if not path.exists():
        return {}
    with path.open(newline="") as f:
        reader = csv.DictReader(f)
        fields = list(reader.fieldnames or [])
        columns: dict[str, list] = {name: [] for name in fields}
        for row in reader:
            for name in fields:
                columns[name].append(_parse(row.get(name) or ""))
    return columns


class RunReporter:
    """CSV + TensorBoard logging during training and the report at the end (see the module docstring for the files).

    run_dir: the run directory (created if needed).
    enabled: ``False`` on non-zero ranks: every method then does nothing and nothing is written.
    """

    def __init__(self, run_dir: str | Path, enabled: bool = True):
        self.run_dir = Path(run_dir)
        self.enabled = bool(enabled)
        self._writer = None
        self._closed = False
        if not self.enabled:
            return
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self._steps = _CsvLog(self.run_dir / "steps.csv", "step")
        self._epochs = _CsvLog(self.run_dir / "metrics.csv", "epoch")
        from torch.utils.tensorboard import SummaryWriter

        self._writer = SummaryWriter(log_dir=str(self.run_dir / "tensorboard"))

    # ------------------------------------------------------------------------------------------------ logging
    def _scalars(self, prefix: str, step: int, metrics: Mapping[str, object]) -> None:
        if self._writer is None:
            return
        for name, value in metrics.items():
            if hasattr(value, "item"):
                value = value.item()
            if isinstance(value, numbers.Real) and not isinstance(value, bool):
                self._writer.add_scalar(f"{prefix}/{name}", float(value), global_step=step)

    def log_step(self, step: int, metrics: dict[str, float]) -> None:
        """One optimizer step: a row of steps.csv and TensorBoard scalars ``train/<name>`` at ``step``."""
        if not self.enabled or self._closed:
            return
        self._steps.append(int(step), metrics)
        self._scalars("train", int(step), metrics)

    def log_epoch(self, epoch: int, metrics: dict[str, float]) -> None:
        """One epoch: a row of metrics.csv and TensorBoard scalars ``epoch/<name>`` at ``epoch``."""
        if not self.enabled or self._closed:
            return
        self._epochs.append(int(epoch), metrics)
        self._scalars("epoch", int(epoch), metrics)
        self._writer.flush()

    # ------------------------------------------------------------------------------------------------- report
    def finish(self, summary: dict, config_yaml: str, items: Sequence = ()) -> Path:
        """Write curves.png and report.html; return the path of report.html.

        summary: run facts shown as a table (e.g. wall time, ``skipped_files`` (a count or a list of names),
            ``non_finite_steps``); keys about skipped/non-finite/failed things are highlighted when non-zero. Metrics
            that the final-metrics table shows (``val_*``) are not repeated.
        config_yaml: the resolved config, shown verbatim.
        items: the task's sections and attention maps (:class:`visionattn.tasks.ReportItem`), in order; a picture
            with a ``filename`` is also written into the run directory.
        """
        html_path = self.run_dir / "report.html"
        if not self.enabled:
            return html_path
        if self._writer is not None:
            self._writer.flush()
        columns = read_csv_columns(self.run_dir / "metrics.csv")
        curves = curves_png("epoch", columns)
        atomic_write(self.run_dir / "curves.png", curves)
        for item in items:
            if item.png is not None and item.filename:
                if Path(item.filename).name != item.filename:
                    raise ValueError(f"report item {item.title!r}: filename must be a plain file name, got "
                                     f"{item.filename!r}")
                atomic_write(self.run_dir / item.filename, item.png)
        shown = {k: v for k, v in (summary or {}).items() if k not in columns}
        page = render_report(title=f"Run {self.run_dir.resolve().name}", x_name="epoch", columns=columns,
                             summary=shown, config_yaml=str(config_yaml or ""), curves=curves, items=list(items))
        atomic_write(html_path, page.encode("utf-8"))
        return html_path

    def close(self) -> None:
        """Flush and close TensorBoard; later log calls are ignored. Safe to call twice."""
        self._closed = True
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def __enter__(self) -> RunReporter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
