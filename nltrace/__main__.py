"""python -m nltrace and the nltrace command: the command line; a Ctrl-C
while its modules load ends it as quietly as one later (exit 130)."""
import sys


def run():
    try:
        from nltrace.cli import main
    except KeyboardInterrupt:
        sys.exit(130)
    main()


if __name__ == "__main__":
    run()
