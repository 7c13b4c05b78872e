"""`python -m harness.server` -> harness.server.process.main()."""

from .process import main

raise SystemExit(main())
