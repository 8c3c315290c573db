"""One module per constraint family: pure functions from measurements to verdicts."""
