"""``python -m cvcraft`` (used by ``torchrun -m cvcraft train ...``) runs the CLI."""

from cvcraft.cli import main

raise SystemExit(main())
