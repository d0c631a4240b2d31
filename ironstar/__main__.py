from ironstar.cli import main

raise SystemExit(main())
