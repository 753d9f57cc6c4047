"""``python -m search.cli``: what extra ``--workers`` processes run."""

from search.cli.main import main

raise SystemExit(main())
