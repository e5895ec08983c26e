"""One module per evaluation suite; each writes its CSVs and plots and returns its headline metrics."""
