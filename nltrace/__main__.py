"""python -m nltrace: the command line."""
from nltrace.cli import main

main()
