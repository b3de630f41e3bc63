"""``python -m workers.emulator --port 8089``: see ``workers.emulator.cli``."""

from workers.emulator.cli import main

raise SystemExit(main())
