"""Reading benchmark runs for the report (files only, never the runtime): tables with intervals,
size limits and the verdict on them, charts, comparisons between runs."""
