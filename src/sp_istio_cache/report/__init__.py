"""The report pipeline: four papermill notebooks (build → smoke → benchmark → tuning) into
``reports/<UTC time>/`` with HTML, PNG charts, results tables, the recommended plugin config and
``summary.md``. Entry point: :func:`sp_istio_cache.report.pipeline.run_report` (CLI ``report``)."""
