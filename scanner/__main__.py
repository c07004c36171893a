"""``python -m scanner`` runs the certscan command line."""

import sys

from scanner.cli.app import main

sys.exit(main())
