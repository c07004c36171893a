"""``python -m scanner`` runs the certscan command line."""

import sys

from scanner.cli.entry import main

sys.exit(main())
