"""The failure gate: which repetitions failed too many requests, read from a run's files.

A repetition fails the gate when its error rate (non-2xx responses and requests that got no
response, over every request) exceeds ``max_error_rate``, when it sent requests and every one
failed, or when it measured nothing at all (``status`` ``failed``: the stack did not start,
Envoy died before the load, Locust failed). ``sp-istio-cache bench`` exits 1 naming them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .records import finished_cells
from .table import cell_samples

#: the documented default of ``--max-error-rate`` (also the Matrix default)
DEFAULT_MAX_ERROR_RATE = 0.01


@dataclass(frozen=True)
class GateFailure:
    """One repetition over the limit: ``requests``, ``failed`` (non-2xx + no response) and why."""

    cell_id: str
    repetition: int
    requests: int
    failed: int
    reason: str

    def line(self) -> str:
        return f"{self.cell_id} rep {self.repetition}: {self.reason}"


def check_run(run_dir: Path, max_error_rate: float = DEFAULT_MAX_ERROR_RATE) -> list[GateFailure]:
    """Every repetition of the run that fails the gate, in run order ([] = the run passes).

    Raises:
        ValueError: ``max_error_rate`` not within 0..1.
        RecordError / SamplesError: a file is missing or malformed.
    """
    if not 0 <= max_error_rate <= 1:
        raise ValueError(f"max_error_rate must be within 0..1, got {max_error_rate}")
    run_dir = Path(run_dir)
    out: list[GateFailure] = []
    for entry, rec in finished_cells(run_dir):
        if rec.status == "failed":
            out.append(GateFailure(rec.cell_id, rec.repetition, 0, 0, f"measured nothing: {rec.error}"))
            continue
        samples = cell_samples(run_dir / entry.dir, rec)
        total, failed = samples.requests, samples.non_2xx()
        if total == 0:
            out.append(GateFailure(rec.cell_id, rec.repetition, 0, 0, "Locust recorded no request"))
        elif failed == total:
            statuses = sorted({status for (_, status) in samples.groups})
            out.append(GateFailure(rec.cell_id, rec.repetition, total, failed,
                                   f"every request failed ({total} requests, statuses {statuses})"))
        elif failed / total > max_error_rate:
            out.append(GateFailure(rec.cell_id, rec.repetition, total, failed,
                                   f"{failed / total:.1%} of {total} requests failed (non-2xx or no response), "
                                   f"over --max-error-rate {max_error_rate:g}"))
    return out
