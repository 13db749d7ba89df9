from nltrace.cli import main

main()
