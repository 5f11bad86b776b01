"""The parity harness: the same events through Spark (batch), Flink (stream) and the reference, compared.

``compare`` classifies every difference (pure Python, no engines), ``run``
drives the engines and writes the outputs, ``report`` writes ``report.json``
and the terminal table, ``html`` the page a person reads.
"""

#: The output files, named by the parity contract (README, "Parity").
BATCH, STREAM, REJECTED, REPORT_JSON, REPORT_HTML = (
    "batch.parquet", "stream.parquet", "rejected.parquet", "report.json", "report.html")
