"""Results tables from benchmark runs (pandas), comparisons between runs, terminal reports."""
