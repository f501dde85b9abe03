"""`python -m tailorlm.cli` runs the `tailor` command."""

from tailorlm.cli import main

main()
