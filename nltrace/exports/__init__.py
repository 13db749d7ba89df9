"""Views as other tools' files: pcapng for Wireshark, Perfetto traces, Prometheus metrics.

Each tree exporter takes what `run.flow` hands a view, (tree, records.Capture),
through add(), and finishes its file in close().
"""
