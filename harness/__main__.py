"""`python -m harness` -> harness.cli.main()."""

from .cli import main

raise SystemExit(main())
