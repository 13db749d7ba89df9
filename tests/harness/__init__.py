"""The one test harness that tests/vm, tests/arm and bench/ import.

tracer.py runs the tools as child processes (Tracer, render); shapes.py
projects their trees for comparison (shape, matches, summaries).
"""
