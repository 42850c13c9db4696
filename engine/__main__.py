"""``python -m engine`` is the ``callbridge`` command."""

from engine.cli import main

raise SystemExit(main())
